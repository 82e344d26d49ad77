//! A run's data: its tokenizer, batches, held-out QA and recall probes from its
//! configuration.

use std::path::PathBuf;

use memory_layers_data::progress::{Phase, megabytes};
use memory_layers_data::{
    Batches, CompactFacts, CompactFactsConfig, DataError, Document, Facts, MANIFEST, Manifest,
    PrepareConfig, QaPair, RecallProbe, Segment, Split, Tokenizer, TokenizerKind,
    embedded_shakespeare, load_qa, load_recall, prepare_corpus,
};

use crate::config::TrainConfig;
use crate::{RunDir, TrainError};

/// The data of a run: tokenizer, batches, held-out QA and recall probes (with the number of
/// values each fact could take, the knowledge measure's).
pub struct RunData {
    /// The tokenizer (trained on the training text, or loaded from the run).
    pub tokenizer: Tokenizer,
    /// Training and validation sequences.
    pub batches: Batches,
    /// QA pairs for evaluation.
    pub qa: Vec<QaPair>,
    /// Fact-recall probes for evaluation.
    pub recall: Vec<RecallProbe>,
    /// Natural text never trained on (the embedded plays after `embedded_bytes`), for the
    /// validation loss of language modelling alone.
    pub text_val: Option<Batches>,
}

/// Bytes of the embedded plays held out after `embedded_bytes` for the natural-text loss.
const TEXT_VAL_BYTES: usize = 100_000;

/// Validation sequences at least, when a run prepares its corpus.
const VAL_SEQUENCES: usize = 8;

/// `text[from..from + len]`, both ends moved back to a line start.
fn lines(text: &str, from: usize, len: usize) -> &str {
    let start = |at: usize| {
        let bytes = &text.as_bytes()[..at.min(text.len())];
        bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
    };
    &text[start(from)..start(from + len).max(start(from))]
}

/// Builds the run's data; with `reuse` (resuming, evaluating) the tokenizer and prepared
/// shards the run directory holds are used as they are. Sets `config.model.vocab_size` from
/// the tokenizer. With `progress`, each slow phase prints a line on stderr.
///
/// The embedded plays and the generated facts are tokenised in memory and split into
/// random sequences. A corpus of files (`data.paths`) is prepared into `RUN/data/` once
/// (token shards, whole documents held out for validation) and read from disk while
/// training, as is a folder `prepare` wrote (`data.prepared`); the generated facts then
/// join the training split from memory. A compact knowledge corpus (`data.compact_facts`) is
/// the whole training text, in its own word-level vocabulary, with a probe of every fact.
pub fn prepare_data(
    config: &mut TrainConfig,
    out: &RunDir,
    reuse: bool,
    progress: bool,
) -> Result<RunData, TrainError> {
    let preparing = Preparing {
        out,
        reuse,
        progress,
    };
    if let Some(compact) = config.data.compact_facts.clone() {
        return preparing.compact(config, &compact);
    }
    let facts = config.data.facts.as_ref().map(Facts::generate);
    let facts_docs = facts.as_ref().map_or(&[][..], |f| f.training.as_slice());
    let tokens = if config.data.paths.is_empty() && config.data.prepared.is_none() {
        preparing.embedded(config, facts_docs)?
    } else {
        preparing.prepared(config, facts_docs)?
    };
    let data = &config.data;
    let qa = match (&data.qa, &facts) {
        (Some(path), _) => load_qa(path)?,
        (None, Some(facts)) => facts.heldout_qa.clone(),
        (None, None) => Vec::new(),
    };
    let recall = match (&data.recall, &facts) {
        (Some(path), _) => load_recall(path)?,
        (None, Some(facts)) => facts.recall.clone(),
        (None, None) => Vec::new(),
    };
    Ok(tokens.with_probes(qa, recall))
}

/// Where and how a run's text is tokenised.
struct Preparing<'a> {
    /// The run directory (its tokenizer, its prepared shards).
    out: &'a RunDir,
    /// Use what the run directory holds (resuming, evaluating).
    reuse: bool,
    /// A line per slow phase.
    progress: bool,
}

