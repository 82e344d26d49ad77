//! `memory-layers experiment` on a user's own corpus at a budget of a few steps per run: the
//! summary holds every field, a suite killed during a run resumes it and skips the finished
//! ones, and a finished suite is not trained again.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{fresh, kill_after_checkpoint, memory_layers};
use memory_layers_experiments::SuiteDir;

/// A small corpus of facts with QA and recall sets about them, under `dir`.
fn write_corpus(dir: &Path) -> [String; 3] {
    std::fs::create_dir_all(dir).unwrap();
    let cities = ["Oslo", "Lisbon", "Graz", "Turin", "Ghent"];
    let mut text = String::new();
    let (mut qa, mut recall) = (String::new(), String::new());
    for i in 0..60 {
        let city = cities[i % cities.len()];
        text += &format!(
            "Person {i} lives in {city}. Person {i} likes the number {}.\n",
            i * 7
        );
        qa +=
            &format!("{{\"question\": \"Where does person {i} live?\", \"answer\": \"{city}\"}}\n");
        recall += &format!("{{\"prompt\": \"Person {i} lives in\", \"answer\": \"{city}\"}}\n");
    }
    let files = [
        ("facts.txt", text.repeat(6)),
        ("qa.jsonl", qa),
        ("recall.jsonl", recall),
    ];
    files.map(|(name, content)| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    })
}

/// `experiment ablations` with one seed and three steps per run on the corpus, `jobs` runs at
/// a time, into `out`.
fn experiment(out: &Path, corpus: &[String; 3], jobs: usize) -> Command {
    let mut cmd = memory_layers();
    cmd.args([
        "experiment",
        "ablations",
        "--seeds",
        "1",
        "--budget",
        "1536",
    ])
    .arg("--jobs")
    .arg(jobs.to_string());
    cmd.args([
        "--data", &corpus[0], "--qa", &corpus[1], "--recall", &corpus[2],
    ])
    .arg("--out")
    .arg(out)
    .stderr(Stdio::null());
    cmd
}

fn stdout_of(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "experiment failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_killed_suite_resumes_and_a_finished_one_is_skipped() {
    let dir = fresh("experiment");
    let corpus = write_corpus(&dir.join("corpus"));
    let out = dir.join("suite");
    let suite = SuiteDir::new(&out);

    // Kill the suite once its second run has a checkpoint and before it is evaluated.
    let second = suite.run("one-layer-s0");
    let mut first = experiment(&out, &corpus, 1);
    first.stdout(Stdio::null());
    kill_after_checkpoint(first, second.path(), 1);
    assert!(suite.row("memory-plus-s0").exists());
    assert!(!suite.row("one-layer-s0").exists(), "killed before its end");

    // Two at a time from here: the resumed run beside the next one.
    let log = stdout_of(experiment(&out, &corpus, 2));
    assert!(
        log.contains("[run 1 of 6] memory-plus-s0: finished earlier, skipped"),
        "{log}"
    );
    assert!(log.contains("[run 2 of 6] one-layer-s0 (resumed)"), "{log}");
    assert!(log.contains("[run 6 of 6] qk-norm-"), "{log}");

    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(suite.summary_json()).unwrap()).unwrap();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        for field in [
            "model",
            "size",
            "seed",
            "total_params",
            "active_params",
            "flops_per_token",
            "tokens",
            "wall_s",
            "val_loss",
            "qa_exact_match",
            "qa_f1",
            "qa_answer_nll",
            "fact_recall",
        ] {
            assert!(
                row[field].is_number() || row[field].is_string(),
                "{field}: {row}"
            );
        }
        assert_eq!(row["tokens"], 1536);
        assert_eq!(row["qa_total"], 60);
        assert_eq!(row["recall_count"], 60);
        let layers = row["memory_layers"].as_array().unwrap();
        assert!(!layers.is_empty(), "every ablation has memory layers");
        assert!(layers[0]["used_pct"].is_number() && layers[0]["kl_uniform"].is_number());
    }
    assert_eq!(rows[1]["run"], "one-layer-s0");
    assert_eq!(rows[1]["memory_layers"].as_array().unwrap().len(), 1);
    for file in suite.report_files(memory_layers_experiments::Suite::Ablations) {
        assert!(file.exists(), "{} written", file.display());
    }

    let again = stdout_of(experiment(&out, &corpus, 2));
    assert_eq!(
        again.matches("finished earlier, skipped").count(),
        6,
        "{again}"
    );
    let same: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(suite.summary_json()).unwrap()).unwrap();
    assert_eq!(same, rows);

    // Killed, resumed and trained two at a time, the suite equals one trained at once alone.
    let alone = dir.join("alone");
    stdout_of(experiment(&alone, &corpus, 1));
    let alone: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(SuiteDir::new(&alone).summary_json()).unwrap(),
    )
    .unwrap();
    for (a, b) in rows.iter().zip(&alone) {
        for field in [
            "run",
            "val_loss",
            "fact_recall",
            "qa_answer_nll",
            "memory_layers",
        ] {
            assert_eq!(a[field], b[field], "{field} of {}", a["run"]);
        }
    }
}
