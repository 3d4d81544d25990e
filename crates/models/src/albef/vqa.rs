//! ALBEF for visual question answering (Li et al. 2021, section 5.2):
//! salesforce/ALBEF `models/model_vqa.py` and `models/xbert.py`
//! (`BertLMHeadModel`). The question runs through every BERT layer attending
//! to the image (the reference's `multi_modal` mode); an answer decoder —
//! a BERT whose every layer has causal self-attention and cross-attention to
//! the fused question states, with the LM head on its tied word embeddings —
//! generates `[CLS] answer [SEP]`. Answers are ranked as `rank_answer` does:
//! the `k` most probable first tokens, re-scored by the whole answer.

use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::{AlbefConfig, image_context};
use crate::bert::{BertEncoder, BertForMaskedLm, BertModel, BertOnlyMlmHead, TextInput};
use crate::blocks::{AttentionMask, CrossAttentionInput};
use crate::vit::Vit;

/// `BertLMHeadModel`: a BERT decoder and its LM head (`cls.predictions`,
/// the decoder weight tied to the word embeddings).
#[derive(Module, Debug)]
pub struct BertLmHeadModel {
    /// The decoder: every layer with cross-attention.
    pub bert: BertModel,
    /// The LM head.
    pub cls: BertOnlyMlmHead,
}

impl BertLmHeadModel {
    /// Next-token logits `[batch, len, vocab]` of `text` (causal
    /// self-attention, padding masked) attending to `context`.
    pub fn logits(&self, text: &TextInput, context: &CrossAttentionInput) -> Tensor<3> {
        let mut x = self
            .bert
            .embeddings
            .forward(text.input_ids.clone(), text.token_type_ids.clone());
        let mask = AttentionMask {
            key_padding: text.padding.clone(),
            causal: true,
        };
        for layer in &self.bert.encoder.layer {
            x = layer.forward(x, &mask, Some(context));
        }
        self.cls.forward(x, &self.bert.embeddings.word_embeddings)
    }
}

/// The VQA model.
#[derive(Module, Debug)]
pub struct AlbefVqa {
    /// Image encoder.
    pub visual_encoder: Vit,
    /// Text and fusion layers: the question attending to the image.
    pub text_encoder: BertModel,
    /// The answer decoder.
    pub text_decoder: BertLmHeadModel,
}

impl AlbefConfig {
    /// A fresh VQA model of this shape (its decoder a copy of the fresh
    /// fusion layers, as [`AlbefVqa::from_albef`] makes it).
    ///
    /// # Panics
    /// As [`AlbefConfig::init`].
    pub fn init_vqa(&self, device: &Device) -> Result<AlbefVqa, VqaInitError> {
        let albef = self.init(true, device);
        AlbefVqa::from_albef(albef.visual_encoder, albef.text_encoder)
    }
}

/// Why a VQA model cannot be made from an ALBEF model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VqaInitError {
    /// The answer decoder starts from the MLM head.
    #[error(
        "the checkpoint has no MLM head (text_encoder.cls): the answer decoder starts from a pretraining checkpoint's"
    )]
    NoMlmHead,
    /// The decoder's cross-attention reads question states with the fusion
    /// layers' image-width projections.
    #[error(
        "vision_width {vision} differs from hidden_size {hidden}: the answer decoder's cross-attention, copied from the fusion layers, reads {vision}-wide states and the question states are {hidden} wide"
    )]
    Widths {
        /// The fusion layers' key/value input width.
        vision: usize,
        /// BERT's width.
        hidden: usize,
    },
}

impl AlbefVqa {
    /// What the reference's `VQA.py` makes of a pretraining checkpoint: the
    /// encoder keeps every layer; the decoder gets copies of the embeddings,
    /// of the fusion layers (fusion layer `n` becomes decoder layer
    /// `n - fusion_layer`) and of the MLM head as its LM head.
    pub fn from_albef(
        visual_encoder: Vit,
        text_encoder: BertForMaskedLm,
    ) -> Result<Self, VqaInitError> {
        let cls = text_encoder.cls.ok_or(VqaInitError::NoMlmHead)?;
        let bert = text_encoder.bert;
        let hidden = bert.embeddings.word_embeddings.weight.dims()[1];
        let fusion = &bert.encoder.layer[bert.text_layers..];
        if let Some(attention) = fusion.first().and_then(|l| l.crossattention.as_ref()) {
            let vision = attention.key.weight.dims()[0];
            if vision != hidden {
                return Err(VqaInitError::Widths { vision, hidden });
            }
        }
        let decoder = BertModel {
            embeddings: bert.embeddings.clone(),
            encoder: BertEncoder {
                layer: fusion.to_vec(),
            },
            pooler: None,
            text_layers: 0,
        };
        Ok(Self {
            visual_encoder,
            text_encoder: bert,
            text_decoder: BertLmHeadModel { bert: decoder, cls },
        })
    }

