//! The three losses of ALBEF pretraining on one shard of a batch (paper
//! §3.2–3.3): ITC against the batch and the momentum queue with distilled
//! targets (eq. 6), ITM on hard negatives drawn from the in-batch
//! similarities, and MLM with momentum soft targets (eq. 7), computed only
//! at the masked positions (the reference's loss ignores the others).

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor};
use rand::rngs::StdRng;
use vl_models::blocks::padding_mask;
use vl_models::{Albef, TextInput};
use vl_objectives::contrastive::{diagonal_targets, id_targets, same_id};
use vl_objectives::{distilled_targets, itc_loss, itm_loss, mlm_loss, sample_hard_negatives};

use crate::albef::step::StepContext;
use crate::albef::text_groups::{GroupText, MlmInputs, TextGroup, encode_text, text_feat};

/// The online encoders' outputs.
pub(super) struct OnlineEncoders {
    pub(super) image_embeds: Tensor<3>,
    pub(super) texts: Vec<GroupText>,
}

/// The online image and text encoders (autodiff device).
pub(super) fn online_encoders(
    model: &Albef,
    groups: &[TextGroup],
    images: Tensor<4>,
    ad: &Device,
) -> OnlineEncoders {
    OnlineEncoders {
        image_embeds: model.image_embeds(images.autodiff()),
        texts: encode_text(model, groups, ad),
    }
}

/// ITC with queues and momentum distillation (eq. 6), then ITM on hard
/// negatives drawn from the in-batch similarities. With `ids` (retrieval
/// fine-tuning, `models/model_retrieval.py`), every batch or queue column
/// of a sample's image id is its positive, and no negative shares its id;
/// without, each sample is its own only positive (pretraining).
pub(super) fn itc_itm(
    model: &Albef,
    online: OnlineEncoders,
    momentum_feat: (&Tensor<2>, &Tensor<2>),
    ids: Option<&Tensor<1, Int>>,
    context: &StepContext,
    rng: &mut StdRng,
) -> (Tensor<1>, Tensor<1>) {
    let (image_feat_m, text_feat_m) = momentum_feat;
    let device = context.device;
    let OnlineEncoders {
        image_embeds,
        texts,
    } = online;
    let b = image_embeds.dims()[0];
    let image_feat = model.image_feat(image_embeds.clone());
    let text_feat = text_feat(model, &texts);

    let (image_all, text_all) = context
        .queue
        .with_batch(image_feat_m.clone(), text_feat_m.clone());
    let temp = model.temp.val();
    let temp_m = temp.clone().without_autodiff().unsqueeze::<2>();
    let truth = match ids {
        Some(ids) => id_targets(ids.clone(), context.queue.ids_with_batch(ids.clone())),
        None => diagonal_targets(b, image_all.dims()[1], device),
    };
    let targets_i2t = distilled_targets(
        image_feat_m.clone().matmul(text_all.clone()) / temp_m.clone(),
        truth.clone(),
        context.alpha,
    );
    let targets_t2i = distilled_targets(
        text_feat_m.clone().matmul(image_all.clone()) / temp_m,
        truth,
        context.alpha,
    );
    let itc = itc_loss(
        image_feat,
        text_feat,
        image_all.autodiff(),
        text_all.autodiff(),
        temp,
        targets_i2t.autodiff(),
        targets_t2i.autodiff(),
    );

    let in_batch = |sim: &Tensor<2>| sim.clone().without_autodiff().slice([0..b, 0..b]);
    let positives: Tensor<2, Bool> = match ids {
        Some(ids) => same_id(ids.clone()),
        None => same_id(Tensor::arange(0..b as i64, device)),
    };
    let negatives = sample_hard_negatives(
        in_batch(&itc.sim_i2t),
        in_batch(&itc.sim_t2i),
        positives,
        context.hardness,
        rng,
    );
    let (neg_image, neg_text) = (&negatives.image_for_text, &negatives.text_for_image);
    let ad = image_embeds.device();
    let index = |v: Vec<usize>| {
        let v: Vec<i64> = v.into_iter().map(|i| i as i64).collect();
        Tensor::<1, Int>::from_data(v.as_slice(), &ad)
    };
    // Each fusion pass takes the pairs whose caption lies in one group:
    // its positives, its captions with their hard-negative images, and the
    // images whose hard-negative caption it holds. The loss is a mean over
    // pairs, so only the labels' order matters: positives first, as the
    // reference stacks them.
    let mut positives = Vec::new();
    let mut negative_pairs = Vec::new();
    for text in &texts {
        let group = text.rows.clone();
        let with_negative_text: Vec<usize> =
            (0..b).filter(|&i| group.contains(&neg_text[i])).collect();
        let local = |row: usize| row - group.start;
        let text_rows = group
            .clone()
            .chain(group.clone())
            .chain(with_negative_text.iter().map(|&i| neg_text[i]))
            .map(local)
            .collect();
        let image_rows = group
            .clone()
            .chain(group.clone().map(|t| neg_image[t]))
            .chain(with_negative_text)
            .collect();
        let text_rows = index(text_rows);
        let fused = model.fusion(
            text.embeds.clone().select(0, text_rows.clone()),
            // Rows are picked from the integer mask: burn-flex 0.22.1's
            // `select` on a Bool tensor returns U8 storage (`cat` rejects
            // it).
            Some(padding_mask(text.mask.clone().select(0, text_rows))),
            image_embeds.clone().select(0, index(image_rows)),
        );
        let logits = model.itm_logits(fused);
        let [rows, _] = logits.dims();
        let n = group.len();
        positives.push(logits.clone().slice(0..n));
        negative_pairs.push(logits.slice(n..rows));
    }
    positives.extend(negative_pairs);
    (itc.loss, itm_loss(Tensor::cat(positives, 0)))
}

