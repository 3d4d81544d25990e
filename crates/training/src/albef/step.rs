//! One worker's share of a pretraining step, spread over threads as
//! [`StepThreads`] says: the momentum pass, the online encoders, and the
//! three losses with their gradients.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vl_data::ImageTextBatch;
use vl_models::Albef;
use vl_objectives::{FeatureQueue, MaskingConfig, mask_tokens};

use crate::albef::config::StepThreads;
use crate::albef::losses::{
    itc_itm, mlm_branch, momentum_features, momentum_soft_targets, online_encoders,
};
use crate::albef::text_groups::{MlmInputs, text_groups};
use crate::runner::data_parallel::weighted_gradient_sum;

/// What every worker of a step reads.
pub(super) struct StepContext<'a> {
    pub(super) queue: &'a FeatureQueue,
    pub(super) masking: &'a MaskingConfig,
    /// The plain device.
    pub(super) device: &'a Device,
    pub(super) alpha: f64,
    /// How hard the ITM negatives are, from uniform (0) to the
    /// reference's (1).
    pub(super) hardness: f64,
    /// How the step fills the cores with one worker (several fill them
    /// themselves).
    pub(super) threads: StepThreads,
    /// [`PretrainConfig::text_length_groups`].
    pub(super) text_groups: usize,
    /// Whether samples sharing an image id are each other's positives
    /// (retrieval fine-tuning) rather than only themselves.
    pub(super) image_id_positives: bool,
}

/// One worker's share of a step.
pub(super) struct ShardOutput {
    /// `loss_mlm`, `loss_ita`, `loss_itm`.
    pub(super) losses: [f32; 3],
    pub(super) grads: GradientsParams,
    /// Momentum features to enqueue, `[samples, embed_dim]`.
    pub(super) image_feat_m: Tensor<2>,
    pub(super) text_feat_m: Tensor<2>,
    /// Their image ids, with `image_id_positives`.
    pub(super) ids: Option<Tensor<1, Int>>,
    pub(super) samples: usize,
}

/// `a` on a scoped thread beside `b` when `parallel`, else one after the
/// other.
fn join<A: Send, B>(parallel: bool, a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    if !parallel {
        return (a(), b());
    }
    std::thread::scope(|scope| {
        let job = scope.spawn(a);
        let b = b();
        (job.join().expect("a step thread panicked"), b)
    })
}

/// The three losses of ALBEF on `batch` and their gradients: ITC against
/// the batch and the queue, ITM on hard negatives from within the batch,
/// MLM; as one process of the reference computes on its part of a
/// distributed batch.
pub(super) fn shard_forward_backward(
    model: &Albef,
    momentum: &Albef,
    batch: &ImageTextBatch,
    context: &StepContext,
    seed: u64,
) -> ShardOutput {
    let mut rng = StdRng::seed_from_u64(seed);
    let device = context.device;
    let ad = device.clone().autodiff();
    let batch = &batch.sorted_by_text_length();
    let b = batch.len();
    // Uploaded once; the online passes see it on the autodiff device.
    let images = batch.images.to_tensor(device);
    let ids = context.image_id_positives.then(|| {
        let ids: Vec<i64> = batch.image_ids.iter().map(|&i| i as i64).collect();
        Tensor::<1, Int>::from_data(ids.as_slice(), device)
    });
    let masked = mask_tokens(&batch.text.ids, context.masking, &mut rng);
    let groups = text_groups(&batch.text, &masked, context.text_groups);
    let mlm = MlmInputs {
        groups: &groups,
        targets: &masked.targets,
        alpha: context.alpha,
    };
    let scalar = |loss: &Tensor<1>| loss.clone().without_autodiff().into_scalar::<f32>();

    if context.threads == StepThreads::SplitBranches {
        let replica = model.valid().train();
        let (features_sender, features) = std::sync::mpsc::channel();
        let ((loss_mlm, grads_mlm), (losses, grads, (image_feat_m, text_feat_m))) = join(
            true,
            || {
                let momentum_out = momentum_features(momentum, &groups, images.clone(), device);
                let feats = (
                    momentum_out.image_feat.clone(),
                    momentum_out.text_feat.clone(),
                );
                // The ITC branch waits for these; a send fails only if it
                // has panicked, which the scope reports.
                let _ = features_sender.send(feats);
                let soft = momentum_soft_targets(momentum, momentum_out, &mlm, device);
                let image_embeds = replica.image_embeds(images.clone().autodiff());
                match mlm_branch(&replica, image_embeds, &mlm, soft, &ad) {
                    Some(loss) => (
                        scalar(&loss),
                        GradientsParams::from_grads(loss.backward(), &replica),
                    ),
                    None => (0.0, GradientsParams::new()),
                }
            },
            || {
                let online = online_encoders(model, &groups, images.clone(), &ad);
                let feats: (Tensor<2>, Tensor<2>) =
                    features.recv().expect("the momentum pass panicked");
                let momentum_feat = (&feats.0, &feats.1);
                let (itc, itm) = itc_itm(
                    model,
                    online,
                    momentum_feat,
                    ids.as_ref(),
                    context,
                    &mut rng,
                );
                let losses = [scalar(&itc), scalar(&itm)];
                let grads = GradientsParams::from_grads((itc + itm).backward(), model);
                (losses, grads, feats)
            },
        );
        return ShardOutput {
            losses: [loss_mlm, losses[0], losses[1]],
            grads: weighted_gradient_sum(model, vec![(grads, 1.0), (grads_mlm, 1.0)]),
            image_feat_m,
            text_feat_m,
            ids,
            samples: b,
        };
    }

    // The momentum model's passes need nothing from the online ones.
    let (momentum_out, online) = join(
        context.threads == StepThreads::OverlapMomentum,
        || {
            let out = momentum_features(momentum, &groups, images.clone(), device);
            let feats = (out.image_feat.clone(), out.text_feat.clone());
            (feats, momentum_soft_targets(momentum, out, &mlm, device))
        },
        || online_encoders(model, &groups, images.clone(), &ad),
    );
    let ((image_feat_m, text_feat_m), soft) = momentum_out;
    let loss_mlm = mlm_branch(model, online.image_embeds.clone(), &mlm, soft, &ad)
        .unwrap_or_else(|| Tensor::zeros([1], &ad));
    let (itc, itm) = itc_itm(
        model,
        online,
        (&image_feat_m, &text_feat_m),
        ids.as_ref(),
        context,
        &mut rng,
    );
    let losses = [scalar(&loss_mlm), scalar(&itc), scalar(&itm)];
    let loss = loss_mlm + itc + itm;
    ShardOutput {
        losses,
        grads: GradientsParams::from_grads(loss.backward(), model),
        image_feat_m,
        text_feat_m,
        ids,
        samples: b,
    }
}
