//! Dual-encoder evaluation (CLIP, AltCLIP): unit embeddings of texts and
//! images, retrieval by cosine similarity with the reference's recall
//! definitions, and zero-shot classification by prompt ensembles (Radford et
//! al. 2021, §3.1.4).

use burn::tensor::{Device, Tensor};
use vl_data::{EncodedBatch, ImageBatch, RetrievalSet, TextTokenizer};
use vl_models::blocks::{l2_normalize, padding_mask};
use vl_models::{AltClipModel, ClipModel, TextInput};

use crate::TrainError;
use crate::eval::retrieval::RetrievalMetrics;

/// A model that embeds texts and images into one space (the CLIP teacher
/// and the AltCLIP student).
pub trait DualEncoder {
    /// Projected, unnormalised text features `[batch, dim]`.
    fn text_features(&self, text: &EncodedBatch, device: &Device) -> Tensor<2>;
    /// Projected, unnormalised image features `[batch, dim]`.
    fn image_features(&self, pixels: Tensor<4>) -> Tensor<2>;
}

impl DualEncoder for ClipModel {
    fn text_features(&self, text: &EncodedBatch, device: &Device) -> Tensor<2> {
        let (ids, mask) = text.to_tensors(device);
        ClipModel::text_features(self, ids, Some(padding_mask(mask)))
    }

    fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        ClipModel::image_features(self, pixels)
    }
}

impl DualEncoder for AltClipModel {
    fn text_features(&self, text: &EncodedBatch, device: &Device) -> Tensor<2> {
        AltClipModel::text_features(self, &student_input(text, device))
    }

    fn image_features(&self, pixels: Tensor<4>) -> Tensor<2> {
        AltClipModel::image_features(self, pixels)
    }
}

pub(crate) fn student_input(text: &EncodedBatch, device: &Device) -> TextInput {
    let (ids, mask) = text.to_tensors(device);
    TextInput::new(ids).with_padding(padding_mask(mask))
}

/// Rows evaluated per forward pass.
pub(crate) const EVAL_BATCH: usize = 256;

/// Unit-norm text embeddings `[texts, dim]` as a row-major vector.
pub fn embed_texts(
    model: &impl DualEncoder,
    tokenizer: &TextTokenizer,
    texts: &[String],
    max_tokens: usize,
    device: &Device,
) -> Result<Vec<f32>, TrainError> {
    let mut out = Vec::new();
    for chunk in texts.chunks(EVAL_BATCH) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs, Some(max_tokens))?;
        out.extend(to_vec(l2_normalize(
            model.text_features(&encoded, device),
            1e-12,
        )));
    }
    Ok(out)
}

/// Unit-norm image embeddings `[images, dim]`, row-major.
pub fn embed_images(model: &impl DualEncoder, images: &ImageBatch, device: &Device) -> Vec<f32> {
    let mut out = Vec::new();
    for chunk in images.chunks(EVAL_BATCH) {
        out.extend(to_vec(l2_normalize(
            model.image_features(chunk.to_tensor(device)),
            1e-12,
        )));
    }
    out
}

pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor")
}

/// Row `i` of a row-major `[_, dim]` buffer.
pub(crate) fn row(buffer: &[f32], dim: usize, i: usize) -> &[f32] {
    &buffer[i * dim..(i + 1) * dim]
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Zero-shot classification accuracy (a fraction): each image's class is
/// the one whose prompt ensemble (mean of its prompts' unit embeddings,
/// renormalised, as CLIP) is most similar.
pub fn zero_shot_accuracy(
    image_embeds: &[f32],
    labels: &[usize],
    class_embeds: &[Vec<f32>],
) -> f64 {
    zero_shot_top_k(image_embeds, labels, class_embeds, 1)
}

/// The fraction of images whose class is among the `k` classes nearest
/// to them.
pub fn zero_shot_top_k(
    image_embeds: &[f32],
    labels: &[usize],
    class_embeds: &[Vec<f32>],
    k: usize,
) -> f64 {
    let dim = class_embeds.first().map_or(1, Vec::len);
    let correct = labels
        .iter()
        .enumerate()
        .filter(|&(i, &label)| {
            let image = row(image_embeds, dim, i);
            let own = dot(image, &class_embeds[label]);
            // The true class's rank; a tie goes to the lower index, as an
            // argmax that takes the first maximum (all-equal scores, e.g. a
            // vocabulary that knows none of the prompts' words, are not a hit).
            let rank = class_embeds
                .iter()
                .enumerate()
                .filter(|&(c, embed)| {
                    let score = dot(image, embed);
                    score > own || (score == own && c < label)
                })
                .count();
            rank < k
        })
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// One prompt ensemble per class: the mean of the prompts' unit
/// embeddings, renormalised.
pub fn class_embeddings(
    model: &impl DualEncoder,
    tokenizer: &TextTokenizer,
    prompts: &[Vec<String>],
    max_tokens: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>, TrainError> {
    prompts
        .iter()
        .map(|class| {
            let embeds = embed_texts(model, tokenizer, class, max_tokens, device)?;
            let dim = embeds.len() / class.len();
            let mut mean = vec![0.0f32; dim];
            for i in 0..class.len() {
                for (m, v) in mean.iter_mut().zip(row(&embeds, dim, i)) {
                    *m += v;
                }
            }
            let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            Ok(mean.into_iter().map(|v| v / norm).collect())
        })
        .collect()
}

/// Retrieval by cosine similarity on `set` (the reference's recall
/// definitions): image and text embeddings in the set's order.
pub fn dual_encoder_retrieval(
    image_embeds: &[f32],
    text_embeds: &[f32],
    set: &RetrievalSet,
) -> RetrievalMetrics {
    let dim = image_embeds.len() / set.images.len().max(1);
    let i2t: Vec<Vec<f32>> = (0..set.images.len())
        .map(|i| {
            (0..set.texts.len())
                .map(|t| dot(row(image_embeds, dim, i), row(text_embeds, dim, t)))
                .collect()
        })
        .collect();
    let t2i: Vec<Vec<f32>> = (0..set.texts.len())
        .map(|t| (0..set.images.len()).map(|i| i2t[i][t]).collect())
        .collect();
    RetrievalMetrics::from_scores(&i2t, &t2i, set)
}