/// A run's text tokenised: its tokenizer, batches and held-out natural text.
struct Tokens {
    tokenizer: Tokenizer,
    batches: Batches,
    text_val: Option<Batches>,
}

impl Tokens {
    fn with_probes(self, qa: Vec<QaPair>, recall: Vec<RecallProbe>) -> RunData {
        RunData {
            tokenizer: self.tokenizer,
            batches: self.batches,
            qa,
            recall,
            text_val: self.text_val,
        }
    }
}

/// `documents` tokenised with `tokenizer` into one run of tokens, cut into the run's training
/// and validation sequences.
fn batches_of<'a>(
    config: &TrainConfig,
    tokenizer: &Tokenizer,
    documents: impl IntoIterator<Item = &'a Document>,
    progress: bool,
) -> Result<Batches, TrainError> {
    let documents: Vec<&Document> = documents.into_iter().collect();
    let bytes: usize = documents.iter().map(|d| d.text.len()).sum();
    let tokenizing = Phase::start(progress, format!("tokenizing {}", megabytes(bytes)));
    let tokens = tokenize(tokenizer, documents)?;
    tokenizing.done(format!("{} tokens", tokens.len()));
    Ok(Batches::new(
        &tokens,
        config.optim.seq_len,
        config.data.val_fraction,
        config.run.seed,
    )?)
}

