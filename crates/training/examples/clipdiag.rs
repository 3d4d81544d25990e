use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use std::sync::Arc;
use vl_data::manifest::read_captioned_images;
use vl_data::{BadEntries, Loader, LoaderConfig, TextTokenizer};
use vl_models::blocks::padding_mask;
use vl_models::{AlbefConfig, TextInput};

fn main() {
    let world = std::path::Path::new("/tmp/world");
    let (items, _) =
        read_captioned_images(&world.join("pretrain_en.json"), None, 60, BadEntries::Fail).unwrap();
    let tokenizer =
        TextTokenizer::train_wordpiece(items.iter().flat_map(|i| i.captions.iter()), 30522)
            .unwrap();
    let mut augment = vl_data::transforms::AugmentConfig::default();
    augment.randaugment_ops = 0;
    let loader = Loader::new(
        items[..32].to_vec(),
        Arc::new(tokenizer.clone()),
        LoaderConfig {
            batch_size: 32,
            image_size: 64,
            augment: Some(augment),
            max_tokens: 64,
            seed: 1,
            prefetch: 1,
            bad: BadEntries::Fail,
        },
    );
    let batch = loader.batch(0, 0).unwrap();
    let device = Device::flex();
    device.seed(1);
    let lr: f64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(1e-3);
    let mut config = AlbefConfig::tiny(tokenizer.vocab_size());
    config.bert_config.initializer_range = std::env::args()
        .nth(4)
        .map(|a| a.parse().unwrap())
        .unwrap_or(0.02);
    let mut model = config.init(true, &device).train();
    let ad = model.temp.val().device();
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).init();
    let image = Tensor::<4>::from_data(TensorData::new(batch.pixels.clone(), [32, 3, 64, 64]), &ad);
    let (ids, mask) = batch.text.to_tensors(&ad);
    let text = TextInput::new(ids).with_padding(padding_mask(mask));
    let which = std::env::args().nth(2).unwrap_or("both".into());
    let steps: usize = std::env::args()
        .nth(3)
        .map(|a| a.parse().unwrap())
        .unwrap_or(60);
    for step in 0..steps {
        let image_feat = model.image_feat(model.image_embeds(image.clone()));
        let text_feat = model.text_feat(model.text_embeds(&text));
        let (i, t) = match which.as_str() {
            "image" => (image_feat, text_feat.without_autodiff().autodiff()),
            "text" => (image_feat.without_autodiff().autodiff(), text_feat),
            _ => (image_feat, text_feat),
        };
        let logits = i.matmul(t.transpose()) / 0.07;
        let loss = vl_objectives::clip_loss(logits);
        if step % (steps / 6) == 0 {
            println!("{step} clip loss {:.3}", loss.clone().into_scalar::<f32>());
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
    }
}
