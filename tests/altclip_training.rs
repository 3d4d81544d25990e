//! AltCLIP's teacher learning transfers a second language: after a short
//! stage 1 on parallel English–Chinese captions, the held-out MSE has
//! fallen and the student classifies held-out images from Chinese prompts
//! far above chance. A small world and one layer per tower keep this to
//! CI's budget; `cargo run -p altclip-distill` is the full-size run.

use std::sync::Arc;

use burn::tensor::Device;
use vl_data::manifest::read_captioned_images;
use vl_data::parallel::read_parallel_tsv;
use vl_data::transforms::{eval_transform, pre_caption};
use vl_data::world::{
    Language, WorldConfig, class_prompts, render_scene, write_world, zero_shot_classes,
    zero_shot_scenes,
};
use vl_data::{BadEntries, Framing, ImageBatch, Loader, LoaderConfig, TextTokenizer};
use vl_training::altclip::{
    AltClipRecipe, Distillation, ParallelBatches, TeacherTraining, held_out_mse, teacher_targets,
};
use vl_training::eval::dual_encoder::{
    DualEncoder, class_embeddings, embed_images, zero_shot_accuracy,
};
use vl_training::runner::{RunPaths, StopAt, train};

/// `(english, chinese)` pairs as stage-1 batches with the teacher's targets.
fn batches(
    pairs: Vec<(String, String)>,
    teacher: &vl_models::ClipModel,
    teacher_tokenizer: &TextTokenizer,
    tokenizer: &Arc<TextTokenizer>,
    recipe: &AltClipRecipe,
    device: &Device,
) -> ParallelBatches {
    let sources: Vec<String> = pairs.iter().map(|(s, _)| s.clone()).collect();
    let targets = teacher_targets(
        teacher,
        teacher_tokenizer,
        &sources,
        recipe.max_tokens,
        device,
    )
    .unwrap();
    ParallelBatches {
        target_of: (0..pairs.len()).collect(),
        texts: pairs.into_iter().map(|(_, t)| t).collect(),
        targets: Arc::new(targets),
        width: recipe.teacher.text_config.hidden_size,
        tokenizer: tokenizer.clone(),
        batch_size: recipe.stage1.batch_size,
        max_tokens: recipe.max_tokens,
        seed: 2,
    }
}

/// Zero-shot accuracy on held-out single-object images, from prompts in
/// `language`.
fn zero_shot(
    model: &impl DualEncoder,
    tokenizer: &TextTokenizer,
    world: &WorldConfig,
    language: Language,
    device: &Device,
) -> f64 {
    let scenes = zero_shot_scenes(world, 3);
    let mut images = ImageBatch::new(32);
    for (scene, _) in &scenes {
        images.push(&eval_transform(&render_scene(scene, world.image_size), 32));
    }
    let labels: Vec<usize> = scenes.iter().map(|(_, l)| *l).collect();
    let prompts: Vec<Vec<String>> = zero_shot_classes()
        .into_iter()
        .map(|(c, s)| {
            class_prompts(language, c, s)
                .iter()
                .map(|p| pre_caption(p, 60))
                .collect()
        })
        .collect();
    let classes = class_embeddings(model, tokenizer, &prompts, 64, device).unwrap();
    zero_shot_accuracy(&embed_images(model, &images, device), &labels, &classes)
}

