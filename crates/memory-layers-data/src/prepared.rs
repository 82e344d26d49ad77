//! `prepare`: a corpus read once, tokenised in parallel, and written as token shards with a
//! held-out validation split of whole documents and a manifest (shards.rs).

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};

use memory_layers_zoo::SplitMix64;
use sha2::{Digest, Sha256};

use crate::DataError;
use crate::progress::{Phase, megabytes};
use crate::sample::BottomK;
use crate::shards::{FORMAT, MANIFEST, Manifest, ShardWriter, Source, SplitFiles};
use crate::{
    DocSeparator, Document, EMPTY_SEPARATOR, Tokenizer, TokenizerKind, documents, input_files,
};

/// How to prepare a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareConfig {
    /// Text and .jsonl files (plain, `.gz`, `.zst`) and folders of them.
    pub paths: Vec<PathBuf>,
    /// The .jsonl field holding each record's text.
    pub text_field: String,
    /// What ends a document in a text file (by default nothing: a file is a document).
    pub doc_separator: DocSeparator,
    /// Bytes, or BPE (trained here unless `tokenizer_file` is given).
    pub tokenizer: TokenizerKind,
    /// A Hugging Face `tokenizer.json` to use instead of training one.
    pub tokenizer_file: Option<PathBuf>,
    /// Vocabulary of a BPE trained here.
    pub vocab_size: usize,
    /// Probability that a document is held out for validation, in (0, 1]; 1 holds out all
    /// (an evaluation set). With `val_tokens`, only the share the `min_val_tokens` top-up
    /// may reach.
    pub val_fraction: f64,
    /// Hold out whole documents drawn uniformly from the whole corpus until they hold this
    /// many tokens, however large the corpus (instead of a share of it).
    pub val_tokens: Option<usize>,
    /// Train a BPE on a uniform sample of documents of about this many bytes of text
    /// instead of the whole corpus.
    pub tokenizer_sample: Option<usize>,
    /// Seed of the validation draw.
    pub seed: u64,
    /// Tokens per shard file.
    pub shard_tokens: usize,
    /// The fewest validation tokens: when the documents drawn hold fewer, documents from the
    /// end of the corpus (or the end of the last one) are held out as well.
    pub min_val_tokens: usize,
    /// Output folder.
    pub out: PathBuf,
}

impl PrepareConfig {
    /// Defaults for `paths` into `out`: trained BPE of 32k tokens, 2% of documents held out
    /// and at least 16,384 tokens, shards of 64M tokens (256 MB).
    pub fn new(paths: Vec<PathBuf>, out: PathBuf) -> Self {
        Self {
            paths,
            text_field: "text".into(),
            doc_separator: DocSeparator::Whole,
            tokenizer: TokenizerKind::Bpe,
            tokenizer_file: None,
            vocab_size: 32_000,
            val_fraction: 0.02,
            val_tokens: None,
            tokenizer_sample: None,
            seed: 0,
            shard_tokens: 1 << 26,
            min_val_tokens: 1 << 14,
            out,
        }
    }
}

/// Text read between progress lines.
const PROGRESS_BYTES: usize = 256 << 20;

/// Text tokenised in one parallel batch.
const BATCH_BYTES: usize = 16 << 20;

