//! `cargo xtask …`: project automation that is not part of the product.
//!
//! - `parity DIR… [--tol 1e-4] [--backend cpu]`: compare our models with a
//!   PyTorch fixture (see `docs/parity.md`).
//! - `fixtures --python VENV/bin/python`: regenerate the committed fixtures.
//! - `gen-world --out DIR --seed N --image-size S --images K`: write the
//!   synthetic shapes world (see `docs/datasets.md`).
//! - `bench [--presets tiny,small] [--vs-pytorch --python PY] [--json F]`:
//!   our steps beside PyTorch's (see `docs/benchmarks.md`).
//! - `retrieval-misses --run DIR [--world W] [--itc]`: a retrieval
//!   evaluation's misses on a synthetic world, by what the retrieved image
//!   got wrong.
//! - `ci`: everything CI runs (`.ci/run` calls it).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod ci;
mod fixtures;
mod material;
mod misses;
mod presets;

#[derive(Parser)]
#[command(about = "Project automation for the ALBEF/AltCLIP workspace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compare our models with the PyTorch reference outputs of fixture directories.
    Parity {
        /// Fixture directories (config.json, model.safetensors, io.safetensors).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Largest tolerated absolute error.
        #[arg(long, default_value_t = 1e-4)]
        tol: f32,
        /// Backend to run on (cpu, wgpu, cuda; among those compiled in).
        #[arg(long, default_value = "cpu")]
        backend: vl_backend::Backend,
    },
    /// Regenerate tests/fixtures with PyTorch (needs torch, transformers,
    /// safetensors and sentence-transformers in the given Python).
    Fixtures {
        /// Python interpreter of the reference venv.
        #[arg(long, env = "VL_PYTHON", default_value = "python3")]
        python: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "tests/fixtures")]
        out: PathBuf,
    },
    /// Time our training and inference steps, optionally beside PyTorch's.
    Bench {
        /// Presets (tiny, small, base).
        #[arg(long, value_delimiter = ',', default_value = "tiny,small")]
        presets: Vec<presets::Preset>,
        /// Steps (albef_pretrain, altclip_stage1, image_embed, text_embed,
        /// itm_rerank; default all).
        #[arg(long, value_delimiter = ',')]
        steps: Option<Vec<presets::Step>>,
        /// Untimed calls first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed calls (the median is reported).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Our backend (cpu, wgpu, cuda; among those compiled in).
        #[arg(long, default_value = "cpu")]
        backend: vl_backend::Backend,
        /// Also write the rows as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Run the PyTorch side too (bench/bench_torch.py).
        #[arg(long, requires = "python")]
        vs_pytorch: bool,
        /// Python with torch and transformers.
        #[arg(long, env = "VL_PYTHON")]
        python: Option<PathBuf>,
        /// PyTorch threads (ours use every core, as burn's CPU backend does).
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Measure each row this many times, alternating the two sides,
        /// and keep each side's fastest.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Training batch instead of each preset's (both sides).
        #[arg(long)]
        batch: Option<usize>,
        /// Inference batch instead of each preset's (both sides).
        #[arg(long)]
        eval_batch: Option<usize>,
        /// PyTorch's device (cpu, cuda).
        #[arg(long, default_value = "cpu")]
        torch_device: String,
    },
    /// One measurement (a child process of `bench`).
    #[command(hide = true)]
    BenchOne {
        #[arg(long)]
        step: presets::Step,
        #[arg(long)]
        preset: presets::Preset,
        #[arg(long)]
        batch: Option<usize>,
        #[arg(long)]
        eval_batch: Option<usize>,
        #[arg(long, default_value = "cpu")]
        backend: vl_backend::Backend,
        #[arg(long)]
        warmup: usize,
        #[arg(long)]
        iters: usize,
    },
    /// Run what CI runs: format, lints, GPU-feature build check, tests, and
    /// the real-weights MiniLM test.
    Ci,
    /// Generate the synthetic shapes world.
    GenWorld {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Seed of everything.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Image side in pixels.
        #[arg(long, default_value_t = 32)]
        image_size: u32,
        /// Number of images (all splits).
        #[arg(long, default_value_t = 6000)]
        images: usize,
        /// Images held out for validation and for testing (each).
        #[arg(long, default_value_t = 250)]
        held_out: usize,
        /// Fraction of training captions to corrupt.
        #[arg(long, default_value_t = 0.0)]
        caption_noise: f64,
        /// Fraction of training scenes drawn as minimal pairs (the previous
        /// scene with one shape changed).
        #[arg(long, default_value_t = 0.0)]
        minimal_pairs: f64,
    },
    /// Sort a retrieval evaluation's top-1 misses on a synthetic world by
    /// how the retrieved image differs from the right one.
    RetrievalMisses {
        /// Output directory of `train-albef` (holds `rankings.json`).
        #[arg(long)]
        run: PathBuf,
        /// The world (default: the one the ranked images lie in).
        #[arg(long)]
        world: Option<PathBuf>,
        /// Read the ranking by ITC similarity instead of the ITM re-ranking.
        #[arg(long)]
        itc: bool,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", vl_training::error_report(err.chain()));
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Parity { dirs, tol, backend } => {
            let device = backend.device()?;
            let mut all_passed = true;
            for dir in dirs {
                let report = vl_parity::check_dir(&dir, tol, &device)?;
                println!("{report}");
                all_passed &= report.passed();
            }
            Ok(if all_passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Fixtures { python, out } => {
            fixtures::generate(&python, &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ci => ci::run_all(),
        Command::Bench {
            presets,
            steps,
            warmup,
            iters,
            backend,
            json,
            vs_pytorch,
            python,
            threads,
            rounds,
            batch,
            eval_batch,
            torch_device,
        } => {
            bench::bench(bench::BenchArgs {
                presets,
                steps: steps.unwrap_or_else(|| presets::Step::ALL.to_vec()),
                warmup,
                iters,
                backend,
                json,
                python: python.filter(|_| vs_pytorch),
                threads,
                rounds,
                batch,
                eval_batch,
                torch_device,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchOne {
            step,
            preset,
            batch,
            eval_batch,
            backend,
            warmup,
            iters,
        } => {
            bench::bench_one(step, preset, (batch, eval_batch), backend, warmup, iters)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::GenWorld {
            out,
            seed,
            image_size,
            images,
            held_out,
            caption_noise,
            minimal_pairs,
        } => {
            let config = vl_data::world::WorldConfig {
                seed,
                image_size,
                images,
                val_images: held_out,
                test_images: held_out,
                caption_noise,
                minimal_pairs,
                ..Default::default()
            };
            let start = std::time::Instant::now();
            let summary = vl_data::world::write_world(&config, &out)?;
            println!(
                "wrote {} (train/val/test images {:?}, {} annotation files) in {:.1}s",
                out.display(),
                summary.images,
                summary.files.len(),
                start.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::RetrievalMisses { run, world, itc } => {
            misses::run(&run, world, itc)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
