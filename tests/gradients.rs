//! Autodiff through our blocks agrees with finite differences: ALBEF's ITM,
//! MLM and contrastive heads over the ViT, the text encoder and the fusion
//! layers (cross-attention with padding, unequal query and key lengths).

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use vl_models::blocks::padding_mask;
use vl_models::{Albef, AlbefConfig, BertConfig, TextInput};

fn loss(model: &Albef, image: Tensor<4>, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<1> {
    let text = TextInput::new(ids).with_padding(padding_mask(mask.clone()));
    let image_embeds = model.image_embeds(image);
    let text_embeds = model.text_embeds(&text);
    let fused = model.fusion(
        text_embeds.clone(),
        Some(padding_mask(mask)),
        image_embeds.clone(),
    );
    let itm = model.itm_logits(fused);
    let mlm = model.mlm_logits(model.multimodal(&text, image_embeds));
    let [b, _] = itm.dims();
    let weights: Vec<f32> = (0..b * 2).map(|i| (i as f32 * 0.37).sin()).collect();
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [b, 2]), &itm.device());
    (itm * weights).sum() + (mlm.clone() * mlm).mean() + model.text_feat(text_embeds).sum()
}

type Get = fn(&mut Albef) -> &mut Param<Tensor<2>>;

#[test]
fn albef_gradients_match_finite_differences() {
    let device = Device::flex();
    device.seed(9);
    let config = AlbefConfig {
        bert_config: BertConfig {
            vocab_size: 20,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 12,
            max_position_embeddings: 8,
            fusion_layer: Some(1),
            encoder_width: Some(8),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.3,
            ..BertConfig::albef_base()
        },
        image_res: 16,
        patch_size: 8,
        vision_width: 8,
        vision_depth: 1,
        vision_heads: 2,
        embed_dim: 4,
        temp: 0.07,
    };
    let model = config.init(true, &device);
    let image = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let ids = Tensor::<2, Int>::from_data([[2, 5, 6, 7, 9], [2, 11, 12, 0, 0]], &device);
    let mask = Tensor::<2, Int>::from_data([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &device);
    let trained = model.clone().train();
    let grads = loss(
        &trained,
        image.clone().autodiff(),
        ids.clone(),
        mask.clone(),
    )
    .backward();
    let checks: [(&str, Get); 6] = [
        ("fusion cross-attention key", |m| {
            &mut m.text_encoder.bert.encoder.layer[1]
                .crossattention
                .as_mut()
                .unwrap()
                .key
                .weight
        }),
        ("fusion cross-attention query", |m| {
            &mut m.text_encoder.bert.encoder.layer[1]
                .crossattention
                .as_mut()
                .unwrap()
                .query
                .weight
        }),
        ("text self-attention value", |m| {
            &mut m.text_encoder.bert.encoder.layer[0].attention.value.weight
        }),
        ("ViT MLP", |m| {
            &mut m.visual_encoder.blocks[0].mlp.fc2.weight
        }),
        ("ITM head", |m| &mut m.itm_head.weight),
        ("word embeddings (tied decoder)", |m| {
            &mut m.text_encoder.bert.embeddings.word_embeddings.weight
        }),
    ];
    for (name, get) in checks {
        let mut copy = trained.clone();
        let analytic = get(&mut copy).val().grad(&grads).expect("a gradient");
        let analytic = analytic
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        for index in [0usize, 3, 7] {
            let eps = 1e-2f32;
            let shifted = |delta: f32| {
                let mut m = model.clone();
                let param = get(&mut m);
                let value = param.val();
                let dims = value.dims();
                let mut data = value
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap();
                data[index] += delta;
                *param = Param::from_tensor(Tensor::<2>::from_data(
                    TensorData::new(data, dims),
                    &device,
                ));
                loss(&m, image.clone(), ids.clone(), mask.clone()).into_scalar::<f32>()
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            let tolerance = 1e-3 + 1e-2 * numeric.abs();
            assert!(
                (analytic[index] - numeric).abs() <= tolerance,
                "{name}[{index}]: autodiff {} vs finite difference {numeric}",
                analytic[index]
            );
        }
    }
}
