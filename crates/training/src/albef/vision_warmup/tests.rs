//! The warm-up learns labels, with and without token labels, on one
//! worker or several.

use burn::tensor::{Tensor, TensorData};
use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use vl_data::world::PATCH_LABELS;

use super::tagger::lr_at;
use super::*;

/// `warm_up_vision` of a fresh encoder into a temporary directory.
fn warm_up(
    vit: Vit,
    data: &WarmupData,
    config: &VisionWarmupConfig,
    augment: &AugmentConfig,
    seed: u64,
    device: &Device,
) -> Result<(Vit, WarmupReport), TrainError> {
    let dir = tempfile::tempdir().unwrap();
    let run = WarmupRun {
        data,
        config,
        image_size: 16,
        augment,
        seed,
        job: serde_json::Value::Null,
        paths: RunPaths::in_dir(dir.path()),
        max_steps: None,
    };
    warm_up_vision(vit, None, &run, device)
}

#[test]
fn bce_matches_its_definition() {
    // −[y log σ(x) + (1 − y) log σ(−x)], with log σ(x) = −log(1 + e^{−x})
    // in f64 (1 − σ(x) itself would cancel at x = 30).
    let device = Device::flex();
    let x = [2.5f32, -1.0, 0.0, -30.0, 30.0, 0.3];
    let y = [1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0];
    let expected: f64 = x
        .iter()
        .zip(&y)
        .map(|(&x, &y)| {
            let (x, y) = (x as f64, y as f64);
            let log_sigmoid = |x: f64| -(-x).exp().ln_1p();
            -(y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))
        })
        .sum::<f64>()
        / 6.0;
    let t = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [2, 3]), &device);
    let got = multi_label_bce(t(&x), t(&y)).into_scalar::<f32>() as f64;
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
}

/// Images of one of four colours with pixel noise, labelled by colour
/// (one-hot) and by whether a white square sits in the top-left corner.
fn coloured_squares(n: usize, seed: u64) -> LabelledImages {
    use rand::RngExt;
    let mut rng = StdRng::seed_from_u64(seed);
    let palette = [
        [200u8, 40, 40],
        [40, 180, 40],
        [40, 60, 220],
        [220, 200, 30],
    ];
    let mut set = LabelledImages::default();
    for _ in 0..n {
        let colour = rng.random_range(0..4usize);
        let square = rng.random_bool(0.5);
        let image = RgbImage::from_fn(16, 16, |x, y| {
            let base = if square && x < 6 && y < 6 {
                [250, 250, 250]
            } else {
                palette[colour]
            };
            image::Rgb(base.map(|c| c.saturating_sub(rng.random_range(0..30))))
        });
        let mut labels = vec![0.0; 5];
        labels[colour] = 1.0;
        labels[4] = f32::from(square);
        set.images.push(image);
        set.labels.push(labels);
    }
    set
}

/// A one-layer, 32-wide ViT for 16-px images.
fn tiny_vit(device: &Device) -> Vit {
    vl_models::VitConfig {
        image_size: 16,
        patch_size: 8,
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 64,
        layer_norm_eps: 1e-6,
        ..vl_models::VitConfig::default()
    }
    .init(device)
}

#[test]
fn warm_up_learns_labels_of_held_out_images() {
    let _seeded = crate::seeded_device();
    let device = Device::flex();
    device.seed(3);
    let vit = tiny_vit(&device);
    let data = WarmupData {
        train: coloured_squares(128, 1),
        held_out: coloured_squares(64, 2),
    };
    let config = VisionWarmupConfig {
        images: 0,
        epochs: 12,
        batch_size: 16,
        lr: 3e-3,
        weight_decay: 0.05,
        token_labels: 0.0,
        workers: 2,
    };
    let augment = AugmentConfig {
        crop_scale: (0.9, 1.0),
        horizontal_flip: false,
        mirror_words: Vec::new(),
        randaugment_ops: 0,
        randaugment_magnitude: 0.0,
    };
    let (_, report) = warm_up(vit, &data, &config, &augment, 0, &device).unwrap();
    println!("{report:?}");
    assert_eq!(report.steps, 12 * 8);
    assert!(report.last_loss < 0.5 * report.first_loss, "{report:?}");
    // Predicting no label scores F1 0; one colour of four at random
    // ~0.25 on the colours.
    assert!(report.held_out_f1.unwrap() > 0.9, "{report:?}");
}

