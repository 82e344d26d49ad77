//! Helpers shared by the command-line tests.
// Each test file uses some of these helpers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use memory_layers_train::RunDir;
use tempfile::TempDir;

/// The `memory-layers` binary built for these tests.
pub fn memory_layers() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memory-layers"))
}

/// Every line of a run's metrics.jsonl.
pub fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(RunDir::new(out).metrics())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The step of a run's checkpoint (0 when there is none yet).
pub fn checkpoint_step(out: &Path) -> u64 {
    std::fs::read_to_string(RunDir::new(out).checkpoint().state())
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["step"].as_u64())
        .unwrap_or(0)
}

/// `train` of a tiny Memory+ model for `steps` steps from `seed`, checkpointing every 10,
/// with `extra` options, writing the run `out`; quiet.
pub fn train(out: &Path, steps: u32, seed: u64, extra: &[&str]) -> Command {
    let mut cmd = memory_layers();
    cmd.args(["train", "--model", "memory-plus", "--size", "tiny"])
        .arg("--steps")
        .arg(steps.to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .args(["--checkpoint-every", "10"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The command line of `train --size SIZE --model MODEL` without the generated facts (so
/// without a QA set), with `flags`, into `out`: one spelling for the runs that must train and
/// those that must fail.
pub fn train_args<'a>(
    size: &'a str,
    model: &'a str,
    flags: &[&'a str],
    out: &'a Path,
) -> Vec<&'a str> {
    let mut args = vec!["train", "--size", size, "--model", model, "--no-facts"];
    args.extend(flags);
    args.extend(["--out", out.to_str().unwrap()]);
    args
}

/// The (step, loss) of every line of a run's metrics.jsonl.
pub fn losses(out: &Path) -> Vec<(u64, f64)> {
    metrics(out)
        .iter()
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// A path named `name` that does not exist yet, for a run directory or an input, inside a
/// scratch directory removed (with whatever was written there) when this is dropped.
pub struct Fresh {
    _scratch: TempDir,
    path: PathBuf,
}

impl Deref for Fresh {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Fresh {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<OsStr> for Fresh {
    fn as_ref(&self) -> &OsStr {
        self.path.as_os_str()
    }
}

/// A fresh path named `name` (see [`Fresh`]).
pub fn fresh(name: &str) -> Fresh {
    let scratch = tempfile::Builder::new()
        .prefix("memory-layers-test-")
        .tempdir()
        .unwrap();
    let path = scratch.path().join(name);
    Fresh {
        _scratch: scratch,
        path,
    }
}

/// Starts `train`, which writes the run `out`, and kills it (SIGKILL) once its checkpoint has
/// reached `step`.
pub fn kill_after_checkpoint(mut train: Command, out: &Path, step: u64) {
    let mut child = train.spawn().unwrap();
    let start = Instant::now();
    while checkpoint_step(out) < step {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint at step {step}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `train --resume` of the run `out` with `extra` flags; whether it succeeded (quiet).
pub fn resume(out: &Path, extra: &[&str]) -> bool {
    memory_layers()
        .args(["train", "--resume"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Runs `memory-layers ARGS`, asserts that it fails with a stderr containing `needle`, and
/// returns that stderr. It runs in a scratch directory, so that a command which wrongly
/// succeeds writes its default `runs/` there, not into the crate.
pub fn fails_with(args: &[&str], needle: &str) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let out = memory_layers()
        .args(args)
        .current_dir(scratch.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: stderr without {needle:?}: {stderr}"
    );
    stderr
}

/// Runs `cmd`, asserts that it succeeds (showing its stderr otherwise), and returns its output.
pub fn succeeds(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
