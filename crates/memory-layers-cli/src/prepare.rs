//! `prepare`: tokenises a corpus once into token shards that `train --data-dir` and `eval`
//! read from disk.

use std::path::PathBuf;

use memory_layers_data::{DocSeparator, PrepareConfig, TokenizerKind, prepare_corpus};

use crate::train::{TokenizerChoice, parse_count, parse_tokenizer};

/// Arguments of `memory-layers prepare` (and `cargo xtask prepare`).
#[derive(clap::Args)]
pub struct PrepareArgs {
    /// Input (repeatable): .txt files, .jsonl files (one document per record), either
    /// compressed (.gz, .zst), parquet files (one document per row), or folders of them.
    #[arg(long = "data", required = true)]
    data: Vec<PathBuf>,
    /// The field of a .jsonl record that holds its text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// Tokenizer: byte, bpe (trained here on the corpus), or a Hugging Face tokenizer.json.
    #[arg(long, value_parser = parse_tokenizer, default_value = "bpe")]
    tokenizer: TokenizerChoice,
    /// Vocabulary of a BPE trained here.
    #[arg(long, default_value_t = 32_000)]
    vocab_size: usize,
    /// Probability that a document is held out for validation.
    #[arg(long, default_value_t = 0.02, conflicts_with = "val_tokens")]
    val_fraction: f64,
    /// Hold out whole documents drawn from the whole corpus until they hold this many tokens
    /// (1M, 500k), instead of --val-fraction of them: a validation split that does not grow
    /// with the corpus.
    #[arg(long, value_parser = parse_count)]
    val_tokens: Option<usize>,
    /// What ends a document in a text file: whole (the file is one document), blank-line,
    /// or a marker such as '<|endoftext|>'. Text files are read in chunks either way; a
    /// document longer than 16 MiB is cut at a line end.
    #[arg(long, default_value = "whole")]
    doc_separator: DocSeparator,
    /// Train the BPE tokenizer on a uniform sample of documents of this many bytes (100M,
    /// 1G) instead of the whole corpus; the sample's size goes in the manifest.
    #[arg(long, value_parser = parse_count)]
    tokenizer_sample: Option<usize>,
    /// The fewest validation tokens: when the documents drawn hold fewer, documents from the
    /// end of the corpus are held out too (at least a few sequences of the run's length).
    #[arg(long, default_value_t = 1 << 14)]
    min_val_tokens: usize,
    /// Seed of the validation draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tokens per shard file (4 bytes each).
    #[arg(long, default_value_t = 1 << 26)]
    shard_tokens: usize,
    /// Output folder (token shards, tokenizer.json, manifest.json).
    #[arg(long)]
    out: PathBuf,
}

/// Prepares the corpus and prints what was written.
pub fn run(args: PrepareArgs) -> anyhow::Result<()> {
    let (tokenizer, tokenizer_file) = args.tokenizer.resolve();
    let config = PrepareConfig {
        paths: args.data,
        text_field: args.text_field,
        doc_separator: args.doc_separator,
        val_tokens: args.val_tokens,
        tokenizer_sample: args.tokenizer_sample,
        tokenizer,
        tokenizer_file,
        vocab_size: args.vocab_size,
        val_fraction: args.val_fraction,
        seed: args.seed,
        shard_tokens: args.shard_tokens,
        min_val_tokens: args.min_val_tokens,
        out: args.out,
    };
    let manifest = prepare_corpus(&config, &[], true)?;
    let tokenizer = match manifest.tokenizer {
        TokenizerKind::Byte => "bytes".to_string(),
        kind => format!("{kind}, vocabulary {}", manifest.vocab_size),
    };
    println!(
        "{}: {} training tokens ({} documents, {} shards), {} validation tokens ({} documents); \
         tokenizer {tokenizer}. Train on it with --data-dir {}",
        config.out.display(),
        manifest.train.tokens,
        manifest.train.documents,
        manifest.train.shards.len(),
        manifest.val.tokens,
        manifest.val.documents,
        config.out.display(),
    );
    Ok(())
}
