//! Data preparation: a run's tokenizer, batches, held-out QA and recall probes from its
//! configuration.

use std::path::Path;

use crate::TrainError;
use crate::config::TrainConfig;
use crate::data::{
    Batches, Facts, QaPair, RecallProbe, Tokenizer, TokenizerKind, embedded_shakespeare,
    load_documents, load_qa, load_recall,
};
use crate::phase::{Phase, megabytes};

/// The data of a run: tokenizer, batches, held-out QA and recall probes.
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

/// `text[from..from + len]`, both ends moved back to a line start.
fn lines(text: &str, from: usize, len: usize) -> &str {
    let start = |at: usize| {
        let bytes = &text.as_bytes()[..at.min(text.len())];
        bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
    };
    &text[start(from)..start(from + len).max(start(from))]
}

/// Builds the run's data; trains and saves the tokenizer unless the run directory has one
/// (`reuse_tokenizer`). Sets `config.model.vocab_size` from the tokenizer. With `progress`,
/// each slow phase prints a line on stderr.
pub fn prepare_data(
    config: &mut TrainConfig,
    out: &Path,
    reuse_tokenizer: bool,
    progress: bool,
) -> Result<RunData, TrainError> {
    let data = &config.data;
    let mut held_out = None;
    let reading = Phase::start(progress, "reading the training text");
    let mut documents = if data.paths.is_empty() {
        let mut plays = embedded_shakespeare();
        if let Some(limit) = data.embedded_bytes {
            let text = lines(&plays.text, limit, TEXT_VAL_BYTES).to_string();
            held_out = Some(text);
            plays.text = lines(&plays.text, 0, limit).to_string();
        }
        vec![plays]
    } else {
        load_documents(&data.paths, &data.text_field)?
    };
    let facts = data.facts.as_ref().map(Facts::generate);
    if let Some(facts) = &facts {
        documents.extend(facts.training.iter().cloned());
    }
    let bytes: usize = documents.iter().map(|d| d.text.len()).sum();
    reading.done(format!(
        "{} documents, {}",
        documents.len(),
        megabytes(bytes)
    ));
    let tokenizer = if reuse_tokenizer {
        Tokenizer::load(data.tokenizer, out)?
    } else {
        let training = (data.tokenizer == TokenizerKind::Bpe && data.tokenizer_file.is_none())
            .then(|| {
                Phase::start(
                    progress,
                    format!(
                        "training a BPE tokenizer (vocabulary {}) on {}",
                        config.model.vocab_size,
                        megabytes(bytes)
                    ),
                )
            });
        let tokenizer = match (data.tokenizer, &data.tokenizer_file) {
            (TokenizerKind::Byte, _) => Tokenizer::Byte,
            (TokenizerKind::Bpe, Some(file)) => Tokenizer::from_file(file)?,
            (TokenizerKind::Bpe, None) => Tokenizer::train_bpe(
                documents.iter().map(|d| d.text.as_str()),
                config.model.vocab_size,
            )?,
        };
        if let Some(training) = training {
            training.done(format!("{} tokens", tokenizer.vocab_size()));
        }
        tokenizer.save(out)?;
        tokenizer
    };
    let tokenizing = Phase::start(progress, format!("tokenizing {}", megabytes(bytes)));
    config.model.vocab_size = tokenizer.vocab_size();
    let separator = tokenizer.document_separator();
    let mut tokens = Vec::new();
    for document in &documents {
        tokens.extend(tokenizer.encode(&document.text));
        tokens.extend_from_slice(&separator);
    }
    tokenizing.done(format!("{} tokens", tokens.len()));
    let batches = Batches::new(
        &tokens,
        config.optim.seq_len,
        data.val_fraction,
        config.run.seed,
    )?;
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
    let text_val = held_out
        .filter(|text| !text.is_empty())
        .map(|text| Batches::held_out(&tokenizer.encode(&text), config.optim.seq_len))
        .transpose()?;
    Ok(RunData {
        tokenizer,
        batches,
        qa,
        recall,
        text_val,
    })
}
