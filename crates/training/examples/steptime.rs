//! Times ALBEF pretraining steps of the tiny preset on one fixed batch.
use burn::tensor::Device;
use std::sync::Arc;
use std::time::Instant;
use vl_data::manifest::read_captioned_images;
use vl_data::{BadEntries, Loader, LoaderConfig, TextTokenizer};
use vl_training::albef::{AlbefPretraining, PretrainConfig};

#[allow(unsafe_code)]
fn main() {
    if std::env::var("KEEP").is_ok() {
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
    let world = std::path::Path::new("/tmp/world");
    let batch_size: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(64);
    let dropout: f64 = std::env::args()
        .nth(2)
        .map(|a| a.parse().unwrap())
        .unwrap_or(0.1);
    let mut config = PretrainConfig::tiny(0);
    let (items, _) =
        read_captioned_images(&world.join("pretrain_en.json"), None, 60, BadEntries::Fail).unwrap();
    let tokenizer =
        TextTokenizer::train_wordpiece(items.iter().flat_map(|i| i.captions.iter()), 30522)
            .unwrap();
    config.model.bert_config.vocab_size = tokenizer.vocab_size();
    config.model.bert_config.hidden_dropout_prob = dropout;
    config.model.bert_config.attention_probs_dropout_prob = dropout;
    config.batch_size = batch_size;
    if let Ok(p) = std::env::var("PATCH") {
        config.model.patch_size = p.parse().unwrap();
    }
    let loader = Loader::new(
        items,
        Arc::new(tokenizer.clone()),
        LoaderConfig {
            batch_size,
            image_size: 64,
            augment: Some(config.augment.clone()),
            max_tokens: 64,
            seed: 1,
            prefetch: 1,
            bad: BadEntries::Fail,
        },
    );
    let batches: Vec<_> = (0..4).map(|s| loader.batch(0, s).unwrap()).collect();
    let device = Device::flex();
    let model = config.model.init(true, &device);
    let mut state = AlbefPretraining::new(
        config,
        model,
        tokenizer.special_tokens().unwrap(),
        1,
        &device,
    );
    state.step(&batches[0], 1000).unwrap();
    let start = Instant::now();
    let n = 6;
    for i in 0..n {
        state.step(&batches[i % 4], 1000).unwrap();
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "batch {batch_size} dropout {dropout}: {:.0} ms/step, {:.1} samples/s (text len {})",
        per * 1e3,
        batch_size as f64 / per,
        batches[0].text.len
    );
}
