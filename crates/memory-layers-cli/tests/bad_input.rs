//! Bad inputs to `memory-layers`, each run against the built binary: a clear error that names
//! the problem, or the documented behaviour. tools/bad-input/README.md lists every case (its
//! numbers are the ones below) with its input and what happens; the static inputs live there.
//!
//! 1. a folder of .jsonl shards as --data trains;
//! 2. .jsonl.gz and .jsonl.zst with --text-field train; a record without the field is named;
//! 3. a --tokenizer file that is missing or not a tokenizer is named;
//! 4. `--resume --steps N` extends a run; `--resume` with a changed key is refused naming it;
//! 5. an existing run directory needs --resume or --overwrite; --overwrite replaces the run;
//! 6. SIGTERM: tests/resume.rs, `sigterm_checkpoints_and_resume_matches_an_uninterrupted_run`;
//! 7. a prompt longer than the context is refused unless --truncate-prompt;
//! 8. a truncated checkpoint/model.bin is named by resume, eval and generate;
//! 9. warmup keeps its share of the steps when --steps differs from the preset;
//! 10. an unknown key in a --config file is named;
//! 11. `--lr -1` is a value, refused naming optim.lr;
//! 12. a run without a QA set says so instead of scoring 0 of 0;
//! 13. a damaged or missing shard of a prepared folder, and a folder never prepared, are named;
//! 14. text that is not UTF-8 and a .gz that is not gzip are named with file and line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{fails_with, fresh, losses, memory_layers, succeeds};
use memory_layers_data::MANIFEST;
use memory_layers_train::{Record, RunDir};

/// The static inputs: tools/bad-input/ (absolute, so that errors name them as given).
fn input(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/bad-input");
    let path = std::fs::canonicalize(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    path.to_str().unwrap().to_string()
}

/// `path` as a command-line argument.
fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The command line of every training run here: a tiny dense model without the generated
/// facts (and so without a QA set), checkpointing every 2 steps, for `steps` steps into `out`
/// with `extra` flags (no default data); for [`fails_with`].
fn train_args<'a>(out: &'a Path, steps: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let flags = [&["--checkpoint-every", "2", "--steps", steps][..], extra].concat();
    common::train_args("tiny", "dense", &flags, out)
}

/// [`train_args`] (default data: tools/bad-input/corpus.txt); panics with its stderr unless it
/// succeeds.
fn train(out: &Path, steps: u32, extra: &[&str]) -> Output {
    let steps = steps.to_string();
    let mut cmd = memory_layers();
    cmd.args(train_args(out, &steps, extra));
    if !extra.contains(&"--data") && !extra.contains(&"--data-dir") {
        cmd.arg("--data").arg(input("corpus.txt"));
    }
    succeeds(&mut cmd)
}