    /// The fused question states `[batch, len, hidden]`.
    pub fn question_states(&self, image: Tensor<4>, question: &TextInput) -> Tensor<3> {
        let image_embeds = self.visual_encoder.forward(image);
        self.text_encoder
            .forward(question, Some(&image_context(image_embeds)))
            .last_hidden_state
    }

    /// Teacher-forced logits `[batch, len, vocab]` of `answers`, row `i`
    /// attending to `questions` row `i`.
    pub fn answer_logits(&self, answers: &TextInput, questions: &QuestionStates) -> Tensor<3> {
        self.text_decoder.logits(answers, &questions.context())
    }

    /// Each answer's summed token NLL after its first token (`[CLS]` is
    /// never predicted; padding does not count), `[batch]`: the reference's
    /// LM loss with `reduction='none'`.
    pub fn answer_nll(&self, answers: &TextInput, questions: &QuestionStates) -> Tensor<1> {
        let logits = self.answer_logits(answers, questions);
        sequence_nll(logits, answers)
    }

    /// `rank_answer`: for each question, the `k` answers whose first token
    /// is most probable after `[CLS]` (`[questions, k]`, descending; equal
    /// probabilities keep the lower index first), and the one among them
    /// with the highest `log p(first token) − NLL(answer)` (`[questions]`).
    /// The first token counts twice in that score, as in the reference.
    ///
    /// `answers` holds every candidate, `[CLS] answer [SEP]`.
    pub fn rank_answers(
        &self,
        questions: &QuestionStates,
        answers: &TextInput,
        k: usize,
    ) -> (Tensor<2, Int>, Tensor<1, Int>) {
        let [batch, _, _] = questions.states.dims();
        let [count, _] = answers.input_ids.dims();
        let k = k.min(count);
        let start = answers
            .input_ids
            .clone()
            .slice([0..1, 0..1])
            .repeat_dim(0, batch);
        let first = self
            .text_decoder
            .logits(&TextInput::new(start), &questions.context());
        let vocab = first.dims()[2];
        let first_tokens = answers
            .input_ids
            .clone()
            .slice([0..count, 1..2])
            .reshape([1, count])
            .repeat_dim(0, batch);
        let probs = softmax(first.reshape([batch, vocab]), 1).gather(1, first_tokens);
        let topk = top_k_stable(probs.clone(), k);
        let rows = topk.clone().reshape([batch * k]);
        let candidates = TextInput {
            input_ids: answers.input_ids.clone().select(0, rows.clone()),
            padding: answers
                .padding
                .clone()
                .map(|p| p.int().select(0, rows.clone()).bool()),
            token_type_ids: None,
        };
        let nll = self
            .answer_nll(&candidates, &questions.tile(k))
            .reshape([batch, k]);
        let score = probs.gather(1, topk.clone()).log() - nll;
        let answer = topk.clone().gather(1, score.argmax(1)).reshape([batch]);
        (topk, answer)
    }
}

/// Fused question states and their padding, the decoder's cross-attention
/// context.
#[derive(Debug, Clone)]
pub struct QuestionStates {
    /// `[batch, len, hidden]`.
    pub states: Tensor<3>,
    /// `[batch, len]`, `true` = padding.
    pub padding: Option<Tensor<2, Bool>>,
}

impl QuestionStates {
    fn context(&self) -> CrossAttentionInput {
        CrossAttentionInput {
            states: self.states.clone(),
            mask: AttentionMask {
                key_padding: self.padding.clone(),
                causal: false,
            },
        }
    }

    /// Each row repeated `n` times in place (`tile` in the reference):
    /// rows `0, 0, …, 1, 1, …`.
    pub fn tile(&self, n: usize) -> Self {
        let [batch, len, hidden] = self.states.dims();
        let states = self
            .states
            .clone()
            .reshape([batch, 1, len, hidden])
            .repeat_dim(1, n)
            .reshape([batch * n, len, hidden]);
        let padding = self.padding.clone().map(|p| {
            p.int()
                .reshape([batch, 1, len])
                .repeat_dim(1, n)
                .reshape([batch * n, len])
                .bool()
        });
        Self { states, padding }
    }
}

/// Summed NLL per row of `text`'s tokens after the first, from next-token
/// `logits` `[batch, len, vocab]`; padded positions do not count.
pub fn sequence_nll(logits: Tensor<3>, text: &TextInput) -> Tensor<1> {
    let [batch, len, _] = logits.dims();
    let log_probs = log_softmax(logits.slice([0..batch, 0..len - 1]), 2);
    let targets = text
        .input_ids
        .clone()
        .slice([0..batch, 1..len])
        .reshape([batch, len - 1, 1]);
    let picked = log_probs.gather(2, targets).reshape([batch, len - 1]);
    let picked = match &text.padding {
        Some(padding) => picked.mask_fill(padding.clone().slice([0..batch, 1..len]), 0.0),
        None => picked,
    };
    picked.sum_dim(1).reshape([batch]).neg()
}

