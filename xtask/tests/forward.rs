//! `cargo xtask train`, `eval` and `generate` are the `memory-layers` commands, run in the xtask
//! process (their behaviour is tested in crates/memory-layers-cli/tests), next to xtask's own commands.

use std::process::Command;

fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

#[test]
fn product_commands_forward_to_the_cli() {
    for (command, flag) in [
        ("train", "--memory-parallel"),
        ("eval", "--qa-limit"),
        ("generate", "--top-p"),
        ("bench", "--suite"),
    ] {
        let out = xtask().args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "xtask {command} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(flag), "xtask {command} --help names {flag}");
    }
    // The flags reach the training run, which rejects a batch that does not split.
    let out = xtask()
        .args(["train", "--devices", "3", "--batch-size", "4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("divisible by --devices 3"));
}
