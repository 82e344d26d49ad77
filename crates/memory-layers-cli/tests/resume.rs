//! A run killed with SIGKILL after a checkpoint and resumed with `--resume` ends at the same
//! step with the same loss as an uninterrupted run, and writes every file of a run directory
//! (config.toml, metrics.jsonl, eval.json, loss.svg, checkpoint/) that `eval` and `generate`
//! then read. SIGTERM checkpoints before it stops, so its resume loses nothing.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    checkpoint_step, fails_with, fresh, kill_after_checkpoint, losses, memory_layers, resume,
    succeeds, train,
};
use memory_layers_train::{Record, RunDir};

/// The runs of this file: 40 steps from one seed.
const STEPS: u32 = 40;
const SEED: u64 = 3;

#[test]
fn sigkill_then_resume_matches_an_uninterrupted_run() {
    let whole = fresh("whole");
    assert!(train(&whole, STEPS, SEED, &[]).status().unwrap().success());

    let cut = fresh("cut");
    kill_after_checkpoint(train(&cut, STEPS, SEED, &[]), &cut, 20);
    let killed_at = checkpoint_step(&cut);
    assert!(
        killed_at < 40,
        "killed before the end (checkpoint at {killed_at})"
    );

    assert!(resume(&cut, &[]));
    assert_eq!(checkpoint_step(&cut), 40);
    let (a, b) = (losses(&whole), losses(&cut));
    assert_eq!(a.last().unwrap().0, 40);
    assert_eq!(a, b, "every logged loss is identical");

    let dir = RunDir::new(&cut);
    for file in [dir.config(), dir.metrics(), dir.eval(), dir.loss_chart()] {
        assert!(file.exists(), "{} written", file.display());
    }
    assert!(
        !dir.tokenizer().exists(),
        "a byte run has no tokenizer file"
    );
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.eval()).unwrap()).unwrap();
    for field in [
        "val_loss",
        "val_ppl",
        "qa_exact_match",
        "qa_f1",
        "qa_answer_nll",
        "qa_count",
    ] {
        assert!(eval[field].is_number(), "eval.json has {field}");
    }
    let layers = eval["memory_layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "three Memory+ layers");
    for field in ["used_pct", "kl_uniform", "top1_score"] {
        assert!(layers[0][field].is_number(), "memory layer has {field}");
    }

    // The trained run serves `eval` and `generate`.
    let out = succeeds(
        memory_layers()
            .args(["eval", "--qa-limit", "4", "--checkpoint"])
            .arg(&cut),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["val_loss"], eval["val_loss"],
        "eval reproduces the run's validation loss"
    );
    assert_eq!(report["qa_count"], 4);
    let out = succeeds(
        memory_layers()
            .args(["generate", "--prompt", "ROMEO.", "--max-tokens", "8"])
            .arg("--checkpoint")
            .arg(dir.checkpoint().path()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("ROMEO.") && text.len() > "ROMEO.\n".len(),
        "{text}"
    );

    // Sampling from the single most likely token is greedy decoding; several samples are
    // headed by their seeds; a prompt longer than the context is refused unless cut.
    let generate = |extra: &[&str]| {
        let out = memory_layers()
            .args(["generate", "--max-tokens", "8", "--checkpoint"])
            .arg(&cut)
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    };
    let (ok, top1, _) = generate(&["--prompt", "ROMEO.", "--temperature", "1", "--top-k", "1"]);
    assert!(ok);
    assert_eq!(top1, text, "top-k 1 is greedy");
    let (ok, two, _) = generate(&[
        "--prompt",
        "ROMEO.",
        "--temperature",
        "1",
        "--num-samples",
        "2",
        "--seed",
        "7",
    ]);
    assert!(ok);
    assert!(
        two.contains("--- sample 1 (seed 7)") && two.contains("--- sample 2 (seed 8)"),
        "{two}"
    );
    let long = "To be, or not to be. ".repeat(100);
    let (ok, _, stderr) = generate(&["--prompt", &long]);
    assert!(!ok && stderr.contains("--truncate-prompt"), "{stderr}");
    let (ok, out, _) = generate(&["--prompt", &long, "--truncate-prompt"]);
    assert!(
        ok && out.len() < long.len(),
        "only the prompt's end is kept"
    );
}

#[test]
fn sigterm_checkpoints_and_resume_matches_an_uninterrupted_run() {
    let whole = fresh("term-whole");
    assert!(train(&whole, STEPS, SEED, &[]).status().unwrap().success());

    let cut = fresh("term-cut");
    let child = train(&cut, STEPS, SEED, &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while checkpoint_step(&cut) < 10 {
        assert!(start.elapsed() < Duration::from_secs(300), "no checkpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let saved = checkpoint_step(&cut);
    assert!(
        !out.status.success(),
        "an interrupted run exits with an error"
    );
    assert!(
        stderr.contains(&format!("interrupted at step {saved}")) && stderr.contains("--resume"),
        "{stderr}"
    );
    assert!(saved < 40, "stopped before the end (step {saved})");

    assert!(resume(&cut, &[]));
    assert_eq!(losses(&whole), losses(&cut), "nothing lost to SIGTERM");

    // --steps extends a finished run.
    assert!(resume(&cut, &["--steps", "50"]));
    assert_eq!(checkpoint_step(&cut), 50);
    assert_eq!(losses(&cut).last().unwrap().0, 50);

    // What a resumed run may not change, an existing run, a typo'd key and a damaged
    // checkpoint are errors that name the problem.
    let dir = cut.to_str().unwrap();
    let stderr = fails_with(
        &["train", "--resume", "--lr", "1e-2", "--out", dir],
        "cannot resume with a different configuration",
    );
    assert!(stderr.contains("optim.lr"), "{stderr}");
    fails_with(&["train", "--size", "tiny", "--out", dir], "--overwrite");
    fails_with(
        &["train", "--resume", "--set", "optim.nope=1", "--out", dir],
        "optim.nope",
    );
    let model = RunDir::new(&cut).checkpoint().record_file(Record::Model);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &["train", "--resume", "--steps", "60", "--out", dir],
        "model.bin",
    );
}

#[test]
fn bad_command_lines_are_clear_errors() {
    fails_with(
        &["train", "--devices", "3", "--batch-size", "4"],
        "divisible by --devices 3",
    );
    fails_with(
        &["train", "--devices", "2", "--memory-parallel", "3"],
        "must divide",
    );
    let stderr = fails_with(&["train", "--model", "transformer"], "memory-plus");
    assert!(
        stderr.contains("transformer"),
        "the bad value named: {stderr}"
    );
    fails_with(&["train", "--value-optimizer", "adam"], "rowwise-adagrad");
    // A negative number is a value, not a flag.
    fails_with(&["train", "--lr", "-1"], "optim.lr");
    // `--out` in the temporary directory: the default, runs/, is relative to the working
    // directory (the crate, under cargo test).
    let no_data = fresh("no-data");
    fails_with(
        &[
            "train",
            "--data",
            "/nonexistent.txt",
            "--size",
            "tiny",
            "--out",
            no_data.to_str().unwrap(),
        ],
        "/nonexistent.txt",
    );
    let missing = fresh("missing");
    fails_with(
        &["train", "--resume", "--out", missing.to_str().unwrap()],
        RunDir::new(&missing).config().to_str().unwrap(),
    );
}

#[test]
fn bf16_training_runs_and_learns() {
    let out = fresh("bf16");
    let status = memory_layers()
        .args([
            "train",
            "--size",
            "tiny",
            "--steps",
            "30",
            "--precision",
            "bf16",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let config = std::fs::read_to_string(RunDir::new(&out).config()).unwrap();
    assert!(config.contains("precision = \"bf16\""));
    let losses: Vec<f64> = losses(&out).iter().map(|&(_, l)| l).collect();
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses.last().unwrap() < &losses[0], "{losses:?}");
}
