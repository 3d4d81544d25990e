//! Every downstream task on the synthetic world from one pretrained
//! checkpoint, as `train-albef tasks` runs them: each task's `tiny` preset,
//! its metrics beside chance and beside a text-only baseline (the same
//! fine-tuning with every image blank), so that a reader sees the image is
//! used. Values are fractions in [0, 1].

use crate::albef::downstream::TaskStart;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Serialize;
use vl_data::BadEntries;
use vl_data::world::{Language, files};
use vl_models::AlbefConfig;

use crate::TrainError;
use crate::albef::grounding::GroundingConfig;
use crate::albef::grounding::pipeline::{GroundingJob, fine_tune_grounding};
use crate::albef::pipeline::write_json;
use crate::albef::retrieval::RetrievalConfig;
use crate::albef::retrieval::pipeline::{RetrievalJob, fine_tune_retrieval};
use crate::albef::ve::VeConfig;
use crate::albef::ve::pipeline::{VeJob, fine_tune_ve};

/// One metric of one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRow {
    /// `retrieval`, `ve`, …
    pub task: &'static str,
    /// The metric's name (the reference's, where it has one).
    pub metric: &'static str,
    /// Its value, in [0, 1].
    pub value: f64,
    /// What guessing scores.
    pub chance: f64,
    /// What the same fine-tuning scores with every image blank, where it
    /// means something (a retrieval of blank images is chance by
    /// construction, and is not run).
    pub text_only: Option<f64>,
}

/// The table `train-albef tasks` prints and writes as `tasks.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TasksTable {
    /// Every row, task by task.
    pub rows: Vec<TaskRow>,
}

/// What to run the tasks on.
#[derive(Debug, Clone)]
pub struct TasksJob {
    /// A synthetic world directory.
    pub world: PathBuf,
    /// The pretraining `checkpoint.ckpt` every task starts from.
    pub pretrained: PathBuf,
    /// Where each task's run goes (a folder per task) and `tasks.json`.
    pub out: PathBuf,
    /// Seed of every draw.
    pub seed: u64,
}

/// Runs every downstream task of `job` and writes `tasks.json`.
pub fn run_tasks(job: &TasksJob, device: &Device) -> Result<TasksTable, TrainError> {
    let mut table = TasksTable::default();
    table.rows.extend(retrieval(job, device)?);
    table.rows.extend(ve(job, device)?);
    table.rows.extend(grounding(job, device)?);
    write_json(&job.out.join("tasks.json"), &table)?;
    Ok(table)
}

fn retrieval(job: &TasksJob, device: &Device) -> Result<Vec<TaskRow>, TrainError> {
    let manifest = |split: &str| job.world.join(files::retrieval(split, Language::En));
    let mut config = RetrievalConfig::tiny(AlbefConfig::tiny(0));
    config.train_file = vec![manifest("train")];
    config.val_file = Some(manifest("val"));
    config.test_file = Some(manifest("test"));
    let outcome = fine_tune_retrieval(
        &RetrievalJob {
            config,
            start: TaskStart::From(job.pretrained.clone()),
            out: job.out.join("retrieval"),
            seed: job.seed,
            bad: BadEntries::Fail,
            evaluate_only: false,
            max_steps: None,
        },
        device,
    )?;
    let missing = || TrainError::BadInput("retrieval produced no test scores".into());
    let best = outcome.best.and_then(|b| b.test).ok_or_else(missing)?;
    let (zero_shot, chance) = (
        outcome.zero_shot.ok_or_else(missing)?,
        outcome.chance.ok_or_else(missing)?,
    );
    let row = |metric, value: f64, chance: f64| TaskRow {
        task: "retrieval",
        metric,
        value: value / 100.0,
        chance: chance / 100.0,
        text_only: None,
    };
    Ok(vec![
        row("txt_r1", best.txt_r1, chance.txt_r1),
        row("img_r1", best.img_r1, chance.img_r1),
        row("r_mean", best.r_mean, chance.r_mean),
        row("zero_shot_txt_r1", zero_shot.txt_r1, chance.txt_r1),
        row("zero_shot_img_r1", zero_shot.img_r1, chance.img_r1),
    ])
}

fn ve(job: &TasksJob, device: &Device) -> Result<Vec<TaskRow>, TrainError> {
    let mut config = VeConfig::tiny(AlbefConfig::tiny(0));
    config.train_file = job.world.join("ve_train.json");
    config.val_file = Some(job.world.join("ve_val.json"));
    config.test_file = Some(job.world.join("ve_test.json"));
    let run = |blank_images: bool, out: &Path| {
        fine_tune_ve(
            &VeJob {
                config: config.clone(),
                start: TaskStart::From(job.pretrained.clone()),
                out: out.to_owned(),
                seed: job.seed,
                bad: BadEntries::Fail,
                blank_images,
            },
            device,
        )
    };
    let test_acc = |outcome: crate::albef::ve::pipeline::VeOutcome| {
        outcome
            .best
            .and_then(|b| b.test_acc)
            .ok_or_else(|| TrainError::BadInput("ve produced no test accuracy".into()))
    };
    let value = test_acc(run(false, &job.out.join("ve"))?)?;
    let text_only = test_acc(run(true, &job.out.join("ve-text-only"))?)?;
    Ok(vec![TaskRow {
        task: "ve",
        metric: "test_acc",
        value,
        chance: 1.0 / 3.0,
        text_only: Some(text_only),
    }])
}

fn grounding(job: &TasksJob, device: &Device) -> Result<Vec<TaskRow>, TrainError> {
    let mut config = GroundingConfig::tiny(AlbefConfig::tiny(0));
    config.train_file = vec![job.world.join("grounding_train.json")];
    config.test_file = vec![
        job.world.join("grounding_val.json"),
        job.world.join("grounding_test.json"),
    ];
    config.det_file = job.world.join("grounding_dets.json");
    let outcome = fine_tune_grounding(
        &GroundingJob {
            config,
            start: TaskStart::From(job.pretrained.clone()),
            out: job.out.join("grounding"),
            seed: job.seed,
            bad: BadEntries::Fail,
            evaluate_only: false,
        },
        device,
    )?;
    let test = outcome
        .best
        .and_then(|b| b.test)
        .ok_or_else(|| TrainError::BadInput("grounding produced no test scores".into()))?;
    // A blank image has nothing to point at: its Grad-CAM picks at chance.
    let row = |metric, value: f64| TaskRow {
        task: "grounding",
        metric,
        value,
        chance: test.chance,
        text_only: None,
    };
    let mut rows = vec![row("test_d", test.d)];
    if let Some(multi) = test.d_multi {
        rows.push(row("test_d_multi", multi));
    }
    Ok(rows)
}
