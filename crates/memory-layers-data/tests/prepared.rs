//! `prepare`: a multi-shard corpus tokenised into token shards reads back exactly and holds
//! out whole documents.

use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use memory_layers_data::{
    DocSeparator, Manifest, PrepareConfig, Split, TokenizerKind, prepare_corpus,
};

/// A scratch directory named after `name`, removed when dropped.
fn dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("data-prepared-{name}-"))
        .tempdir()
        .unwrap()
}

/// Document `i`: a line of text without blank lines (the byte tokenizer's separator).
fn text(i: usize) -> String {
    format!(
        "Document {i}: {}",
        "memory layers at scale. ".repeat(1 + i % 7)
    )
}

/// `count` documents as .jsonl shards under "content": gzipped, zstd-compressed and plain.
fn corpus(root: &Path, count: usize) -> PathBuf {
    let folder = root.join("corpus");
    std::fs::create_dir_all(&folder).unwrap();
    let per_file = count.div_ceil(3);
    for (part, chunk) in (0..count).collect::<Vec<_>>().chunks(per_file).enumerate() {
        let mut lines = Vec::new();
        for &i in chunk {
            let record = serde_json::json!({ "content": text(i), "id": i });
            writeln!(lines, "{record}").unwrap();
        }
        let (name, bytes) = match part {
            0 => ("part-0.jsonl.gz", {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                e.write_all(&lines).unwrap();
                e.finish().unwrap()
            }),
            1 => ("part-1.jsonl.zst", zstd::encode_all(&lines[..], 3).unwrap()),
            _ => ("part-2.jsonl", lines),
        };
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    folder
}

/// The documents a split's shards hold, in order.
fn split_texts(dir: &Path, manifest: &Manifest, split: Split) -> Vec<String> {
    let files = match split {
        Split::Train => &manifest.train,
        Split::Val => &manifest.val,
    };
    let mut tokens = Vec::new();
    for file in Manifest::open(dir, files).unwrap() {
        file.read(0, file.len(), &mut tokens).unwrap();
    }
    let bytes: Vec<u8> = tokens.iter().map(|&t| t as u8).collect();
    let text = String::from_utf8(bytes).unwrap();
    text.split_terminator("\n\n").map(str::to_string).collect()
}

/// Preparing `count` documents of [`corpus`] under `root` as bytes.
fn bytes_of(root: &Path, count: usize) -> PrepareConfig {
    PrepareConfig {
        text_field: "content".into(),
        tokenizer: TokenizerKind::Byte,
        ..PrepareConfig::new(vec![corpus(root, count)], root.join("prepared"))
    }
}

#[test]
fn shards_hold_every_document_once_and_validation_whole_documents() {
    let tmp = dir("exact");
    let root = tmp.path();
    let count = 400;
    let config = PrepareConfig {
        val_fraction: 0.1,
        seed: 3,
        shard_tokens: 4096,
        min_val_tokens: 0,
        ..bytes_of(root, count)
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    let out = &config.out;
    assert_eq!(
        manifest,
        Manifest::load(out).unwrap(),
        "the manifest on disk"
    );
    assert_eq!(manifest.sources.len(), 3);
    assert!(manifest.sources[0].path.ends_with("part-0.jsonl.gz"));
    assert_eq!(manifest.sources[0].sha256.len(), 64);
    assert!(
        manifest.train.shards.len() > 3,
        "several shards of 4096 tokens"
    );
    assert!(manifest.train.shards.iter().all(|s| s.tokens <= 4096));

    let val = whole_documents(out, &manifest, count);
    assert!(
        (20..=60).contains(&val.len()),
        "about 10% of 400 held out: {}",
        val.len()
    );

    // The same seed holds out the same documents; another seed others.
    let again = prepare_corpus(&config, &[], false).unwrap();
    assert_eq!(again.val, manifest.val);
    let other = PrepareConfig {
        seed: 4,
        out: root.join("other"),
        ..config.clone()
    };
    let other = prepare_corpus(&other, &[], false).unwrap();
    assert_ne!(split_texts(&root.join("other"), &other, Split::Val), val);
}

/// The number of "Document N: …".
fn number(text: &str) -> usize {
    text.strip_prefix("Document ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Checks that every document of `0..count` is in exactly one split, whole, and returns the
/// validation documents.
fn whole_documents(out: &Path, manifest: &Manifest, count: usize) -> Vec<String> {
    let train = split_texts(out, manifest, Split::Train);
    let val = split_texts(out, manifest, Split::Val);
    assert_eq!(train.len(), manifest.train.documents);
    assert_eq!(val.len(), manifest.val.documents);
    let mut merged: Vec<&String> = train.iter().chain(&val).collect();
    merged.sort_by_key(|t| number(t));
    let expected: Vec<String> = (0..count).map(text).collect();
    assert_eq!(merged, expected.iter().collect::<Vec<_>>());
    val
}

#[test]
fn a_validation_split_too_small_takes_documents_from_the_end() {
    let tmp = dir("top-up");
    let root = tmp.path();
    let count = 100;
    let config = PrepareConfig {
        val_fraction: 0.02,
        min_val_tokens: 2000,
        ..bytes_of(root, count)
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    assert_eq!(
        manifest.val.tokens, 2000,
        "topped up to the minimum, exactly"
    );
    let val = split_texts(&config.out, &manifest, Split::Val);
    let train = split_texts(&config.out, &manifest, Split::Train);
    assert!(
        val.last().unwrap().starts_with("Document 99:"),
        "the last document"
    );
    // Whole documents (drawn, or from the end), and the end of one document cut in two:
    // its start closes the training split, its end comes before the documents after it.
    let pieces: Vec<usize> = (0..val.len())
        .filter(|&i| !val[i].starts_with("Document "))
        .collect();
    assert_eq!(pieces.len(), 1, "{val:?}");
    let next = number(&val[pieces[0] + 1]);
    let cut = train.last().unwrap();
    assert_eq!(format!("{cut}{}", val[pieces[0]]), text(next - 1));
    let tail: Vec<usize> = val[pieces[0] + 1..].iter().map(|t| number(t)).collect();
    assert_eq!(
        tail,
        (next..count).collect::<Vec<_>>(),
        "the last documents"
    );
    let expected: usize = (0..count).map(|i| text(i).len() + 2).sum();
    assert_eq!(manifest.train.tokens + manifest.val.tokens, expected);
}

#[test]
fn a_large_last_document_is_split_not_held_out_whole() {
    let tmp = dir("large-last");
    let root = tmp.path();
    let small = root.join("a.txt");
    std::fs::write(&small, "A short note.").unwrap();
    let large = root.join("b.txt");
    std::fs::write(&large, "All the world's a stage. ".repeat(40)).unwrap();
    let config = PrepareConfig {
        tokenizer: TokenizerKind::Byte,
        min_val_tokens: 100,
        ..PrepareConfig::new(vec![small, large], root.join("prepared"))
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    let total = manifest.train.tokens + manifest.val.tokens;
    assert_eq!(
        manifest.val.tokens, 100,
        "the end of the last document, not all of it"
    );
    assert!(manifest.val.tokens <= total / 2);
}

#[test]
fn one_document_gives_validation_its_end() {
    let tmp = dir("one");
    let root = tmp.path();
    let file = root.join("book.txt");
    std::fs::write(
        &file,
        "To be, or not to be: that is the question.\n".repeat(500),
    )
    .unwrap();
    let config = PrepareConfig {
        tokenizer: TokenizerKind::Byte,
        min_val_tokens: 100,
        ..PrepareConfig::new(vec![file], root.join("prepared"))
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    let total = manifest.train.tokens + manifest.val.tokens;
    assert_eq!(total, 500 * 43 + 2);
    assert_eq!(manifest.val.tokens, (total as f64 * 0.02).ceil() as usize);
    assert_eq!(manifest.train.documents, 1);
    assert_eq!(manifest.val.documents, 1);
}

#[test]
fn a_token_budget_holds_out_whole_documents_from_the_whole_corpus() {
    let tmp = dir("val-tokens");
    let root = tmp.path();
    let count = 600;
    let config = PrepareConfig {
        val_tokens: Some(3000),
        min_val_tokens: 0,
        ..bytes_of(root, count)
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    let longest = (0..count).map(|i| text(i).len() + 2).max().unwrap();
    assert!(
        (3000..3000 + longest).contains(&manifest.val.tokens),
        "{} tokens held out",
        manifest.val.tokens
    );
    assert_eq!(manifest.val_tokens, Some(3000));
    let val = whole_documents(&config.out, &manifest, count);
    // Drawn over the whole corpus: from both halves of it.
    let early = val.iter().filter(|t| number(t) < count / 2).count();
    assert!(early > 0 && early < val.len(), "{early} of {}", val.len());
}

#[test]
fn a_token_budget_larger_than_the_corpus_is_refused() {
    let tmp = dir("val-tokens-all");
    let root = tmp.path();
    for (wanted, field) in [(10_000_000, "val_tokens"), (0, "val_tokens")] {
        let config = PrepareConfig {
            val_tokens: Some(wanted),
            ..bytes_of(root, 20)
        };
        let error = prepare_corpus(&config, &[], false).unwrap_err().to_string();
        assert!(error.contains(field), "{error}");
    }
}

#[test]
fn a_large_text_file_streams_into_its_separated_documents() {
    // 2.3 MB of documents separated by blank lines: more than the 1 MiB the reader holds.
    let tmp = dir("streamed");
    let root = tmp.path();
    let count = 50_000;
    let text: String = (0..count)
        .map(|i| format!("Document {i}: one line,\nand another of it.\n\n"))
        .collect();
    assert!(text.len() > 2 << 20, "{}", text.len());
    let file = root.join("corpus.txt");
    std::fs::write(&file, &text).unwrap();
    let config = PrepareConfig {
        tokenizer: TokenizerKind::Byte,
        doc_separator: DocSeparator::BlankLine,
        ..PrepareConfig::new(vec![file], root.join("prepared"))
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    assert_eq!(manifest.train.documents + manifest.val.documents, count);
}

#[test]
fn a_bpe_trained_on_a_sample_records_its_size() {
    let tmp = dir("sample");
    let root = tmp.path();
    let config = PrepareConfig {
        tokenizer: TokenizerKind::Bpe,
        vocab_size: 300,
        tokenizer_sample: Some(4000),
        ..bytes_of(root, 300)
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    let sampled = manifest.tokenizer_sample.unwrap();
    assert!((4000..4300).contains(&sampled), "{sampled} bytes");
    assert!(manifest.vocab_size > 256);
}
