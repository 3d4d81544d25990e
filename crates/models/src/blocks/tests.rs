//! The shared blocks against their definitions and PyTorch's values.

use super::gelu::exp_nonpositive;
use super::*;
use burn::tensor::{Distribution, Tolerance};

fn device() -> Device {
    Device::flex()
}

/// `erf` in f64 to ~1e-12: the Maclaurin series below 3, the
/// asymptotic series of `erfc` above (an independent reference).
fn erf_f64(x: f64) -> f64 {
    let a = x.abs();
    let value = if a < 3.0 {
        let (mut term, mut sum, mut n) = (a, a, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let z = 1.0 / (2.0 * a * a);
        let series = 1.0 - z + 3.0 * z * z - 15.0 * z.powi(3) + 105.0 * z.powi(4);
        1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series
    };
    value.copysign(x)
}

#[test]
fn exp_nonpositive_matches_exp() {
    let mut worst = 0.0f64;
    for i in 0..=200_000 {
        let t = -87.0 * i as f32 / 200_000.0;
        let exact = (t as f64).exp();
        worst = worst.max((exp_nonpositive(t) as f64 - exact).abs() / exact);
    }
    assert!(worst < 2e-7, "worst relative error {worst}");
    // Below the clamp: e^−87 ≈ 1.6·10⁻³⁸, never infinite or NaN.
    assert!(exp_nonpositive(-1e4) < 2e-38);
}

#[test]
fn the_fast_gelu_matches_the_exact_one_in_value_and_gradient() {
    // A grid over [−12, 12] and fixed upstream weights: deterministic,
    // checked against `x·Φ(x)` and `Φ(x) + x·φ(x)` in f64.
    let n = 6001;
    let xs: Vec<f32> = (0..n)
        .map(|i| -12.0 + 24.0 * i as f32 / (n - 1) as f32)
        .collect();
    let ws: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).cos()).collect();
    let ad = device().autodiff();
    let x = Tensor::<1>::from_data(xs.as_slice(), &ad).require_grad();
    let weights = Tensor::<1>::from_data(ws.as_slice(), &ad);
    let ours = gelu(x.clone());
    let grads = (ours.clone() * weights).sum().backward();
    let host = |t: Tensor<1>| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let (values, slopes) = (host(ours.without_autodiff()), host(x.grad(&grads).unwrap()));
    let mut worst = [0.0f64; 2];
    for i in 0..n {
        let v = xs[i] as f64;
        let cdf = 0.5 * (1.0 + erf_f64(v / 2f64.sqrt()));
        let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
        worst[0] = worst[0].max((values[i] as f64 - v * cdf).abs());
        worst[1] = worst[1].max((slopes[i] as f64 - ws[i] as f64 * (cdf + v * pdf)).abs());
    }
    // f32 rounding of values up to 12 is ~1e-6; the slope is off by up to
    // 6.1e-7 near 0 (erf's polynomial raised to the 16th power in f32).
    assert!(worst[0] < 2e-6, "value error {}", worst[0]);
    assert!(worst[1] < 1e-6, "gradient error {}", worst[1]);
    // Inference (no autodiff) takes the same path without the slope.
    let plain = x.without_autodiff();
    let diff = (gelu(plain.clone()) - activation::gelu(plain)).abs().max();
    assert!(diff.into_scalar::<f32>() < 2e-6);
}

#[test]
fn padding_keys_get_no_weight() {
    // Changing a padded key's content must not change any output.
    let device = device();
    let attention = AttentionConfig::new(8, 2).init(&device);
    let x = Tensor::<3>::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
    let mask = AttentionMask::padding(Tensor::from_data(
        [
            [false, false, false, true, true],
            [false, false, false, false, false],
        ],
        &device,
    ));
    let context = x.clone();
    let changed = context.clone().slice_assign(
        [0..1, 3..5, 0..8],
        Tensor::random([1, 2, 8], Distribution::Normal(0.0, 5.0), &device),
    );
    let a = attention.forward(x.clone(), Some(context), &mask);
    let b = attention.forward(x, Some(changed), &mask);
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
}

#[test]
fn causal_mask_ignores_the_future() {
    let device = device();
    let attention = AttentionConfig::new(8, 2).init(&device);
    let x = Tensor::<3>::random([1, 4, 8], Distribution::Normal(0.0, 1.0), &device);
    let future = x.clone().slice_assign(
        [0..1, 2..4, 0..8],
        Tensor::random([1, 2, 8], Distribution::Normal(0.0, 1.0), &device),
    );
    let mask = AttentionMask::none().with_causal();
    let a = attention.forward(x, None, &mask).slice([0..1, 0..2, 0..8]);
    let b = attention
        .forward(future, None, &mask)
        .slice([0..1, 0..2, 0..8]);
    a.into_data()
        .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
}

#[test]
fn fused_and_explicit_attention_agree() {
    // The explicit path (used when training with dropout) must compute
    // the same function as burn's fused op when dropout is zero.
    let device = device();
    let q = Tensor::<4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &device);
    let k = Tensor::<4>::random([2, 3, 6, 5], Distribution::Normal(0.0, 1.0), &device);
    let v = Tensor::<4>::random([2, 3, 6, 5], Distribution::Normal(0.0, 1.0), &device);
    let mask = AttentionMask::padding(Tensor::from_data(
        [[false, false, true, false, true, true], [false; 6]],
        &device,
    ))
    .expand([2, 3, 4, 6], &device)
    .unwrap();
    let scores = q.clone().matmul(k.clone().swap_dims(2, 3)) * 5f64.powf(-0.5);
    let explicit =
        activation::softmax(scores.mask_fill(mask.clone(), MASKED_SCORE), 3).matmul(v.clone());
    let fused = attention(q, k, v, Some(mask), None, AttentionModuleOptions::default());
    explicit
        .into_data()
        .assert_approx_eq::<f32>(&fused.into_data(), Tolerance::absolute(1e-5));
}

#[test]
fn first_true_index_takes_the_first_hit() {
    let device = device();
    let hit = Tensor::<2, Bool>::from_data(
        [
            [false, true, true],
            [false, false, false],
            [true, false, true],
        ],
        &device,
    );
    let index = first_true_index(hit).into_data();
    assert_eq!(
        index.convert::<i64>().try_to_vec::<i64>().unwrap(),
        vec![1, 3, 0]
    );
}

#[test]
fn quick_gelu_matches_its_formula() {
    let device = device();
    let x = Tensor::<1>::from_data([-2.0, -0.5, 0.0, 1.0, 3.0], &device);
    let expected: Vec<f32> = [-2.0f32, -0.5, 0.0, 1.0, 3.0]
        .iter()
        .map(|&v| v / (1.0 + (-1.702 * v).exp()))
        .collect();
    Activation::QuickGelu
        .forward(x)
        .into_data()
        .assert_approx_eq::<f32>(
            &burn::tensor::TensorData::from(expected.as_slice()),
            Tolerance::absolute(1e-6),
        );
}
