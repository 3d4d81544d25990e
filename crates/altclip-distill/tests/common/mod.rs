//! What the CLI tests share.

use std::process::Command;

/// Runs `altclip-distill args`, failing the test with its output if it
/// fails; its standard output.
pub fn run(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_altclip-distill"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "altclip-distill {args:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}
