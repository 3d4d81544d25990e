//! `cargo xtask …`: project automation that is not part of the product.
//!
//! - `parity DIR… [--tol 1e-4] [--backend cpu]`: compare our models with a
//!   PyTorch fixture (see `docs/parity.md`).
//! - `fixtures --python VENV/bin/python`: regenerate the committed fixtures.
//! - `gen-world --out DIR --seed N --image-size S --images K`: write the
//!   synthetic shapes world (see `docs/datasets.md`).
//! - `ci`: everything CI runs (`.ci/run` calls it).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ci;
mod fixtures;
mod material;

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
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
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
        Command::GenWorld {
            out,
            seed,
            image_size,
            images,
            held_out,
            caption_noise,
        } => {
            let config = vl_data::world::WorldConfig {
                seed,
                image_size,
                images,
                val_images: held_out,
                test_images: held_out,
                caption_noise,
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
    }
}
