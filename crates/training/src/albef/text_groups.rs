//! Captions of a step in groups of similar length: every text pass runs
//! group by group, each group padded only to its own longest caption.

use std::ops::Range;

use burn::tensor::{Device, Int, Tensor, TensorData};
use vl_data::EncodedBatch;
use vl_models::blocks::padding_mask;
use vl_models::{Albef, TextInput};
use vl_objectives::MaskedTokens;

/// Consecutive rows of a batch sorted by caption length, padded only to
/// their own longest caption. Every text pass of a step runs group by
/// group: captions of the synthetic world average 21 tokens but a batch
/// of 32 pads to 42 on average, and attention masks padding out anyway,
/// so the groups compute what the whole batch would, on fewer tokens.
pub(super) struct TextGroup {
    /// The group's rows in the batch.
    pub(super) rows: Range<usize>,
    /// Its captions.
    pub(super) text: EncodedBatch,
    /// The MLM input: its captions, masked (`[rows, text.len]`).
    pub(super) masked_ids: TensorData,
    /// Flat indices into `[rows, text.len]` of the masked tokens,
    /// ascending.
    pub(super) masked_positions: Vec<usize>,
}

/// `text` (sorted by length) and its masking split into `count` groups of
/// consecutive rows (fewer if the batch is smaller).
pub(super) fn text_groups(
    text: &EncodedBatch,
    masked: &MaskedTokens,
    count: usize,
) -> Vec<TextGroup> {
    let b = text.batch;
    let count = count.clamp(1, b.max(1));
    (0..count)
        .map(|g| {
            let rows = g * b / count..(g + 1) * b / count;
            let group = text.rows(rows.clone());
            // Only tokens are masked, never padding: every position falls
            // within its row's group length.
            let masked_positions = masked
                .positions
                .iter()
                .map(|&p| (p / text.len, p % text.len))
                .filter(|(row, _)| rows.contains(row))
                .map(|(row, col)| (row - rows.start) * group.len + col)
                .collect();
            // The masked ids cut to the group's width, row by row.
            let masked_ids = rows
                .clone()
                .flat_map(|row| {
                    let start = row * text.len;
                    masked.input_ids[start..start + group.len].iter().copied()
                })
                .collect::<Vec<i64>>();
            TextGroup {
                masked_ids: TensorData::new(masked_ids, [rows.len(), group.len]),
                masked_positions,
                text: group,
                rows,
            }
        })
        .collect()
}

/// The masked captions of a step and what MLM needs besides.
pub(super) struct MlmInputs<'a> {
    /// The captions by group, with their masked ids and positions.
    pub(super) groups: &'a [TextGroup],
    /// The original ids at the masked positions, group by group.
    pub(super) targets: &'a [i64],
    pub(super) alpha: f64,
}

/// The text encoder's states of one [`TextGroup`].
pub(super) struct GroupText {
    /// The group's rows in the batch.
    pub(super) rows: Range<usize>,
    /// `[rows, len, hidden]`.
    pub(super) embeds: Tensor<3>,
    /// HF-style attention mask `[rows, len]`.
    pub(super) mask: Tensor<2, Int>,
}

/// The text encoder on each group.
pub(super) fn encode_text(model: &Albef, groups: &[TextGroup], device: &Device) -> Vec<GroupText> {
    groups
        .iter()
        .map(|group| {
            let (ids, mask) = group.text.to_tensors(device);
            let text = TextInput::new(ids).with_padding(padding_mask(mask.clone()));
            GroupText {
                rows: group.rows.clone(),
                embeds: model.text_embeds(&text),
                mask,
            }
        })
        .collect()
}

/// The contrastive text features of every group, in batch order.
pub(super) fn text_feat(model: &Albef, texts: &[GroupText]) -> Tensor<2> {
    Tensor::cat(
        texts
            .iter()
            .map(|t| model.text_feat(t.embeds.clone()))
            .collect(),
        0,
    )
}
