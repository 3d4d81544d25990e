//! `altclip-distill eval` and `export`, and the printed table.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use vl_training::altclip::data::language_file;
use vl_training::altclip::data::{EvalSet, Task};
use vl_training::altclip::evaluation::{Results, evaluate};
use vl_training::altclip::pipeline::{load_student_run, load_teacher_run};
use vl_training::eval::dual_encoder::embed_texts;
use vl_training::runner::checkpoint::JobKind;

use crate::{Common, DataArgs};

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    data: DataArgs,
    /// A teacher checkpoint.ckpt (tokenizer.json beside it).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// A student checkpoint.ckpt of stage 1 or 2 (tokenizer.json beside it).
    #[arg(long)]
    student: Option<PathBuf>,
    /// A retrieval manifest (one or more captions per image) as LANG=FILE
    /// (repeatable; default: the world's test sets).
    #[arg(long, value_parser = language_file)]
    retrieval: Vec<(String, PathBuf)>,
    /// A zero-shot class file: `{"images": [{"image", "label"}], "classes":
    /// {lang: [names]}, "templates": {lang: ["a photo of a {}."]}}`.
    #[arg(long)]
    classes: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    common: Common,
    /// A student checkpoint.ckpt of stage 1 or 2 (tokenizer.json beside it).
    #[arg(long)]
    student: PathBuf,
}

pub(crate) fn eval_command(args: EvalArgs) -> anyhow::Result<()> {
    let device = args.common.backend.device()?;
    let mut files = args.data.manifests();
    files.retrieval = args.retrieval.clone();
    files.classes = args.classes.clone();
    let task = args.data.open(args.common.seed, files)?;
    let out = args.common.out_dir("runs/altclip-eval")?;
    if args.teacher.is_none() && args.student.is_none() {
        bail!("give --teacher and/or --student");
    }
    let mut rows = Vec::new();
    let mut recipe = args.common.recipe()?;
    if let Some(path) = &args.teacher {
        let (teacher, tokenizer, teacher_recipe) = load_teacher_run(path, &device)
            .with_context(|| format!("loading the teacher {}", path.display()))?;
        recipe = teacher_recipe;
        let eval = EvalSet::new(&task, &recipe)?;
        rows.extend(evaluate(
            &teacher,
            &tokenizer,
            &eval,
            &recipe,
            ("teacher", "teacher"),
            &device,
        )?);
    }
    if let Some(path) = &args.student {
        let (student, tokenizer, student_recipe, kind) = load_student_run(path, &device)
            .with_context(|| format!("loading the student {}", path.display()))?;
        let stage = match kind {
            JobKind::AltclipStage1 => "stage1",
            _ => "stage2",
        };
        let eval = EvalSet::new(&task, &student_recipe)?;
        rows.extend(evaluate(
            &student,
            &tokenizer,
            &eval,
            &student_recipe,
            ("student", stage),
            &device,
        )?);
        recipe = student_recipe;
    }
    let results = Results {
        rows,
        chance: EvalSet::new(&task, &recipe)?.chance(),
        held_out_mse: None,
    };
    results.write(&out.join("results.json"))?;
    print_results(&results, &task);
    crate::report_skips(&task);
    Ok(())
}

pub(crate) fn export_command(args: ExportArgs) -> anyhow::Result<()> {
    let device = args.common.backend.device()?;
    let out = args.common.out_dir("runs/altclip-export")?;
    let (student, tokenizer, recipe, _) = load_student_run(&args.student, &device)
        .with_context(|| format!("loading the student {}", args.student.display()))?;
    vl_models::import::clip::save_altclip_dir(&student, &recipe.student_config(), &out)?;
    tokenizer.save(&out.join("tokenizer.json"))?;
    // The export must load back into an identical model.
    let (loaded, _) = vl_models::import::clip::load_altclip_dir(&out, &device)?;
    let texts = ["a red circle".to_owned()];
    let a = embed_texts(&student, &tokenizer, &texts, recipe.max_tokens, &device)?;
    let b = embed_texts(&loaded, &tokenizer, &texts, recipe.max_tokens, &device)?;
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    if diff > 1e-5 {
        bail!("the exported model differs from the checkpoint by {diff}");
    }
    println!(
        "exported an HF AltCLIP directory to {} (config.json, model.safetensors, tokenizer.json)",
        out.display()
    );
    Ok(())
}

pub(crate) fn print_results(results: &Results, task: &Task) {
    const COLUMNS: [(&str, &str); 4] = [
        ("zero_shot_acc", "zero-shot"),
        ("zero_shot_top5", "top-5"),
        ("t2i_r1", "T→I R@1"),
        ("i2t_r1", "I→T R@1"),
    ];
    println!("\nAltCLIP on {} (held-out images; fractions)", task.name());
    print!("{:<8}{:<18}", "lang", "model");
    for (_, title) in COLUMNS {
        print!("{title:>11}");
    }
    println!();
    let mut languages: Vec<&str> = Vec::new();
    for row in &results.rows {
        if !languages.contains(&row.language.as_str()) {
            languages.push(&row.language);
        }
    }
    for language in languages {
        for (model, stage) in [
            ("teacher", "teacher"),
            ("student", "stage1"),
            ("student", "stage2"),
        ] {
            let values: Vec<Option<f64>> = COLUMNS
                .iter()
                .map(|(task, _)| {
                    results
                        .rows
                        .iter()
                        .find(|r| {
                            r.language == language
                                && r.model == model
                                && r.stage == stage
                                && r.task == *task
                        })
                        .map(|r| r.value)
                })
                .collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            let name = match stage {
                "teacher" => "teacher".to_owned(),
                s => format!("student {s}"),
            };
            print!("{language:<8}{name:<18}");
            for value in values {
                print!(
                    "{:>11}",
                    value.map_or("-".to_owned(), |v| format!("{v:.3}"))
                );
            }
            println!();
        }
    }
    println!("chance: {}", results.chance);
    if let Some(mse) = results.held_out_mse {
        println!("held-out stage-1 MSE: {:.4} → {:.4}", mse.before, mse.after);
    }
    println!();
}
