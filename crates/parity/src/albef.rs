//! Outputs of the ALBEF models: the pretraining or retrieval model and the
//! VQA model with its answer ranking.

use burn::tensor::Tensor;
use vl_models::TextInput;
use vl_models::albef::vqa::{AlbefVqa, QuestionStates};
use vl_models::blocks::padding_mask;

use crate::{Computed, Inputs, ParityError, outputs};

pub(crate) fn albef_outputs(
    model: &vl_models::Albef,
    inputs: &Inputs,
) -> Result<Computed, ParityError> {
    let text = inputs.text()?;
    let image_embeds = model.image_embeds(inputs.float::<4>("image")?);
    let image_feat = model.image_feat(image_embeds.clone());
    let text_embeds = model.text_embeds(&text);
    let text_feat = model.text_feat(text_embeds.clone());
    let sim_i2t = image_feat.clone().matmul(text_feat.clone().transpose())
        / model.temp.val().unsqueeze::<2>();
    let fusion = model.fusion(
        text_embeds.clone(),
        text.padding.clone(),
        image_embeds.clone(),
    );
    let multimodal = model.multimodal(&text, image_embeds.clone());
    let mut computed = outputs([
        ("image_embeds", image_embeds),
        ("text_embeds", text_embeds),
        ("fusion_last_hidden_state", fusion.clone()),
        ("multimodal_last_hidden_state", multimodal.clone()),
    ]);
    computed.extend(outputs([
        ("image_feat", image_feat),
        ("text_feat", text_feat),
        ("sim_i2t", sim_i2t),
        ("itm_logits", model.itm_logits(fusion)),
    ]));
    if model.has_mlm_head() {
        computed.insert("mlm_logits", model.mlm_logits(multimodal).into_data());
    }
    if inputs.io.contains("pos_embed_in") {
        let table = inputs.float::<3>("pos_embed_in")?;
        computed.insert(
            "pos_embed_interp_6x6",
            vl_models::vit::interpolate_pos_embed(table, 6).into_data(),
        );
    }
    Ok(computed)
}

/// The VQA outputs: every answer's teacher-forced logits for every
/// question, `[questions, answers, len, vocab]`; the `k` candidates by
/// first-token probability; the answer the ranking picks.
pub(crate) fn vqa_outputs(
    model: &AlbefVqa,
    inputs: &Inputs,
    k: usize,
) -> Result<Computed, ParityError> {
    let question = inputs.text()?;
    let questions = QuestionStates {
        states: model.question_states(inputs.float::<4>("image")?, &question),
        padding: question.padding.clone(),
    };
    let answers = TextInput::new(inputs.int("answer_input_ids")?)
        .with_padding(padding_mask(inputs.int("answer_attention_mask")?));
    let [batch, _, _] = questions.states.dims();
    let [count, len] = answers.input_ids.dims();
    let every = TextInput {
        input_ids: answers.input_ids.clone().repeat_dim(0, batch),
        padding: answers
            .padding
            .clone()
            .map(|p| p.int().repeat_dim(0, batch).bool()),
        token_type_ids: None,
    };
    let logits = model.answer_logits(&every, &questions.tile(count));
    let vocab = logits.dims()[2];
    let logits: Tensor<4> = logits.reshape([batch, count, len, vocab]);
    let (topk, answer) = model.rank_answers(&questions, &answers, k);
    let mut computed = outputs([("vqa_decoder_logits", logits)]);
    computed.insert("vqa_topk_ids", topk.into_data());
    computed.insert("vqa_answer", answer.into_data());
    Ok(computed)
}
