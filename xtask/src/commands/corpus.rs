//! `cargo xtask bench --suite corpus`: a real-sized corpus end to end. Generates one large
//! text file of blank-line-separated documents, prepares it with the byte tokenizer and with
//! a BPE trained on a sample, trains a few steps from the shards and runs the final
//! evaluation, timing each phase and recording the process's peak resident memory in it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use memory_layers_data::{
    DocSeparator, PrepareConfig, TokenizerKind, embedded_shakespeare, prepare_corpus,
};
use memory_layers_train::{TrainBackend, TrainConfig, TrainOptions, train};
use memory_layers_zoo::{ModelKind, Size};

use crate::bench_result::BenchResult;

/// The corpus bench's sizes.
pub struct CorpusCase {
    /// Bytes of text generated.
    pub bytes: u64,
    /// Where the corpus, shards and run go.
    pub dir: PathBuf,
}

/// The process's peak resident set since the last [`reset_peak`], bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Starts a new peak (writing 5 to clear_refs resets VmHWM, Linux ≥ 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One phase: its seconds, its work per second and the peak resident memory during it.
fn phase(
    name: &str,
    seconds: f64,
    work: f64,
    unit: &str,
    mut config: serde_json::Value,
) -> BenchResult {
    let peak = peak_rss();
    config["seconds"] = seconds.into();
    config["peak_rss_bytes"] = peak.into();
    eprintln!(
        "{name:<40} {seconds:>10.1} s  {:>12.1} {unit}  peak {:.0} MB",
        work / seconds,
        peak.unwrap_or(0) as f64 / 1e6
    );
    BenchResult {
        name: name.into(),
        config,
        median_s: Some(seconds),
        throughput: Some(work / seconds),
        unit: unit.into(),
    }
}

/// Writes `bytes` of documents (paragraphs of the embedded plays, each prefixed with its
/// number so that no two are the same) separated by blank lines into `path`.
fn generate(path: &Path, bytes: u64) -> anyhow::Result<u64> {
    let plays = embedded_shakespeare().text;
    let paragraphs: Vec<&str> = plays
        .split("\n\n")
        .map(str::trim)
        .filter(|p| p.len() > 200)
        .collect();
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 22, file);
    let (mut written, mut documents) = (0u64, 0u64);
    while written < bytes {
        let paragraph = paragraphs[(documents as usize * 7919) % paragraphs.len()];
        let text = format!("Document {documents}.\n{paragraph}\n\n");
        out.write_all(text.as_bytes())?;
        written += text.len() as u64;
        documents += 1;
    }
    out.flush()?;
    Ok(documents)
}

impl CorpusCase {
    /// Runs every phase on backend `B`.
    pub fn run<B: TrainBackend>(&self, device: &B::Device) -> anyhow::Result<Vec<BenchResult>> {
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir)?;
        let text = self.dir.join("corpus.txt");
        let mb = self.bytes as f64 / 1e6;
        let mut out = Vec::new();

        reset_peak();
        let started = Instant::now();
        let documents = generate(&text, self.bytes)?;
        let config = serde_json::json!({"bytes": self.bytes, "documents": documents});
        out.push(phase(
            "corpus_generate",
            started.elapsed().as_secs_f64(),
            mb,
            "MB/s",
            config,
        ));

        let prepare = |name: &str, tokenizer, sample| -> anyhow::Result<(BenchResult, PathBuf)> {
            let dir = self.dir.join(name);
            let config = PrepareConfig {
                doc_separator: DocSeparator::BlankLine,
                tokenizer,
                vocab_size: 4096,
                val_tokens: Some(1 << 22),
                tokenizer_sample: sample,
                ..PrepareConfig::new(vec![text.clone()], dir.clone())
            };
            reset_peak();
            let started = Instant::now();
            let manifest = prepare_corpus(&config, &[], true)?;
            let seconds = started.elapsed().as_secs_f64();
            let config = serde_json::json!({
                "bytes": self.bytes, "tokenizer": tokenizer, "tokenizer_sample": sample,
                "train_tokens": manifest.train.tokens, "val_tokens": manifest.val.tokens,
                "documents": manifest.train.documents + manifest.val.documents,
            });
            Ok((
                phase(&format!("prepare_{name}"), seconds, mb, "MB/s", config),
                dir,
            ))
        };
        let (bytes_row, byte_dir) = prepare("byte", TokenizerKind::Byte, None)?;
        out.push(bytes_row);
        let (bpe_row, _) = prepare("bpe_sample", TokenizerKind::Bpe, Some(100_000_000))?;
        out.push(bpe_row);

        // A few steps of the experiments' Memory+ from the byte shards, then the final
        // evaluation at its default budget.
        let mut config = TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny);
        config.data.prepared = Some(byte_dir);
        config.data.facts = None;
        config.optim.steps = 20;
        config.run.out = self.dir.join("run");
        config.run.eval_every = 0;
        config.run.eval_batches = 1;
        let (batch, seq) = (config.optim.batch_size, config.optim.seq_len);
        let eval_tokens = config.run.eval_tokens;
        reset_peak();
        let started = Instant::now();
        let summary = train::<B>(
            config,
            device,
            TrainOptions {
                progress: true,
                ..TrainOptions::default()
            },
        )?;
        let total = started.elapsed().as_secs_f64();
        let tokens = (summary.steps * batch * seq) as f64;
        let setup = serde_json::json!({"steps": summary.steps, "batch": batch, "seq_len": seq});
        out.push(phase(
            "corpus_train_steps",
            summary.train_seconds,
            tokens,
            "tokens/s",
            setup,
        ));
        let eval = serde_json::json!({
            "eval_tokens": eval_tokens, "tokens_scored": summary.eval.val_tokens,
            "val_loss": summary.eval.val_loss, "val_loss_se": summary.eval.val_loss_se,
            "end_to_end_s": total,
            "note": "the run's time outside its training steps (opening the shards, the final \
                     evaluation); the peak is the whole run's",
        });
        out.push(phase(
            "corpus_setup_and_eval",
            total - summary.train_seconds,
            summary.eval.val_tokens as f64,
            "eval tokens/s",
            eval,
        ));
        Ok(out)
    }
}