#[test]
fn token_labels_need_patch_labels_and_train_alongside() {
    let _seeded = crate::seeded_device();
    let device = Device::flex();
    device.seed(5);
    let vit = || tiny_vit(&device);
    let config = VisionWarmupConfig {
        images: 0,
        epochs: 12,
        batch_size: 16,
        lr: 3e-3,
        weight_decay: 0.05,
        token_labels: 1.0,
        workers: 1,
    };
    let augment = AugmentConfig::default();
    let mut data = WarmupData {
        train: coloured_squares(128, 1),
        held_out: coloured_squares(64, 2),
    };
    let err = warm_up(vit(), &data, &config, &augment, 0, &device).unwrap_err();
    assert!(err.to_string().contains("patch labels"), "{err}");

    // One patch label: whether the patch is the top-left one holding
    // the white square (the 6-px square lies inside patch 0 of 4).
    data.train.patch_labels = data
        .train
        .labels
        .iter()
        .map(|labels| {
            let mut patches = vec![0.0; 4 * PATCH_LABELS];
            patches[0] = labels[4];
            patches
        })
        .collect();
    let (_, report) = warm_up(vit(), &data, &config, &augment, 0, &device).unwrap();
    assert_eq!(report.steps, 12 * 8);
    assert!(report.last_loss < 0.5 * report.first_loss, "{report:?}");
    assert!(report.held_out_f1.unwrap() > 0.9, "{report:?}");
}

#[test]
fn two_workers_train_the_encoder_one_worker_trains() {
    // The shards' gradients, weighted by size, are the whole batch's:
    // after several steps (with crops) the encoders agree up to float
    // rounding; a different seed does not come close.
    let _seeded = crate::seeded_device();
    let device = Device::flex();
    let data = WarmupData {
        train: coloured_squares(48, 1),
        held_out: LabelledImages::default(),
    };
    let augment = AugmentConfig {
        crop_scale: (0.8, 1.0),
        ..AugmentConfig::default()
    };
    let run = |workers: usize, seed: u64| {
        device.seed(9);
        let vit = tiny_vit(&device);
        let config = VisionWarmupConfig {
            images: 0,
            epochs: 2,
            batch_size: 15,
            token_labels: 0.0,
            workers,
            ..VisionWarmupConfig::default()
        };
        let (vit, _) = warm_up(vit, &data, &config, &augment, seed, &device).unwrap();
        vit.pos_embed
            .val()
            .into_data()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    };
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let one = run(1, 0);
    let (three, other_seed) = (run(3, 0), run(1, 1));
    assert!(max_diff(&one, &three) < 1e-4, "{}", max_diff(&one, &three));
    assert!(max_diff(&one, &other_seed) > 1e-2);
}

#[test]
fn schedule_warms_up_then_decays_to_zero() {
    let config = VisionWarmupConfig {
        lr: 1.0,
        ..VisionWarmupConfig::default()
    };
    assert!((lr_at(&config, 0, 10, 100) - 0.1).abs() < 1e-12);
    assert!((lr_at(&config, 9, 10, 100) - 1.0).abs() < 1e-12);
    assert!((lr_at(&config, 10, 10, 100) - 1.0).abs() < 1e-12);
    assert!(lr_at(&config, 55, 10, 100) < 0.6);
    assert!(lr_at(&config, 99, 10, 100) < 1e-3);
}

#[test]
fn a_stopped_warm_up_resumes_to_the_same_encoder() {
    // Stopped mid-epoch and resumed from its checkpoint, the warm-up ends
    // bit-identical to the run that was never stopped.
    let _seeded = crate::seeded_device();
    let device = Device::flex();
    let data = WarmupData {
        train: coloured_squares(40, 1),
        held_out: LabelledImages::default(),
    };
    let augment = AugmentConfig {
        crop_scale: (0.8, 1.0),
        ..AugmentConfig::default()
    };
    let config = VisionWarmupConfig {
        images: 0,
        epochs: 3,
        batch_size: 8,
        token_labels: 0.0,
        workers: 2,
        ..VisionWarmupConfig::default()
    };
    let weights = |vit: &Vit| vit.pos_embed.val().into_data().try_to_vec::<f32>().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |max_steps: Option<usize>, resume: Option<&Checkpoint>| {
        device.seed(9);
        let run = WarmupRun {
            data: &data,
            config: &config,
            image_size: 16,
            augment: &augment,
            seed: 4,
            job: serde_json::json!({"note": "the job's config"}),
            paths: RunPaths::in_dir(dir.path()),
            max_steps,
        };
        warm_up_vision(tiny_vit(&device), resume, &run, &device).unwrap()
    };
    let (whole, report) = run(None, None);
    assert_eq!(report.steps, 15);
    let (_, stopped) = run(Some(7), None);
    assert_eq!(stopped.steps, 7);
    let checkpoint = Checkpoint::read(&dir.path().join("checkpoint.ckpt")).unwrap();
    let job = checkpoint
        .state::<serde_json::Value>(crate::runner::checkpoint::JobKind::AlbefVisionWarmup)
        .unwrap();
    assert_eq!(job.position.step, 7);
    assert_eq!(job.config["note"], "the job's config");
    let (resumed, report) = run(None, Some(&checkpoint));
    assert_eq!(report.steps, 15);
    assert_eq!(weights(&whole), weights(&resumed));
}