/// The text of a file.
fn read(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The value of `key = …` in a run's config.toml (the first such line).
fn config_value(out: &Path, key: &str) -> String {
    let config = read(&RunDir::new(out).config());
    config
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in {config}"))
        .to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Cases 1, 2, 3 and 14: what `--data`, `--text-field` and `--tokenizer` accept, and the
/// files they refuse, named.
#[test]
fn data_files_train_or_are_named() {
    // 1. A folder of plain .jsonl shards is every shard in it.
    let run = fresh("bad-shards");
    let output = train(&run, 2, &["--data", &input("shards")]);
    assert!(
        stderr(&output).contains("2 input files"),
        "{}",
        stderr(&output)
    );
    assert_eq!(losses(&run).last().unwrap().0, 2);

    // 2. Compressed .jsonl with the text under another field; the field is kept in the run.
    for file in ["body.jsonl.gz", "body.jsonl.zst"] {
        let run = fresh(&format!("bad-{file}"));
        train(&run, 2, &["--data", &input(file), "--text-field", "body"]);
        assert_eq!(losses(&run).last().unwrap().0, 2, "{file}");
        assert_eq!(config_value(&run, "text_field"), "\"body\"", "{file}");
    }
    // A record without the field: the file, the line and the field.
    let out = fresh("bad-nofield");
    let nofield = input("nofield.jsonl");
    fails_with(
        &train_args(&out, "2", &["--data", &nofield]),
        &format!("{nofield}:3: no \"text\" field"),
    );
    // The default field is "text", which body.jsonl.gz's records lack.
    let body = input("body.jsonl.gz");
    fails_with(
        &train_args(&out, "2", &["--data", &body]),
        &format!("{body}:1: no \"text\" field"),
    );

    // 3. A tokenizer file that is not there, or is JSON but no tokenizer, is named.
    let corpus = input("corpus.txt");
    let stderr = fails_with(
        &train_args(
            &out,
            "2",
            &["--data", &corpus, "--tokenizer", "/nonexistent/tok.json"],
        ),
        "/nonexistent/tok.json",
    );
    assert!(stderr.contains("no such file"), "{stderr}");
    let not_tokenizer = input("not-a-tokenizer.json");
    let stderr = fails_with(
        &train_args(
            &out,
            "2",
            &["--data", &corpus, "--tokenizer", &not_tokenizer],
        ),
        &not_tokenizer,
    );
    assert!(
        stderr.contains("not a Hugging Face tokenizer file"),
        "{stderr}"
    );
    fails_with(
        &[
            "prepare",
            "--data",
            &corpus,
            "--tokenizer",
            &not_tokenizer,
            "--out",
            arg(&fresh("bad-prepare-tokenizer")),
        ],
        "not a Hugging Face tokenizer file",
    );
    // Neither byte, bpe nor a .json file: refused by the flag's parser.
    fails_with(
        &train_args(&out, "2", &["--tokenizer", &corpus]),
        "expected byte, bpe or a tokenizer .json file",
    );

    // 14. Latin-1 text (line 3) and plain text named .gz: file and line.
    let latin1 = input("latin1.txt");
    let stderr = fails_with(
        &train_args(&out, "2", &["--data", &latin1]),
        &format!("{latin1}:3: not UTF-8"),
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let broken = input("broken.txt.gz");
    fails_with(
        &train_args(&out, "2", &["--data", &broken]),
        &format!("{broken}:1: not valid gzip"),
    );
    fails_with(
        &[
            "prepare",
            "--tokenizer",
            "byte",
            "--data",
            &latin1,
            "--out",
            arg(&fresh("bad-prepare-latin1")),
        ],
        &format!("{latin1}:3: not UTF-8"),
    );
    // None of the failed runs left a run behind that the next would have to --overwrite.
    assert!(!RunDir::new(&out).config().exists());
    train(&out, 2, &[]);
}

/// Cases 4, 5, 8 and 12: a run directory resumed, extended, refused, replaced and damaged;
/// the summary of a run without a QA set.
#[test]
fn run_directories_resume_or_refuse() {
    let run = fresh("bad-run");
    let output = train(&run, 2, &[]);

    // 12. No QA set (--no-facts, no --qa): the summary says so, and scores nothing.
    let summary = stdout(&output);
    assert!(summary.contains("no QA set"), "{summary}");
    assert!(!summary.contains("QA exact match"), "{summary}");
    assert!(summary.contains("no recall probes"), "{summary}");
    let eval: serde_json::Value = serde_json::from_str(&read(&RunDir::new(&run).eval())).unwrap();
    assert_eq!(eval["qa_total"], 0);
    assert!(eval["fact_recall"].is_null());
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(
        !progress.contains("QA questions"),
        "no QA phase: {progress}"
    );

    // 4. --resume --steps N extends the run from its checkpoint.
    succeeds(
        memory_layers()
            .args(["train", "--resume", "--steps", "4", "--out"])
            .arg(&run),
    );
    let steps: Vec<u64> = losses(&run).iter().map(|&(s, _)| s).collect();
    assert_eq!(steps, [2, 4], "2 steps, then 2 more");
    assert_eq!(config_value(&run, "steps"), "4");
    // What would change the model, data or optimizer is refused, naming the key.
    let dir = arg(&run);
    let stderr = fails_with(
        &["train", "--resume", "--lr", "1", "--out", dir],
        "cannot resume with a different configuration",
    );
    assert!(stderr.contains("optim.lr"), "{stderr}");
    let shards = input("shards");
    fails_with(
        &["train", "--resume", "--data", &shards, "--out", dir],
        "data.paths",
    );
    fails_with(
        &["train", "--resume", "--steps", "3", "--out", dir],
        "must not be below the checkpoint's step",
    );

    // 5. Training into it again: --resume or --overwrite, named.
    let stderr = fails_with(&train_args(&run, "2", &[]), "already holds a run");
    assert!(
        stderr.contains("--resume") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(losses(&run).len(), 2, "the refused run wrote nothing");
    // --overwrite replaces it: a new run on other data, from step 0.
    train(&run, 2, &["--overwrite", "--data", &shards]);
    assert_eq!(losses(&run).len(), 1, "metrics of the new run only");
    assert_eq!(config_value(&run, "steps"), "2");
    assert!(read(&RunDir::new(&run).config()).contains("shards"));

    // 8. A truncated model.bin is named by every command that reads it.
    let model = RunDir::new(&run).checkpoint().record_file(Record::Model);
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let named = "checkpoint/model.bin: the file ends early: truncated or corrupt";
    fails_with(&["train", "--resume", "--steps", "6", "--out", dir], named);
    fails_with(&["eval", "--checkpoint", dir], named);
    fails_with(
        &["generate", "--prompt", "To be", "--checkpoint", dir],
        named,
    );
}

/// Case 7: a prompt longer than the model's context is refused unless --truncate-prompt.
#[test]
fn a_prompt_longer_than_the_context_needs_truncate_prompt() {
    let run = fresh("bad-generate");
    train(&run, 2, &[]);
    let context: usize = config_value(&run, "max_seq_len").parse().unwrap();
    let generate = |prompt: &str, extra: &[&str]| {
        memory_layers()
            .args(["generate", "--max-tokens", "4", "--prompt", prompt])
            .args(extra)
            .arg("--checkpoint")
            .arg(&run)
            .output()
            .unwrap()
    };
    // Bytes: one token a character. A prompt must leave room for one new token.
    let long = "To be, or not to be. ".repeat(context / 10);
    for prompt in [long.clone(), "a".repeat(context)] {
        let output = generate(&prompt, &[]);
        let stderr = stderr(&output);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("the prompt is {} tokens", prompt.len()))
                && stderr.contains("--truncate-prompt"),
            "{stderr}"
        );
    }
    // A prompt of context - 1 tokens fits.
    let fits = "a".repeat(context - 1);
    let output = generate(&fits, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).starts_with(&fits));
    // Cut, the prompt is its last context - 1 tokens.
    let output = generate(&long, &["--truncate-prompt"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("prompt cut to its last {} tokens", context - 1)),
        "{}",
        stderr(&output)
    );
    let text = stdout(&output);
    assert!(
        text.starts_with(&long[long.len() + 1 - context..]),
        "{text}"
    );
}

/// Cases 9, 10 and 11: the configuration — warmup scaled to --steps, an unknown key in a
/// --config file, a negative --lr.
#[test]
fn configuration_mistakes_are_named() {
    // 9. The tiny preset warms up for 10 of 200 steps (5%); 40 steps warm up for 2.
    let run = fresh("bad-warmup");
    train(&run, 40, &[]);
    assert_eq!(config_value(&run, "steps"), "40");
    assert_eq!(config_value(&run, "warmup_steps"), "2", "5% of 40 steps");
    // --set optim.steps scales warmup the same way, unless warmup is set too.
    let set = fresh("bad-warmup-set");
    train(&set, 2, &["--set", "optim.steps=40"]);
    assert_eq!(config_value(&set, "warmup_steps"), "2", "5% of 40 steps");
    let both = fresh("bad-warmup-both");
    let warmup = ["--set", "optim.warmup_steps=7", "--set", "optim.steps=40"];
    train(&both, 2, &warmup);
    assert_eq!(config_value(&both, "warmup_steps"), "7", "as set");
    // --model over a config.toml needs --size: the dims come from a preset.
    fails_with(
        &[
            "train",
            "--config",
            arg(&RunDir::new(&run).config()),
            "--model",
            "memory",
            "--out",
            arg(&fresh("bad-model-no-size")),
        ],
        "needs --size too",
    );

    // 10. The run's own config.toml with one misspelt key under [optim].
    let config = read(&RunDir::new(&run).config());
    assert!(config.contains("\n[optim]\n"), "{config}");
    let typo = config.replacen("\n[optim]\n", "\n[optim]\nwarmup_stpes = 5\n", 1);
    let file = fresh("bad-unknown-key.toml");
    std::fs::write(&file, typo).unwrap();
    let out = fresh("bad-unknown-key-run");
    let stderr = fails_with(
        &["train", "--config", arg(&file), "--out", arg(&out)],
        "unknown key optim.warmup_stpes",
    );
    assert!(stderr.contains(arg(&file)), "the file named: {stderr}");
    // The same file without the typo trains (the key is the only problem).
    std::fs::write(&file, &config).unwrap();
    succeeds(
        memory_layers()
            .args(["train", "--steps", "2", "--config"])
            .arg(&file)
            .arg("--out")
            .arg(&out),
    );

    // 11. A negative number after --lr is its value, not a flag; both spellings.
    let out = fresh("bad-lr");
    for lr in [&["--lr", "-1"][..], &["--lr=-1"]] {
        let stderr = fails_with(&train_args(&out, "2", lr), "optim.lr = -1");
        assert!(stderr.contains("must be positive"), "{stderr}");
    }
    assert!(!out.exists(), "nothing written");
}

/// Case 13: a prepared folder with a shard cut short or missing, and a folder without a
/// manifest.
#[test]
fn damaged_prepared_folders_are_named() {
    let prepared = fresh("bad-prepared");
    succeeds(memory_layers().args([
        "prepare",
        "--data",
        &input("shards"),
        "--tokenizer",
        "byte",
        "--min-val-tokens",
        "600",
        "--out",
        arg(&prepared),
    ]));
    let manifest: serde_json::Value =
        serde_json::from_str(&read(&prepared.join(MANIFEST))).unwrap();
    let shard: PathBuf = prepared.join(manifest["train"]["shards"][0]["file"].as_str().unwrap());
    let name = shard.file_name().unwrap().to_str().unwrap().to_string();
    let out = fresh("bad-prepared-run");
    // The folder as prepared trains.
    train(&out, 2, &["--data-dir", arg(&prepared)]);

    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let run = fresh("bad-prepared-cut");
    let stderr = fails_with(
        &train_args(&run, "2", &["--data-dir", arg(&prepared)]),
        &name,
    );
    assert!(
        stderr.contains("damaged") && stderr.contains("prepare the folder again"),
        "{stderr}"
    );
    // The run trained on it before is damaged too, and `eval` says so.
    fails_with(&["eval", "--checkpoint", arg(&out)], "damaged");

    std::fs::remove_file(&shard).unwrap();
    let stderr = fails_with(
        &train_args(&run, "2", &["--data-dir", arg(&prepared)]),
        &name,
    );
    assert!(
        stderr.contains("missing: the folder is damaged"),
        "{stderr}"
    );
    assert!(!stderr.contains("Caused by"), "said once: {stderr}");

    // Token shards without their manifest.json: not a prepared folder.
    std::fs::remove_file(prepared.join(MANIFEST)).unwrap();
    let stderr = fails_with(
        &train_args(&run, "2", &["--data-dir", arg(&prepared)]),
        "memory-layers prepare",
    );
    assert!(stderr.contains(MANIFEST), "{stderr}");
}
