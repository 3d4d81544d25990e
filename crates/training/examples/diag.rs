use burn::tensor::Device;
use std::sync::Arc;
use vl_data::manifest::read_captioned_images;
use vl_data::{BadEntries, Loader, LoaderConfig, TextTokenizer};
use vl_training::albef::{AlbefPretraining, PretrainConfig};
use vl_training::schedule::ScheduleConfig;

fn main() {
    let world = std::path::Path::new("/tmp/world");
    let mut config = PretrainConfig::tiny(0);
    let (items, _) =
        read_captioned_images(&world.join("pretrain_en.json"), None, 60, BadEntries::Fail).unwrap();
    let tokenizer =
        TextTokenizer::train_wordpiece(items.iter().flat_map(|i| i.captions.iter()), 30522)
            .unwrap();
    config.model.bert_config.vocab_size = tokenizer.vocab_size();
    config.batch_size = 32;
    config.queue_size = 64;
    config.alpha = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(0.0);
    let lr: f64 = std::env::args()
        .nth(2)
        .map(|a| a.parse().unwrap())
        .unwrap_or(1e-3);
    config.momentum = std::env::args()
        .nth(3)
        .map(|a| a.parse().unwrap())
        .unwrap_or(0.995);
    config.schedular = ScheduleConfig {
        lr,
        warmup_lr: lr,
        min_lr: lr,
        warmup_epochs: 0,
        ..ScheduleConfig::default()
    };
    config.augment.randaugment_ops = 0;
    let loader = Loader::new(
        items[..32].to_vec(),
        Arc::new(tokenizer.clone()),
        LoaderConfig {
            batch_size: 32,
            image_size: 64,
            augment: Some(config.augment.clone()),
            max_tokens: 64,
            seed: 1,
            prefetch: 1,
            bad: BadEntries::Fail,
        },
    );
    let batch = loader.batch(0, 0).unwrap();
    let device = Device::flex();
    device.seed(1);
    let model = config.model.init(true, &device);
    let mut state = AlbefPretraining::new(
        config,
        model,
        tokenizer.special_tokens().unwrap(),
        1,
        &device,
    );
    let steps: usize = std::env::args()
        .nth(4)
        .map(|a| a.parse().unwrap())
        .unwrap_or(80);
    for step in 0..steps {
        let l = state.step(&batch, 1).unwrap();
        if step % (steps / 10) == 0 {
            println!(
                "{step} ita {:.3} itm {:.3} mlm {:.3} temp {:.4}",
                l.loss_ita, l.loss_itm, l.loss_mlm, l.temp
            );
        }
    }
}