#[test]
fn teacher_learning_transfers_zero_shot_classification_to_chinese() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let world = WorldConfig {
        seed: 4,
        images: 1600,
        val_images: 40,
        test_images: 10,
        languages: vec![Language::En, Language::Zh],
        ..WorldConfig::default()
    };
    write_world(&world, dir).unwrap();
    let device = Device::flex();
    let mut recipe = AltClipRecipe::tiny();
    recipe.teacher.text_config.num_hidden_layers = 1;
    recipe.teacher.vision_config.num_hidden_layers = 1;
    recipe.student.roberta.num_hidden_layers = 1;
    recipe.teacher_training.schedular.epochs = 16;

    // The teacher, trained contrastively on the English captions.
    let items = read_captioned_images(&dir.join("pretrain_en.json"), None, 60, BadEntries::Fail)
        .unwrap()
        .0;
    let teacher_tokenizer = TextTokenizer::train_wordpiece(
        items.iter().flat_map(|i| i.captions.iter()),
        30522,
        Framing::StartEnd,
    )
    .unwrap();
    recipe.teacher.text_config.vocab_size = teacher_tokenizer.vocab_size();
    let loader = Loader::new(
        items,
        Arc::new(teacher_tokenizer.clone()),
        LoaderConfig {
            batch_size: recipe.teacher_training.batch_size,
            image_size: 32,
            augment: Some(recipe.augment.clone()),
            max_tokens: recipe.max_tokens,
            seed: 1,
            prefetch: 2,
            bad: BadEntries::Fail,
            similar_fraction: 0.0,
        },
    )
    .unwrap();
    device.seed(1);
    let mut teacher =
        TeacherTraining::new(recipe.clone(), recipe.teacher.init(&device), 1, &device);
    let stop = |epochs| StopAt {
        epochs,
        max_steps: None,
    };
    let teacher_dir = dir.join("teacher");
    std::fs::create_dir_all(&teacher_dir).unwrap();
    train(
        &mut teacher,
        &loader,
        &RunPaths::in_dir(&teacher_dir),
        stop(recipe.teacher_training.schedular.epochs),
        "teacher",
    )
    .unwrap();
    let teacher = teacher.model();
    let teacher_en = zero_shot(&teacher, &teacher_tokenizer, &world, Language::En, &device);

    // Stage 1 on the parallel captions (and English–English pairs);
    // held out: the validation images' captions.
    let clean = |s: &str| pre_caption(s, 60);
    let mut train_pairs: Vec<(String, String)> = read_parallel_tsv(&dir.join("parallel_en_zh.tsv"))
        .unwrap()
        .into_iter()
        .map(|p| (clean(&p.source), clean(&p.target)))
        .collect();
    let english: Vec<(String, String)> = train_pairs
        .iter()
        .map(|(s, _)| (s.clone(), s.clone()))
        .collect();
    train_pairs.extend(english);
    let read = |name: &str| {
        read_captioned_images(&dir.join(name), None, 60, BadEntries::Fail)
            .unwrap()
            .0
    };
    let (val_en, val_zh) = (read("retrieval_val_en.json"), read("retrieval_val_zh.json"));
    let held_out_pairs: Vec<(String, String)> = val_en
        .iter()
        .zip(&val_zh)
        .flat_map(|(e, z)| e.captions.iter().cloned().zip(z.captions.iter().cloned()))
        .collect();
    let tokenizer = Arc::new(
        TextTokenizer::train_unigram(train_pairs.iter().flat_map(|(s, t)| [s, t]), 4000).unwrap(),
    );
    recipe.student.roberta.vocab_size = tokenizer.vocab_size();
    let train_set = batches(
        train_pairs,
        &teacher,
        &teacher_tokenizer,
        &tokenizer,
        &recipe,
        &device,
    );
    let held_out = batches(
        held_out_pairs,
        &teacher,
        &teacher_tokenizer,
        &tokenizer,
        &recipe,
        &device,
    );
    device.seed(2);
    let student = recipe.student_from_teacher(&teacher, &device);
    let mut stage1 = Distillation::new(recipe.clone(), student, 2, &device);
    let before = held_out_mse(&stage1.model(), &held_out, &device).unwrap();
    let stage1_dir = dir.join("stage1");
    std::fs::create_dir_all(&stage1_dir).unwrap();
    train(
        &mut stage1,
        &train_set,
        &RunPaths::in_dir(&stage1_dir),
        stop(3),
        "stage 1",
    )
    .unwrap();
    let student = stage1.model();
    let after = held_out_mse(&student, &held_out, &device).unwrap();
    let student_zh = zero_shot(&student, &tokenizer, &world, Language::Zh, &device);
    let chance = 1.0 / zero_shot_classes().len() as f64;
    println!(
        "held-out MSE {before:.4} → {after:.4}; zero-shot: teacher (en) {teacher_en:.3}, \
         student (zh) {student_zh:.3}, chance {chance:.3}"
    );
    assert!(after < 0.5 * before, "MSE {before} → {after}");
    assert!(teacher_en > 5.0 * chance, "teacher {teacher_en}");
    assert!(student_zh > 4.0 * chance, "student {student_zh}");
}