/// Prepares `config.paths` into `config.out` (created; an earlier preparation there is
/// replaced). `bpe_extra` joins the texts a BPE is trained on (a run's generated facts)
/// without being written. With `progress`, phases and progress print on stderr.
///
/// Only one batch of texts and the last `min_val_tokens` tokens are in memory at a time. A
/// document goes to validation when a draw from the seed and its index falls below
/// `val_fraction`. When the documents drawn hold fewer than `min_val_tokens` tokens (a corpus
/// of one or a few documents, or short ones), documents from the end are held out too, then
/// the end of the last training document, up to `min_val_tokens` or `val_fraction` of all
/// tokens, whichever is more, and at most half of the corpus.
pub fn prepare_corpus(
    config: &PrepareConfig,
    bpe_extra: &[Document],
    progress: bool,
) -> Result<Manifest, DataError> {
    if !(config.val_fraction > 0.0 && config.val_fraction <= 1.0) {
        return Err(DataError::setting(
            "val_fraction",
            config.val_fraction,
            "must be in (0, 1] to prepare a corpus",
        ));
    }
    if config.doc_separator == DocSeparator::Marker(String::new()) {
        return Err(DataError::setting("doc_separator", "\"\"", EMPTY_SEPARATOR));
    }
    for (field, value) in [
        ("val_tokens", config.val_tokens),
        ("tokenizer_sample", config.tokenizer_sample),
    ] {
        if value == Some(0) {
            return Err(DataError::setting(
                field,
                0,
                "must be at least 1 when given",
            ));
        }
    }
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(DataError::io(out))?;
    // An earlier preparation here goes first: its manifest, then its shards.
    let manifest_path = out.join(MANIFEST);
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path).map_err(DataError::io(&manifest_path))?;
    }
    for entry in std::fs::read_dir(out).map_err(DataError::io(out))? {
        let path = entry.map_err(DataError::io(out))?.path();
        if path.extension().is_some_and(|e| e == "tokens") {
            std::fs::remove_file(&path).map_err(DataError::io(&path))?;
        }
    }
    let files = input_files(&config.paths)?;
    let phase = Phase::start(progress, format!("hashing {} input files", files.len()));
    let sources = files
        .iter()
        .map(|f| source(f))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes: u64 = sources.iter().map(|s| s.bytes).sum();
    phase.done(megabytes(bytes as usize));

    let (tokenizer, sampled) = tokenizer(config, bpe_extra, progress)?;
    tokenizer.save(&Manifest::tokenizer_file(out))?;
    let separator = tokenizer.document_separator();

    let phase = Phase::start(progress, "tokenizing");
    let mut splitter = Splitter {
        train: ShardWriter::new(out, "train", config.shard_tokens),
        val: ShardWriter::new(out, "val", config.shard_tokens),
        pending: VecDeque::new(),
        pending_tokens: 0,
        min_val: config.min_val_tokens,
    };
    let mut held = config.val_tokens.map(BottomK::<Vec<u32>>::new);
    let (mut index, mut read, mut reported) = (0u64, 0usize, 0usize);
    let mut batch: Vec<Document> = Vec::new();
    let mut docs = documents(&config.paths, &config.text_field, &config.doc_separator)?.peekable();
    while docs.peek().is_some() {
        let mut batch_bytes = 0;
        batch.clear();
        while batch_bytes < BATCH_BYTES {
            match docs.next() {
                Some(doc) => {
                    let doc = doc?;
                    batch_bytes += doc.text.len();
                    batch.push(doc);
                }
                None => break,
            }
        }
        let texts: Vec<&str> = batch.iter().map(|d| d.text.as_str()).collect();
        for mut tokens in tokenizer.encode_batch(&texts)? {
            tokens.extend_from_slice(&separator);
            let u = draw(config.seed, index);
            index += 1;
            match &mut held {
                None => splitter.push(tokens, u < config.val_fraction)?,
                Some(held) => {
                    let size = tokens.len();
                    for left in held.offer(tokens, size, (u * (1u64 << 53) as f64) as u64) {
                        splitter.push(left, false)?;
                    }
                }
            }
        }
        read += batch_bytes;
        if progress && read - reported >= PROGRESS_BYTES {
            reported = read;
            eprintln!(
                "tokenized {} of {}, {} tokens",
                megabytes(read),
                megabytes(bytes as usize),
                splitter.tokens()
            );
        }
    }
    if let Some(held) = held {
        for tokens in held.into_items() {
            splitter.push(tokens, true)?;
        }
    }
    let (train, val) = splitter.finish(config.val_fraction)?;
    if let (0, Some(wanted)) = (train.tokens, config.val_tokens) {
        return Err(DataError::setting(
            "val_tokens",
            wanted,
            "holds out every document (documents are held out whole): ask for fewer tokens \
             or hold out a share with val_fraction",
        ));
    }
    let manifest = Manifest {
        format: FORMAT,
        sources,
        text_field: config.text_field.clone(),
        tokenizer: config.tokenizer,
        vocab_size: tokenizer.vocab_size(),
        separator,
        val_fraction: config.val_fraction,
        val_tokens: config.val_tokens,
        tokenizer_sample: sampled,
        seed: config.seed,
        train,
        val,
    };
    phase.done(format!(
        "{} training tokens in {} documents, {} validation tokens in {}",
        manifest.train.tokens,
        manifest.train.documents,
        manifest.val.tokens,
        manifest.val.documents
    ));
    manifest.save(out)?;
    Ok(manifest)
}

/// Sends documents to the training or the validation shards, holding back the last ones
/// (at least `min_val` tokens of them) so that a validation split the draw left too small can
/// take whole documents from the end of the corpus.
struct Splitter {
    train: ShardWriter,
    val: ShardWriter,
    /// Documents not yet written, and whether each is held out.
    pending: VecDeque<(Vec<u32>, bool)>,
    pending_tokens: usize,
    min_val: usize,
}

impl Splitter {
    /// Tokens so far.
    fn tokens(&self) -> usize {
        self.train.files().tokens + self.val.files().tokens + self.pending_tokens
    }

