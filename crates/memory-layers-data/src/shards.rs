//! Token shards on disk: a corpus tokenised once into files of little-endian `u32` token ids
//! (`train-00000.tokens`, …, `val-00000.tokens`) with a `manifest.json`, read back one
//! sequence at a time so that a corpus larger than memory trains.
//!
//! Shards are read with a seek and one read per sequence, not memory maps: a read of
//! `4 × (seq_len + 1)` bytes that the page cache serves as a map would, and no `unsafe`
//! is needed (docs/decisions/0004-token-shards.md).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::{DataError, TOKENIZER_FILE, TokenizerKind};

/// The manifest's file name in a prepared folder; written last, so a folder without it is
/// an unfinished preparation.
pub const MANIFEST: &str = "manifest.json";

/// The format version this build writes and reads.
pub(crate) const FORMAT: u32 = 1;

/// Bytes per token in a shard.
const TOKEN_BYTES: usize = 4;

/// What a prepared folder holds: where it came from, its tokenizer, and its shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// The input files, in the order read.
    pub sources: Vec<Source>,
    /// The .jsonl field the texts came from.
    pub text_field: String,
    /// The tokenizer (`tokenizer.json` beside the manifest when BPE).
    pub tokenizer: TokenizerKind,
    /// Its vocabulary size.
    pub vocab_size: usize,
    /// The tokens written after every document.
    pub separator: Vec<u32>,
    /// Probability that a document is held out for validation.
    pub val_fraction: f64,
    /// The validation split's token budget, where it was drawn by tokens, not by share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_tokens: Option<usize>,
    /// Bytes of text the BPE tokenizer was trained on, where it was a sample of the corpus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_sample: Option<usize>,
    /// Seed of the validation draw.
    pub seed: u64,
    /// Training documents and shards.
    pub train: SplitFiles,
    /// Validation documents and shards.
    pub val: SplitFiles,
}

/// An input file as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes (compressed, as on disk).
    pub bytes: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
}

/// One split's documents and shard files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitFiles {
    /// Documents (whole, or the part of one split at its end).
    pub documents: usize,
    /// Tokens, separators included.
    pub tokens: usize,
    /// Shard files in order, with their token counts.
    pub shards: Vec<ShardFile>,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    /// File name, beside the manifest.
    pub file: String,
    /// Tokens it holds.
    pub tokens: usize,
}

