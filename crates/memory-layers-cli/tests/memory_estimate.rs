//! The memory estimate at the command line: `--dry-run` prints it and writes nothing, and a
//! run whose estimate exceeds the device's memory is refused with the breakdown and flags that
//! fit, before anything is allocated (not killed by the operating system later).

mod common;

use common::{fails_with, fresh, memory_layers, succeeds};

#[test]
fn an_oversized_run_is_refused_with_its_breakdown() {
    // 134m Memory+ with 8 × 4096 tokens a micro-batch needs about 40 GiB on the CPU; 30 GB
    // is offered.
    let out = fresh("oversized");
    let path = out.to_str().unwrap();
    let model = ["train", "--model", "memory-plus", "--size", "134m"];
    let memory = ["--device-memory", "30G", "--out", path];
    let oversized = [
        &model[..],
        &["--batch-size", "8", "--grad-accum", "1"],
        &memory,
    ]
    .concat();
    let stderr = fails_with(&oversized, "this run needs about");
    for part in [
        "activations (one micro-batch)",
        "optimizer state (values)",
        "27.94 GiB",
    ] {
        assert!(stderr.contains(part), "{part:?} missing: {stderr}");
    }
    // Half the micro-batch would not (29.1 GiB: an accumulating step also holds the
    // gradients); a quarter, with 4 accumulations, fits (21.8 GiB).
    assert!(
        stderr.contains("--batch-size 2 --grad-accum 4"),
        "no fitting flags: {stderr}"
    );
    assert!(!out.exists(), "nothing written");

    // --dry-run prints the breakdown for the flags that fit, and stops.
    let fits = [
        &model[..],
        &["--batch-size", "2", "--grad-accum", "4"],
        &memory,
    ]
    .concat();
    let output = succeeds(memory_layers().args(&fits).arg("--dry-run"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 × 4096 tokens a micro-batch"), "{stdout}");
    assert!(stdout.contains("fits in 27.94 GiB"), "{stdout}");
    assert!(!out.exists(), "a dry run writes nothing");

    // On a GPU backend the estimate counts the attention chunk's scores.
    let gpu = [
        &model[..],
        &["--backend", "cuda", "--dry-run", "--out", path],
    ]
    .concat();
    let output = succeeds(memory_layers().args(&gpu));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("device memory unknown"), "{stdout}");
    let scores = stdout
        .lines()
        .find(|l| l.contains("attention chunk (GPU backends)"))
        .unwrap_or_else(|| panic!("no scores line: {stdout}"));
    assert!(!scores.contains(" 0.00 GiB"), "{scores}");
}
