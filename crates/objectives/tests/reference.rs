//! Every loss against PyTorch on the same inputs
//! (`tests/fixtures/objectives/losses.safetensors`, written by
//! `tests/fixtures/make_fixtures.py` from the reference code's formulas).

use std::path::Path;

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor};
use vl_models::import::TensorMap;
use vl_objectives::contrastive::{diagonal_targets, id_targets, same_id};
use vl_objectives::itm::negative_weights;
use vl_objectives::{
    FeatureQueue, clip_loss, distilled_targets, ema_update, itc_loss, itm_loss, mlm_loss, mse_loss,
};

const TOLERANCE: f32 = 1e-5;

struct Fixture {
    io: TensorMap,
    device: Device,
}

impl Fixture {
    fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/objectives/losses.safetensors");
        Self {
            io: TensorMap::read(&path).unwrap(),
            device: Device::flex(),
        }
    }

    fn float<const D: usize>(&self, name: &str) -> Tensor<D> {
        Tensor::from_data(
            self.io.get(name).unwrap().clone().convert::<f32>(),
            &self.device,
        )
    }

    fn int<const D: usize>(&self, name: &str) -> Tensor<D, Int> {
        Tensor::from_data(
            self.io.get(name).unwrap().clone().convert::<i64>(),
            &self.device,
        )
    }
}

fn assert_close<const D: usize>(name: &str, actual: Tensor<D>, expected: Tensor<D>) {
    let diff = (actual - expected).abs().max().into_scalar::<f32>();
    println!("{name}: max abs error {diff:.2e}");
    assert!(diff <= TOLERANCE, "{name}: max abs error {diff}");
}

/// The momentum features and queues, as the model would produce them.
fn queue_and_batch(f: &Fixture) -> (Tensor<2>, Tensor<2>, FeatureQueue) {
    let queue = FeatureQueue {
        image: f.float("image_queue"),
        text: f.float("text_queue"),
        ids: None,
        ptr: 0,
    };
    let (image_all, text_all) = queue.with_batch(f.float("image_feat_m"), f.float("text_feat_m"));
    (image_all, text_all, queue)
}

#[test]
fn itc_with_queue_and_momentum_distillation() {
    let f = Fixture::load();
    let (image_all, text_all, _) = queue_and_batch(&f);
    let temp = f.float::<1>("temp");
    let columns = image_all.dims()[1];
    let truth = diagonal_targets(4, columns, &f.device);
    let scale = temp.clone().unsqueeze::<2>();
    let sim_i2t_m = f.float::<2>("image_feat_m").matmul(text_all.clone()) / scale.clone();
    let sim_t2i_m = f.float::<2>("text_feat_m").matmul(image_all.clone()) / scale;
    let out = itc_loss(
        f.float("image_feat"),
        f.float("text_feat"),
        image_all,
        text_all,
        temp,
        distilled_targets(sim_i2t_m, truth.clone(), 0.4),
        distilled_targets(sim_t2i_m, truth, 0.4),
    );
    assert_close("sim_i2t", out.sim_i2t, f.float("itc_sim_i2t"));
    assert_close("itc_loss", out.loss, f.float("itc_loss"));
}

#[test]
fn itc_with_image_id_positives() {
    let f = Fixture::load();
    let (image_all, text_all, mut queue) = queue_and_batch(&f);
    queue.ids = Some(f.int("idx_queue"));
    let ids_all = queue.ids_with_batch(f.int("ids"));
    let truth = id_targets(f.int("ids"), ids_all);
    let temp = f.float::<1>("temp");
    let scale = temp.clone().unsqueeze::<2>();
    let sim_i2t_m = f.float::<2>("image_feat_m").matmul(text_all.clone()) / scale.clone();
    let sim_t2i_m = f.float::<2>("text_feat_m").matmul(image_all.clone()) / scale;
    let out = itc_loss(
        f.float("image_feat"),
        f.float("text_feat"),
        image_all,
        text_all,
        temp,
        distilled_targets(sim_i2t_m, truth.clone(), 0.4),
        distilled_targets(sim_t2i_m, truth, 0.4),
    );
    assert_close("itc_ids_loss", out.loss, f.float("itc_ids_loss"));
}

#[test]
fn itm_weights_and_loss() {
    let f = Fixture::load();
    let sim = f.float::<2>("itc_sim_i2t").slice([0..4, 0..4]);
    let diagonal: Tensor<2, Bool> = same_id(Tensor::arange(0..4, &f.device));
    assert_close(
        "itm_weights",
        negative_weights(sim, diagonal),
        f.float("itm_weights"),
    );
    assert_close(
        "itm_loss",
        itm_loss(f.float("itm_logits")),
        f.float("itm_loss"),
    );
}

#[test]
fn mlm_at_masked_positions_equals_the_reference_over_all_positions() {
    let f = Fixture::load();
    let logits = f.float::<3>("mlm_logits");
    let logits_m = f.float::<3>("mlm_logits_m");
    let [b, l, v] = logits.dims();
    let labels: Vec<i64> =
        f.io.get("mlm_labels")
            .unwrap()
            .clone()
            .convert::<i64>()
            .try_into_vec()
            .unwrap();
    let positions: Vec<i64> = (0..labels.len())
        .filter(|&i| labels[i] != -100)
        .map(|i| i as i64)
        .collect();
    let targets: Vec<i64> = positions.iter().map(|&i| labels[i as usize]).collect();
    let rows = Tensor::<1, Int>::from_data(positions.as_slice(), &f.device);
    let targets = Tensor::<1, Int>::from_data(targets.as_slice(), &f.device);
    let pick = |t: Tensor<3>| t.reshape([b * l, v]).select(0, rows.clone());
    let soft = softmax(pick(logits_m), 1);
    assert_close(
        "mlm_loss_ce",
        mlm_loss(pick(logits.clone()), targets.clone(), None, 0.4),
        f.float("mlm_loss_ce"),
    );
    assert_close(
        "mlm_loss",
        mlm_loss(pick(logits), targets, Some(soft), 0.4),
        f.float("mlm_loss"),
    );
}

#[test]
fn altclip_losses() {
    let f = Fixture::load();
    assert_close(
        "mse_loss",
        mse_loss(f.float("student"), f.float("teacher")),
        f.float("mse_loss"),
    );
    assert_close(
        "clip_loss",
        clip_loss(f.float("logits_per_text")),
        f.float("clip_loss"),
    );
}

#[test]
fn ema_update_matches() {
    let f = Fixture::load();
    let param = |name: &str| burn::module::Param::from_tensor(f.float::<2>(name));
    let updated = ema_update(param("ema_momentum"), &param("ema_online"), 0.995);
    assert_close("ema", updated.val(), f.float("ema_updated"));
}