impl Manifest {
    /// Reads `dir/manifest.json`; a missing one says how to make it.
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(MANIFEST);
        if !path.exists() {
            return Err(DataError::input(
                &path,
                None,
                "no such file: prepare the folder with `memory-layers prepare`",
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(DataError::io(&path))?;
        let manifest: Self = serde_json::from_str(&text)
            .map_err(|e| DataError::input(&path, None, format!("invalid manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(DataError::input(
                &path,
                None,
                format!(
                    "format {} (this build reads {FORMAT}): prepare the folder again",
                    manifest.format
                ),
            ));
        }
        Ok(manifest)
    }

    /// The tokenizer file of the prepared folder `dir` (bytes have none).
    pub fn tokenizer_file(dir: &Path) -> PathBuf {
        dir.join(TOKENIZER_FILE)
    }

    /// Writes `dir/manifest.json` atomically.
    pub(crate) fn save(&self, dir: &Path) -> Result<(), DataError> {
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        crate::atomic::write_atomic(&dir.join(MANIFEST), text.as_bytes())
    }

    /// The shard files of a split, opened and checked against their token counts.
    pub fn open(dir: &Path, split: &SplitFiles) -> Result<Vec<TokenFile>, DataError> {
        split
            .shards
            .iter()
            .map(|s| TokenFile::open(&dir.join(&s.file), s.tokens))
            .collect()
    }
}

/// Writes one split's documents into shard files of at most `shard_tokens` tokens.
pub(crate) struct ShardWriter {
    dir: PathBuf,
    prefix: &'static str,
    shard_tokens: usize,
    file: Option<(PathBuf, BufWriter<File>)>,
    files: SplitFiles,
}

impl ShardWriter {
    /// A writer of `dir/PREFIX-NNNNN.tokens` files.
    pub(crate) fn new(dir: &Path, prefix: &'static str, shard_tokens: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            prefix,
            shard_tokens: shard_tokens.max(1),
            file: None,
            files: SplitFiles::default(),
        }
    }

    /// Documents and tokens written so far.
    pub(crate) fn files(&self) -> &SplitFiles {
        &self.files
    }

    /// Appends one document's tokens (a document may continue in the next shard).
    pub(crate) fn push(&mut self, tokens: &[u32]) -> Result<(), DataError> {
        self.files.documents += 1;
        let mut rest = tokens;
        while !rest.is_empty() {
            let room = match self.files.shards.last() {
                Some(last) if self.file.is_some() && last.tokens < self.shard_tokens => {
                    self.shard_tokens - last.tokens
                }
                _ => self.next_shard()?,
            };
            let (now, later) = rest.split_at(room.min(rest.len()));
            let bytes: Vec<u8> = now.iter().flat_map(|t| t.to_le_bytes()).collect();
            let (path, file) = self.file.as_mut().expect("a shard is open");
            file.write_all(&bytes).map_err(DataError::io(&*path))?;
            self.files.shards.last_mut().expect("opened").tokens += now.len();
            self.files.tokens += now.len();
            rest = later;
        }
        Ok(())
    }

    /// Closes the current shard and opens the next; returns its room.
    fn next_shard(&mut self) -> Result<usize, DataError> {
        self.close()?;
        let name = format!("{}-{:05}.tokens", self.prefix, self.files.shards.len());
        let path = self.dir.join(&name);
        let file = File::create(&path).map_err(DataError::io(&path))?;
        self.file = Some((path, BufWriter::new(file)));
        self.files.shards.push(ShardFile {
            file: name,
            tokens: 0,
        });
        Ok(self.shard_tokens)
    }

    fn close(&mut self) -> Result<(), DataError> {
        if let Some((path, mut file)) = self.file.take() {
            file.flush().map_err(DataError::io(&path))?;
            file.get_ref().sync_all().map_err(DataError::io(&path))?;
        }
        Ok(())
    }

    /// Flushes the last shard and returns the split's record.
    pub(crate) fn finish(mut self) -> Result<SplitFiles, DataError> {
        self.close()?;
        Ok(self.files)
    }
}

/// A shard file of token ids, read on demand.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    file: Mutex<File>,
    tokens: usize,
}

impl TokenFile {
    /// Opens `path`, which must hold `tokens` tokens (a shorter or longer file is damaged).
    pub fn open(path: &Path, tokens: usize) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DataError::input(
                path,
                None,
                "missing: the folder is damaged, prepare it again",
            ),
            _ => DataError::io(path)(e),
        })?;
        let bytes = file.metadata().map_err(DataError::io(path))?.len();
        if bytes != (tokens * TOKEN_BYTES) as u64 {
            return Err(DataError::input(
                path,
                None,
                format!(
                    "holds {bytes} bytes where the manifest says {tokens} tokens ({} bytes): \
                     damaged, prepare the folder again",
                    tokens * TOKEN_BYTES
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            tokens,
        })
    }

    /// Tokens in the file.
    pub fn len(&self) -> usize {
        self.tokens
    }

    /// Whether the file holds no token.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }

    /// Appends tokens `start..start + count` to `out`.
    pub fn read(&self, start: usize, count: usize, out: &mut Vec<u32>) -> Result<(), DataError> {
        let mut bytes = vec![0u8; count * TOKEN_BYTES];
        {
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            file.seek(SeekFrom::Start((start * TOKEN_BYTES) as u64))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(DataError::io(&self.path))?;
        }
        out.extend(
            bytes
                .chunks_exact(TOKEN_BYTES)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))),
        );
        Ok(())
    }
}