/// The `k` largest entries' indices per row, `[rows, k]`, descending;
/// equal values keep the lower index first (torch's `topk` leaves their
/// order unspecified).
fn top_k_stable(values: Tensor<2>, k: usize) -> Tensor<2, Int> {
    let [rows, cols] = values.dims();
    let device = values.device();
    let data = values
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values");
    let ids: Vec<i64> = data
        .chunks(cols)
        .flat_map(|row| {
            let mut order: Vec<usize> = (0..cols).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order.into_iter().take(k).map(|i| i as i64)
        })
        .collect();
    Tensor::from_data(TensorData::new(ids, [rows, k]), &device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;

    use super::*;

    fn model(device: &Device) -> (AlbefConfig, AlbefVqa) {
        device.seed(3);
        let config = AlbefConfig::tiny(60);
        let vqa = config.init_vqa(device).unwrap();
        (config, vqa)
    }

    fn questions(vqa: &AlbefVqa, device: &Device) -> QuestionStates {
        let ids = Tensor::<2, Int>::random([2, 5], Distribution::Uniform(5.0, 60.0), device);
        let image = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), device);
        let question = TextInput::new(ids);
        QuestionStates {
            states: vqa.question_states(image, &question),
            padding: None,
        }
    }

    #[test]
    fn the_decoder_starts_as_the_fusion_layers_and_the_mlm_head() {
        let device = Device::flex();
        let (config, vqa) = model(&device);
        let fusion = config.bert_config.text_layers();
        let decoder = &vqa.text_decoder.bert.encoder.layer;
        assert_eq!(decoder.len(), config.bert_config.num_hidden_layers - fusion);
        for (i, layer) in decoder.iter().enumerate() {
            let from = &vqa.text_encoder.encoder.layer[fusion + i];
            let weight = |l: &crate::blocks::TransformerLayer| {
                l.crossattention
                    .as_ref()
                    .unwrap()
                    .key
                    .weight
                    .val()
                    .into_data()
            };
            assert_eq!(weight(layer), weight(from), "decoder layer {i}");
        }
        assert_eq!(vqa.text_decoder.bert.text_layers, 0);
    }

    #[test]
    fn the_decoder_is_causal() {
        let device = Device::flex();
        let (_, vqa) = model(&device);
        let questions = questions(&vqa, &device);
        let ids = |last: i64| {
            Tensor::<2, Int>::from_data(
                TensorData::new(vec![2, 7, 9, last, 2, 7, 9, last], [2, 4]),
                &device,
            )
        };
        let a = vqa.answer_logits(&TextInput::new(ids(11)), &questions);
        let b = vqa.answer_logits(&TextInput::new(ids(40)), &questions);
        let head = |t: Tensor<3>| t.slice([0..2, 0..3]).into_data();
        head(a.clone()).assert_approx_eq::<f32>(&head(b.clone()), Default::default());
        let diff = (a.slice([0..2, 3..4]) - b.slice([0..2, 3..4]))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff > 1e-3, "the last position sees its own token ({diff})");
    }

    #[test]
    fn ranking_picks_the_most_likely_answer_among_the_top_k() {
        let device = Device::flex();
        let (_, vqa) = model(&device);
        let questions = questions(&vqa, &device);
        // Five answers `[CLS] x [SEP]`, distinct first tokens.
        let ids: Vec<i64> = (0..5).flat_map(|i| [2, 10 + 7 * i, 3]).collect();
        let answers = TextInput::new(Tensor::from_data(TensorData::new(ids, [5, 3]), &device));
        let (topk, answer) = vqa.rank_answers(&questions, &answers, 5);
        // With k = every answer, the pick maximises log p(first) − NLL:
        // computed here the long way, log p(first) as the NLL of
        // `[CLS] first` alone (the decoder is causal).
        let nll_of = |ids: Tensor<2, Int>| {
            vqa.answer_nll(&TextInput::new(ids.repeat_dim(0, 2)), &questions.tile(5))
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let whole = nll_of(answers.input_ids.clone());
        let first = nll_of(answers.input_ids.clone().slice([0..5, 0..2]));
        let topk = topk
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap();
        let answer = answer
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap();
        for q in 0..2 {
            let row = |v: &[f32]| v[q * 5..(q + 1) * 5].to_vec();
            let (whole, first) = (row(&whole), row(&first));
            let by_first: Vec<i64> = {
                let mut order: Vec<i64> = (0..5).collect();
                order.sort_by(|&a, &b| first[a as usize].total_cmp(&first[b as usize]));
                order
            };
            assert_eq!(&topk[q * 5..(q + 1) * 5], by_first, "question {q}");
            let best = (0..5)
                .max_by(|&a, &b| (-first[a] - whole[a]).total_cmp(&(-first[b] - whole[b])))
                .unwrap();
            assert_eq!(answer[q], best as i64, "question {q}");
        }
    }
}
