//! Pretraining steps learn, and their thread layouts agree.

use burn::module::Module;
use rand::SeedableRng;
use rand::rngs::StdRng;
use vl_models::AlbefConfig;

use super::*;
use crate::albef::config::{ExecutionConfig, StepThreads};
use crate::runner::schedule::ScheduleConfig;

use vl_data::EncodedBatch;
use vl_models::BertConfig;

/// `samples` (2 or 4) 16-px images, random ones and their negatives,
/// with captions of 5, 3, 4 and 2 tokens.
fn batch(seed: u64, samples: usize) -> ImageTextBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let pixels: Vec<f32> = (0..samples / 2)
        .flat_map(|_| {
            let image: Vec<f32> = (0..3 * 16 * 16)
                .map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0))
                .collect();
            let negative: Vec<f32> = image.iter().map(|p| -p).collect();
            [image, negative].concat()
        })
        .collect();
    #[rustfmt::skip]
    let (ids, attention_mask) = (
        [2, 7, 8, 9, 10, 2, 11, 12, 0, 0, 2, 13, 14, 15, 0, 2, 16, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0],
    );
    ImageTextBatch {
        images: vl_data::ImageBatch::from_values(pixels, 16),
        captions: ["a", "b", "c", "d"].map(String::from)[..samples].to_vec(),
        text: EncodedBatch {
            ids: ids[..5 * samples].to_vec(),
            attention_mask: attention_mask[..5 * samples].to_vec(),
            batch: samples,
            len: 5,
        },
        image_ids: (0..samples).collect(),
    }
}

fn small_config() -> PretrainConfig {
    let mut config = PretrainConfig::tiny(20);
    config.model = AlbefConfig {
        bert_config: BertConfig {
            vocab_size: 20,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 8,
            fusion_layer: Some(1),
            encoder_width: Some(16),
            ..BertConfig::albef_base()
        },
        image_res: 16,
        patch_size: 8,
        vision_width: 16,
        vision_depth: 1,
        vision_heads: 2,
        embed_dim: 8,
        temp: 0.07,
    };
    // One worker unless a test asks for more (`step_and_learn`).
    config.execution.workers = 1;
    config.queue_size = 6;
    config.mlm_probability = 0.5;
    config.schedular = ScheduleConfig {
        lr: 3e-3,
        warmup_lr: 3e-3,
        min_lr: 3e-3,
        warmup_epochs: 0,
        ..ScheduleConfig::default()
    };
    config
}

#[test]
fn a_step_changes_every_encoder_and_a_fixed_batch_is_learned() {
    step_and_learn(1, 2);
}

#[test]
fn two_data_parallel_workers_learn_and_enqueue_the_whole_batch() {
    // Each worker gets two samples, as the single worker above.
    step_and_learn(2, 4);
}

/// Losses of three steps on `batch`, then a ViT and the word-embedding
/// weights, from seeded initial weights.
fn three_steps(
    config: &PretrainConfig,
    threads: StepThreads,
    batch: &ImageTextBatch,
) -> (Vec<f32>, Tensor<2>, Tensor<2>) {
    let device = Device::flex();
    let special = SpecialTokens {
        pad: 0,
        cls: 2,
        mask: 3,
    };
    device.seed(1);
    let model = config.model.init(true, &device);
    let mut config = config.clone();
    config.execution.step_threads = threads;
    let mut state = AlbefPretraining::new(config, model, special, 1, &device);
    let losses: Vec<f32> = (0..3)
        .flat_map(|_| {
            let l = state.step(batch, 1000).unwrap();
            [l.loss_ita, l.loss_itm, l.loss_mlm]
        })
        .collect();
    let vit = state.model().visual_encoder.blocks[0].mlp.fc1.weight.val();
    let words = state
        .model()
        .text_encoder
        .bert
        .embeddings
        .word_embeddings
        .weight
        .val();
    (losses, vit, words)
}

fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn without_dropout() -> PretrainConfig {
    let mut config = small_config();
    config.model.bert_config.hidden_dropout_prob = 0.0;
    config.model.bert_config.attention_probs_dropout_prob = 0.0;
    config
}

#[test]
fn the_split_branches_step_as_one_thread_does() {
    // MLM on a second thread with its own copy of the parameters: the
    // summed gradients, hence losses and weights, are those of one
    // graph, up to float rounding; the batch of another seed is not.
    let _seeded = crate::seeded_device();
    let config = without_dropout();
    let (losses, vit, words) = three_steps(&config, StepThreads::One, &batch(3, 2));
    let (split_losses, split_vit, split_words) =
        three_steps(&config, StepThreads::SplitBranches, &batch(3, 2));
    for (a, b) in losses.iter().zip(&split_losses) {
        assert!((a - b).abs() < 1e-4, "{losses:?} vs {split_losses:?}");
    }
    assert!(max_diff(vit.clone(), split_vit) < 1e-5);
    assert!(max_diff(words.clone(), split_words) < 1e-5);
    let (_, other_vit, _) = three_steps(&config, StepThreads::SplitBranches, &batch(4, 2));
    assert!(max_diff(vit, other_vit) > 1e-4);
}