    fn push(&mut self, tokens: Vec<u32>, held_out: bool) -> Result<(), DataError> {
        self.pending_tokens += tokens.len();
        self.pending.push_back((tokens, held_out));
        while self.pending.len() > 1
            && self.pending_tokens - self.pending[0].0.len() >= self.min_val
        {
            let (tokens, held_out) = self.pending.pop_front().expect("two or more");
            self.pending_tokens -= tokens.len();
            self.write(&tokens, held_out)?;
        }
        Ok(())
    }

    fn write(&mut self, tokens: &[u32], held_out: bool) -> Result<(), DataError> {
        if held_out {
            self.val.push(tokens)
        } else {
            self.train.push(tokens)
        }
    }

    /// Tops a validation split of fewer than `min_val` tokens up to `min_val` or
    /// `val_fraction` of the corpus, whichever is more (at most half of it): whole documents
    /// from the end that fit below that target, then the end of the last training document.
    /// Writes what is left.
    fn finish(mut self, val_fraction: f64) -> Result<(SplitFiles, SplitFiles), DataError> {
        let total = self.tokens();
        let held: usize = self.pending.iter().filter(|d| d.1).map(|d| d.0.len()).sum();
        let mut val = self.val.files().tokens + held;
        let mut train = total - val;
        if val < self.min_val {
            let wanted = (total as f64 * val_fraction).ceil() as usize;
            let target = self.min_val.max(wanted).min(total / 2);
            for (tokens, held_out) in self.pending.iter_mut().rev() {
                if val >= target {
                    break;
                }
                if !*held_out && tokens.len() < train && val + tokens.len() <= target {
                    *held_out = true;
                    val += tokens.len();
                    train -= tokens.len();
                }
            }
            let last_train = self.pending.iter().rposition(|d| !d.1);
            if let (true, Some(i)) = (val < target, last_train) {
                let cut = (target - val).min(self.pending[i].0.len() / 2);
                if cut > 0 {
                    let (mut head, _) = self.pending.remove(i).expect("found");
                    let tail = head.split_off(head.len() - cut);
                    self.pending.insert(i, (tail, true));
                    self.pending.insert(i, (head, false));
                }
            }
        }
        while let Some((tokens, held_out)) = self.pending.pop_front() {
            self.write(&tokens, held_out)?;
        }
        Ok((self.train.finish()?, self.val.finish()?))
    }
}

/// A uniform draw in [0, 1) for document `index`.
fn draw(seed: u64, index: u64) -> f64 {
    SplitMix64::new(seed ^ 0xD0C5_4E1D ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_f64()
}

/// The size and SHA-256 of a file's bytes.
fn source(path: &Path) -> Result<Source, DataError> {
    let mut file = std::fs::File::open(path).map_err(DataError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(DataError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Source {
        path: path.to_path_buf(),
        bytes,
        sha256,
    })
}

/// The tokenizer of a preparation: bytes, the given file, or a BPE trained on a pass over
/// the corpus (and `extra`), or on a uniform sample of its documents; with the bytes of text
/// it was trained on when that was a sample.
fn tokenizer(
    config: &PrepareConfig,
    extra: &[Document],
    progress: bool,
) -> Result<(Tokenizer, Option<usize>), DataError> {
    let docs = || documents(&config.paths, &config.text_field, &config.doc_separator);
    let extra = || extra.iter().map(|d| d.text.clone());
    let choose = |texts: Box<dyn Iterator<Item = String> + Send + '_>, on: &str| {
        Tokenizer::choose(
            config.tokenizer,
            config.tokenizer_file.as_deref(),
            config.vocab_size,
            texts,
            on,
            progress,
        )
    };
    let trains_bpe = config.tokenizer == TokenizerKind::Bpe && config.tokenizer_file.is_none();
    let Some(budget) = config.tokenizer_sample.filter(|_| trains_bpe) else {
        let mut error = None;
        let texts = docs()?
            .map_while(|doc| doc.map_err(|e| error = Some(e)).ok())
            .map(|doc| doc.text)
            .chain(extra());
        let tokenizer = choose(Box::new(texts), "the corpus")?;
        return error.map_or(Ok((tokenizer, None)), Err);
    };
    let phase = Phase::start(
        progress,
        format!(
            "sampling {} of the corpus for the tokenizer",
            megabytes(budget)
        ),
    );
    let mut sample = BottomK::new(budget);
    for (index, doc) in docs()?.enumerate() {
        let text = doc?.text;
        let priority = draw(config.seed ^ SAMPLE_SEED, index as u64);
        let size = text.len();
        sample.offer(text, size, (priority * (1u64 << 53) as f64) as u64);
    }
    let bytes = sample.size();
    phase.done(megabytes(bytes));
    let texts = sample.into_items().into_iter().chain(extra());
    Ok((choose(Box::new(texts), "the sample")?, Some(bytes)))
}

/// Mixed into the seed of the tokenizer's sample, so that it draws apart from validation.
const SAMPLE_SEED: u64 = 0x5A3B_1E00;
