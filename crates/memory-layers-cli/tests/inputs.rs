//! A user's own corpus: a folder of gzipped .jsonl shards with the text in another field, and
//! a tokenizer.json made elsewhere, train from the command line; the run takes the
//! tokenizer's vocabulary and keeps a copy of it.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::{fails_with, fresh, losses, memory_layers, succeeds};
use memory_layers_data::MANIFEST;
use memory_layers_train::RunDir;

/// Writes `records` (texts) as a gzipped .jsonl shard with the text under "content".
fn shard(path: &Path, records: &[String]) {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for text in records {
        let line = serde_json::json!({ "content": text, "source": "test" });
        writeln!(encoder, "{line}").unwrap();
    }
    std::fs::write(path, encoder.finish().unwrap()).unwrap();
}

/// `train` on tiny for 4 steps into `out` with `extra` flags; panics with stderr on failure.
fn train(out: &Path, extra: &[&str]) {
    succeeds(
        memory_layers()
            .args([
                "train", "--size", "tiny", "--model", "dense", "--steps", "4",
            ])
            .args(["--no-facts", "--checkpoint-every", "4"])
            .args(extra)
            .arg("--out")
            .arg(out)
            .stdout(Stdio::null()),
    );
}

#[test]
fn gzipped_jsonl_shards_and_a_tokenizer_file_train() {
    let corpus = fresh("shards");
    std::fs::create_dir_all(&corpus).unwrap();
    for part in 0..3 {
        let records: Vec<String> = (0..40)
            .map(|i| {
                format!("Record {i} of part {part}: the quick brown fox jumps over the lazy dog.")
            })
            .collect();
        shard(&corpus.join(format!("part-{part:05}.jsonl.gz")), &records);
    }
    let data = corpus.to_str().unwrap();

    // A BPE tokenizer trained by one run is the tokenizer file of the next.
    let first = fresh("bpe-run");
    train(
        &first,
        &[
            "--data",
            data,
            "--text-field",
            "content",
            "--tokenizer",
            "bpe",
            "--set",
            "model.vocab_size=300",
        ],
    );
    let tokenizer = RunDir::new(&first).tokenizer();
    assert!(tokenizer.exists());

    let second = fresh("file-run");
    train(
        &second,
        &[
            "--data",
            data,
            "--text-field",
            "content",
            "--tokenizer",
            tokenizer.to_str().unwrap(),
        ],
    );
    let config = std::fs::read_to_string(RunDir::new(&second).config()).unwrap();
    let first_config = std::fs::read_to_string(RunDir::new(&first).config()).unwrap();
    let vocab = |c: &str| {
        c.lines()
            .find(|l| l.starts_with("vocab_size"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        vocab(&config),
        vocab(&first_config),
        "the file's vocabulary"
    );
    assert!(config.contains("text_field = \"content\""), "{config}");
    assert_eq!(
        std::fs::read(RunDir::new(&second).tokenizer()).unwrap(),
        std::fs::read(&tokenizer).unwrap(),
        "the run keeps its tokenizer"
    );
    assert_eq!(losses(&second).last().unwrap().0, 4);

    // The default field is "text", which these records lack; a missing tokenizer file is
    // named.
    let no_field = fresh("no-field");
    let args = [
        "train",
        "--size",
        "tiny",
        "--no-facts",
        "--data",
        data,
        "--out",
    ];
    fails_with(
        &[&args[..], &[no_field.to_str().unwrap()]].concat(),
        "no \"text\" field",
    );
    let no_tokenizer = fresh("no-tokenizer");
    fails_with(
        &[
            "train",
            "--size",
            "tiny",
            "--tokenizer",
            "/nonexistent/tok.json",
            "--out",
            no_tokenizer.to_str().unwrap(),
        ],
        "/nonexistent/tok.json",
    );
}

/// `train` on tiny for `steps` steps into `out` with `extra` flags: its stderr.
fn train_stderr(out: &Path, steps: &str, extra: &[&str]) -> String {
    let output = succeeds(
        memory_layers()
            .args([
                "train", "--size", "tiny", "--model", "dense", "--steps", steps,
            ])
            .args(["--no-facts", "--checkpoint-every", "2"])
            .args(extra)
            .arg("--out")
            .arg(out),
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_corpus_is_tokenized_once_per_run_or_by_prepare() {
    let corpus = fresh("prepare-corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    for part in 0..2 {
        let records: Vec<String> = (0..60)
            .map(|i| {
                format!(
                    "Record {i} of part {part}: {}",
                    "to be or not to be. ".repeat(4)
                )
            })
            .collect();
        shard(&corpus.join(format!("part-{part}.jsonl.gz")), &records);
    }
    let corpus = corpus.to_str().unwrap();

    // `prepare`, then a run on its folder: no tokenizing in the run.
    let prepared = fresh("prepared");
    let output = succeeds(memory_layers().args([
        "prepare",
        "--data",
        corpus,
        "--text-field",
        "content",
        "--tokenizer",
        "byte",
        "--val-fraction",
        "0.1",
        "--shard-tokens",
        "3000",
        "--min-val-tokens",
        "500",
        "--out",
        prepared.to_str().unwrap(),
    ]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("--data-dir"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(prepared.join(MANIFEST)).unwrap()).unwrap();
    assert!(manifest["train"]["shards"].as_array().unwrap().len() > 1);
    let run = fresh("prepared-run");
    let stderr = train_stderr(&run, "2", &["--data-dir", prepared.to_str().unwrap()]);
    assert!(!stderr.contains("tokenizing"), "{stderr}");
    assert_eq!(losses(&run).last().unwrap().0, 2);

    // `--data` prepares into the run's data/ once: neither resume nor eval tokenizes again.
    let run = fresh("data-run");
    let data = ["--data", corpus, "--text-field", "content"];
    let stderr = train_stderr(&run, "2", &data);
    assert!(stderr.contains("tokenizing"), "{stderr}");
    assert!(RunDir::new(&run).data().join(MANIFEST).exists());
    let output = succeeds(
        memory_layers()
            .args(["train", "--resume", "--steps", "4", "--out"])
            .arg(&run),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("tokenizing"), "{stderr}");
    assert_eq!(losses(&run).last().unwrap().0, 4);
    let output = succeeds(memory_layers().args(["eval", "--checkpoint"]).arg(&run));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("tokenizing"), "{stderr}");

    // --data-dir replaces --data and the tokenizer; a folder never prepared is named.
    fails_with(
        &["train", "--data-dir", "/x", "--data", corpus],
        "cannot be used with",
    );
    let nowhere = fresh("nowhere");
    fails_with(
        &[
            "train",
            "--size",
            "tiny",
            "--data-dir",
            nowhere.to_str().unwrap(),
            "--out",
            fresh("nowhere-run").to_str().unwrap(),
        ],
        "memory-layers prepare",
    );
}
