//! `cargo xtask fixtures`: regenerate the parity fixtures with PyTorch.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::material::{minilm_dir, run, workspace_root};

/// Runs `tests/fixtures/make_fixtures.py` with `python`.
pub fn generate(python: &Path, out: &Path) -> anyhow::Result<()> {
    run(Command::new(python).args(["-c", "import torch, transformers, safetensors, sentence_transformers"]))
        .context(
            "this Python lacks the reference libraries; make a venv as docs/parity.md says \
             (python3 -m venv V && V/bin/pip install torch transformers safetensors sentence-transformers) \
             and pass --python V/bin/python",
        )?;
    let minilm = minilm_dir(python)?;
    let script = workspace_root().join("tests/fixtures/make_fixtures.py");
    run(Command::new(python)
        .arg(script)
        .arg("--out")
        .arg(out)
        .arg("--minilm")
        .arg(minilm))
}