impl Preparing<'_> {
    /// A compact knowledge corpus: its documents in its own vocabulary, a probe of each fact.
    fn compact(
        &self,
        config: &mut TrainConfig,
        compact: &CompactFactsConfig,
    ) -> Result<RunData, TrainError> {
        let generating = Phase::start(
            self.progress,
            format!(
                "generating {} facts of {} people, {} exposures each",
                compact.people * compact.attributes,
                compact.people,
                compact.exposures
            ),
        );
        let corpus = CompactFacts::generate(compact)?;
        generating.done(format!("{:.0} bits", compact.bits()));
        if !self.reuse {
            corpus.tokenizer.save(&self.out.tokenizer())?;
        }
        config.model.vocab_size = corpus.tokenizer.vocab_size();
        let batches = batches_of(config, &corpus.tokenizer, &corpus.training, self.progress)?;
        let data = &config.data;
        let qa = data
            .qa
            .as_deref()
            .map(load_qa)
            .transpose()?
            .unwrap_or_default();
        let recall = match &data.recall {
            Some(path) => load_recall(path)?,
            None => corpus.probes,
        };
        let tokens = Tokens {
            tokenizer: corpus.tokenizer,
            batches,
            text_val: None,
        };
        Ok(tokens.with_probes(qa, recall))
    }

    /// The tokenizer, batches and held-out natural text of a run on the embedded plays.
    fn embedded(&self, config: &mut TrainConfig, facts: &[Document]) -> Result<Tokens, TrainError> {
        let (out, reuse, progress) = (self.out, self.reuse, self.progress);
        let data = &config.data;
        let mut plays = embedded_shakespeare();
        let mut held_out = None;
        match data.embedded_bytes {
            // None of the plays: nothing of them is held out either.
            Some(0) => plays.text.clear(),
            Some(limit) => {
                held_out = Some(lines(&plays.text, limit, TEXT_VAL_BYTES).to_string());
                plays.text = lines(&plays.text, 0, limit).to_string();
            }
            None => {}
        }
        let documents: Vec<&Document> = std::iter::once(&plays).chain(facts).collect();
        let bytes: usize = documents.iter().map(|d| d.text.len()).sum();
        let tokenizer = if reuse {
            Tokenizer::load(data.tokenizer, &out.tokenizer())?
        } else {
            let tokenizer = Tokenizer::choose(
                data.tokenizer,
                data.tokenizer_file.as_deref(),
                config.model.vocab_size,
                documents.iter().map(|d| d.text.as_str()),
                &megabytes(bytes),
                progress,
            )?;
            tokenizer.save(&out.tokenizer())?;
            tokenizer
        };
        config.model.vocab_size = tokenizer.vocab_size();
        let batches = batches_of(config, &tokenizer, documents, progress)?;
        let text_val = held_out
            .filter(|text| !text.is_empty())
            .map(|text| Batches::held_out(&tokenizer.encode(&text), config.optim.seq_len))
            .transpose()?;
        Ok(Tokens {
            tokenizer,
            batches,
            text_val,
        })
    }

    /// The tokenizer and batches of a run on prepared shards: `data.prepared`, or `data.paths`
    /// prepared into `RUN/data/` (again unless `reuse` finds them there).
    fn prepared(&self, config: &mut TrainConfig, facts: &[Document]) -> Result<Tokens, TrainError> {
        let (out, reuse, progress) = (self.out, self.reuse, self.progress);
        let data = &config.data;
        let dir = data.prepared.clone().unwrap_or_else(|| out.data());
        let manifest = if data.prepared.is_some() || (reuse && dir.join(MANIFEST).exists()) {
            Manifest::load(&dir)?
        } else {
            // A run resumed or evaluated without its shards keeps the tokenizer it trained with.
            let tokenizer_file = match (reuse, data.tokenizer) {
                (true, TokenizerKind::Bpe) => Some(out.tokenizer()),
                _ => data.tokenizer_file.clone(),
            };
            let prepare = PrepareConfig {
                paths: data.paths.clone(),
                text_field: data.text_field.clone(),
                doc_separator: data.doc_separator.clone(),
                val_tokens: data.val_tokens,
                tokenizer_sample: data.tokenizer_sample,
                tokenizer: data.tokenizer,
                tokenizer_file,
                vocab_size: config.model.vocab_size,
                val_fraction: data.val_fraction,
                seed: config.run.seed,
                min_val_tokens: VAL_SEQUENCES * (config.optim.seq_len + 1),
                out: dir.clone(),
                ..PrepareConfig::new(Vec::new(), PathBuf::new())
            };
            prepare_corpus(&prepare, facts, progress)?
        };
        let tokenizer = Tokenizer::load(manifest.tokenizer, &Manifest::tokenizer_file(&dir))?;
        if tokenizer.vocab_size() != manifest.vocab_size {
            return Err(DataError::input(
                dir.join(MANIFEST),
                None,
                format!(
                    "says a vocabulary of {} where its tokenizer has {}",
                    manifest.vocab_size,
                    tokenizer.vocab_size()
                ),
            )
            .into());
        }
        if !reuse {
            tokenizer.save(&out.tokenizer())?;
        }
        config.data.tokenizer = manifest.tokenizer;
        config.model.vocab_size = tokenizer.vocab_size();
        let file_segments = |split| -> Result<Vec<Segment>, TrainError> {
            Ok(Manifest::open(&dir, split)?
                .into_iter()
                .map(Segment::File)
                .collect())
        };
        let mut train = file_segments(&manifest.train)?;
        if !facts.is_empty() {
            train.push(Segment::Owned(tokenize(&tokenizer, facts)?));
        }
        let batches = Batches::from_segments(
            train,
            file_segments(&manifest.val)?,
            config.optim.seq_len,
            config.run.seed,
        );
        if batches.len(Split::Val) == 0 {
            return Err(DataError::input(
                dir.join(MANIFEST),
                None,
                format!(
                    "the validation split holds {} tokens, less than one sequence of seq_len + 1 = \
                 {}: prepare with a larger --val-fraction or more documents",
                    manifest.val.tokens,
                    config.optim.seq_len + 1
                ),
            )
            .into());
        }
        Ok(Tokens {
            tokenizer,
            batches,
            text_val: None,
        })
    }
}

/// `documents` tokenised in parallel, each followed by the tokenizer's separator.
fn tokenize<'a>(
    tokenizer: &Tokenizer,
    documents: impl IntoIterator<Item = &'a Document>,
) -> Result<Vec<u32>, TrainError> {
    let texts: Vec<&str> = documents.into_iter().map(|d| d.text.as_str()).collect();
    let separator = tokenizer.document_separator();
    let mut tokens = Vec::new();
    for document in tokenizer.encode_batch(&texts)? {
        tokens.extend(document);
        tokens.extend_from_slice(&separator);
    }
    Ok(tokens)
}