#[test]
fn length_groups_step_as_the_padded_batch_does() {
    // Captions of 5, 3, 4 and 2 tokens, in one padded group (the
    // reference), two or four: padding is masked out of every pass, so
    // losses and weights agree up to float rounding, on either thread
    // layout.
    let _seeded = crate::seeded_device();
    let mut config = without_dropout();
    let batch = batch(3, 4);
    config.execution.text_length_groups = 1;
    let (losses, vit, words) = three_steps(&config, StepThreads::One, &batch);
    for (groups, threads) in [(2, StepThreads::SplitBranches), (4, StepThreads::One)] {
        config.execution.text_length_groups = groups;
        let (grouped_losses, grouped_vit, grouped_words) = three_steps(&config, threads, &batch);
        for (a, b) in losses.iter().zip(&grouped_losses) {
            assert!(
                (a - b).abs() < 1e-4,
                "{groups} groups: {losses:?} vs {grouped_losses:?}"
            );
        }
        assert!(max_diff(vit.clone(), grouped_vit) < 1e-5);
        assert!(max_diff(words.clone(), grouped_words) < 1e-5);
    }
}

fn step_and_learn(workers: usize, samples: usize) {
    let _seeded = crate::seeded_device();
    let device = Device::flex();
    let config = PretrainConfig {
        execution: ExecutionConfig {
            workers,
            // What the step chose for this config (dropout on) before
            // `step_threads` was a key of its own.
            step_threads: match workers {
                1 => StepThreads::OverlapMomentum,
                _ => StepThreads::One,
            },
            ..small_config().execution
        },
        ..small_config()
    };
    device.seed(1);
    let model = config.model.init(true, &device);
    let special = SpecialTokens {
        pad: 0,
        cls: 2,
        mask: 3,
    };
    let mut state = AlbefPretraining::new(config, model, special, 1, &device);
    let before = state.model().valid();
    let batch = batch(3, samples);
    let ptr = state.queue.ptr;
    let first = state.step(&batch, 1000).unwrap();
    assert_eq!(
        (state.queue.ptr + state.queue.size() - ptr) % state.queue.size(),
        samples,
        "every sample's momentum features are enqueued"
    );
    let after = state.model().valid();
    let changed = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f32>() > 0.0;
    let layer = |m: &Albef| {
        m.text_encoder.bert.encoder.layer[0]
            .attention
            .query
            .weight
            .val()
    };
    let proj = |m: &Albef| m.text_proj.weight.val();
    let itm = |m: &Albef| m.itm_head.weight.val();
    let fusion = |m: &Albef| m.text_encoder.bert.encoder.layer[1].mlp.fc1.weight.val();
    let words = |m: &Albef| m.text_encoder.bert.embeddings.word_embeddings.weight.val();
    for (name, get) in [
        ("text_proj", proj as fn(&Albef) -> Tensor<2>),
        ("itm_head", itm),
        ("fusion layer", fusion),
        ("word embeddings", words),
        ("text layer", layer),
    ] {
        assert!(changed(get(&before), get(&after)), "{name} did not move");
    }
    let vit = |m: &Albef| m.visual_encoder.blocks[0].mlp.fc1.weight.val();
    assert!(
        changed(vit(&before), vit(&after)),
        "image encoder did not move"
    );
    // The weight average's first update keeps a tenth of the old weights.
    assert_eq!(model_ema_decay_at(0.997, 0), 0.1);
    assert_eq!(model_ema_decay_at(0.997, 100_000), 0.997);
    let average = state.evaluated();
    for get in [itm as fn(&Albef) -> Tensor<2>, vit, words] {
        let expected = get(&before) * 0.1 + get(&after) * 0.9;
        let error = (get(&average) - expected).abs().max().into_scalar::<f32>();
        assert!(error < 1e-6, "weight average off by {error}");
    }
    // ITM stays near ln 2 for ~150 steps before it separates the pairs, and
    // single steps spike: judge the mean of the last 50 of 400 steps.
    let (mut itm_tail, mut mlm_tail) = (0.0, 0.0);
    for i in 0..400 {
        let losses = state.step(&batch, 1000).unwrap();
        if i >= 350 {
            itm_tail += losses.loss_itm / 50.0;
            mlm_tail += losses.loss_mlm / 50.0;
        }
    }
    println!("first {first:?}\nlast 50: itm {itm_tail}, mlm {mlm_tail}");
    assert!(
        itm_tail < 0.5 * first.loss_itm,
        "{first:?} → itm {itm_tail}"
    );
    assert!(
        mlm_tail < 0.5 * first.loss_mlm,
        "{first:?} → mlm {mlm_tail}"
    );
}

#[test]
fn a_step_that_masks_nothing_has_no_mlm_loss() {
    // `mlm_probability: 0` turns MLM off: no loss, no gradient, on either
    // thread layout (the split one differentiates MLM on its own).
    let _seeded = crate::seeded_device();
    let mut config = without_dropout();
    config.mlm_probability = 0.0;
    for threads in [StepThreads::SplitBranches, StepThreads::One] {
        let (losses, _, _) = three_steps(&config, threads, &batch(3, 2));
        for step in losses.chunks(3) {
            assert_eq!(step[2], 0.0, "{threads:?}: {losses:?}");
            assert!(step[0].is_finite() && step[1].is_finite(), "{losses:?}");
        }
    }
}