/// MLM with momentum soft targets (eq. 7), at the masked positions;
/// `None` when none is masked (`mlm_probability` 0, or a draw that masked
/// nothing): there is no loss and no gradient.
pub(super) fn mlm_branch(
    model: &Albef,
    image_embeds: Tensor<3>,
    mlm: &MlmInputs,
    soft_targets: Option<Tensor<2>>,
    ad: &Device,
) -> Option<Tensor<1>> {
    let (Some(soft), Some(logits)) = (soft_targets, masked_logits(model, mlm, image_embeds, ad))
    else {
        return None;
    };
    let targets = Tensor::<1, Int>::from_data(mlm.targets, ad);
    Some(mlm_loss(logits, targets, Some(soft.autodiff()), mlm.alpha))
}

/// What the momentum model's encoders compute (plain device, no
/// autodiff).
pub(super) struct MomentumFeatures {
    pub(super) image_embeds: Tensor<3>,
    pub(super) image_feat: Tensor<2>,
    pub(super) text_feat: Tensor<2>,
}

pub(super) fn momentum_features(
    momentum: &Albef,
    groups: &[TextGroup],
    images: Tensor<4>,
    device: &Device,
) -> MomentumFeatures {
    let image_embeds = momentum.image_embeds(images);
    MomentumFeatures {
        image_feat: momentum.image_feat(image_embeds.clone()),
        text_feat: text_feat(momentum, &encode_text(momentum, groups, device)),
        image_embeds,
    }
}

/// Softmax of the momentum MLM logits at the masked positions (none
/// masked: `None`).
pub(super) fn momentum_soft_targets(
    momentum: &Albef,
    features: MomentumFeatures,
    mlm: &MlmInputs,
    device: &Device,
) -> Option<Tensor<2>> {
    masked_logits(momentum, mlm, features.image_embeds, device).map(|l| softmax(l, 1))
}

/// MLM logits `[masked, vocab]` at every group's masked positions, in
/// their order; `None` when no token is masked. A group without one is
/// not run.
pub(super) fn masked_logits(
    model: &Albef,
    mlm: &MlmInputs,
    image_embeds: Tensor<3>,
    device: &Device,
) -> Option<Tensor<2>> {
    let logits: Vec<Tensor<2>> = mlm
        .groups
        .iter()
        .filter(|group| !group.masked_positions.is_empty())
        .map(|group| {
            let (_, mask) = group.text.to_tensors(device);
            let text = TextInput::new(Tensor::from_data(group.masked_ids.clone(), device))
                .with_padding(padding_mask(mask));
            let hidden = model.multimodal(&text, image_embeds.clone().slice([group.rows.clone()]));
            let [rows, len, h] = hidden.dims();
            let picked: Vec<i64> = group.masked_positions.iter().map(|&p| p as i64).collect();
            let picked = hidden
                .reshape([rows * len, h])
                .select(0, Tensor::<1, Int>::from_data(picked.as_slice(), device))
                .unsqueeze::<3>();
            let logits = model.mlm_logits(picked);
            let [_, m, v] = logits.dims();
            logits.reshape([m, v])
        })
        .collect();
    (!logits.is_empty()).then(|| Tensor::cat(logits, 0))
}
