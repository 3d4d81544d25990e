//! `cargo xtask ci`: what CI runs, in the order that fails fastest.

use std::path::Path;
use std::process::{Command, ExitCode};

use crate::material::{minilm_dir, run, workspace_root};

/// Runs every check; stops at the first failure.
pub fn run_all() -> anyhow::Result<ExitCode> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo = || {
        let mut c = Command::new(&cargo);
        c.current_dir(&root);
        c
    };
    step("format");
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    step("lints");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("tests");
    run(cargo().args(["test", "--workspace"]))?;
    step("real weights: all-MiniLM-L6-v2");
    let minilm = minilm_dir(Path::new("python3"))?;
    // `--workspace`, not `-p vl-tests`: features unify over the packages a
    // command selects, so `-p` would rebuild burn with another feature set
    // (~5 minutes on two cores) instead of reusing the test build.
    run(cargo()
        .args(["test", "--workspace", "--test", "minilm", "--", "--ignored"])
        .env("MINILM_DIR", minilm))?;
    step("GPU backends compile (wgpu, cuda)");
    // cubecl-cuda builds PTX through an LLVM bundle that its build script
    // downloads, and CI reaches no network but the registries. `DOCS_RS`
    // makes that script (and llvm-sys's) skip the download, which a
    // type-check does not need: nothing is linked.
    run(cargo()
        .args(["check", "-p", "vl-backend", "--features", "wgpu,cuda"])
        .env("DOCS_RS", "1"))?;
    step("all checks passed");
    Ok(ExitCode::SUCCESS)
}

fn step(name: &str) {
    eprintln!("\n==> {name}");
}
