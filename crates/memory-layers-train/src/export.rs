//! A trained run exported under Hugging Face Llama names: its model
//! ([`memory_layers_zoo::hf`]), its tokenizer, and reference logits for an independent check.

use std::path::Path;

use memory_layers_data::TOKENIZER_FILE;
use memory_layers_zoo::ZooBackend;
use memory_layers_zoo::hf::{ExportedModel, export_model, logits, write_check};

use crate::{TrainError, open_run};

/// The text whose tokens [`export_run`] writes with their logits (cut to the context and to
/// [`CHECK_TOKENS`] tokens).
pub const CHECK_PROMPT: &str = "ROMEO.\nBut soft, what light through yonder window breaks?\n\
                                It is the east, and Juliet is the sun.\n";
/// The most tokens of [`CHECK_PROMPT`] the check holds.
pub const CHECK_TOKENS: usize = 64;

/// What [`export_run`] wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// The model's tensors and configuration.
    pub model: ExportedModel,
    /// Whether `tokenizer.json` was copied.
    pub tokenizer: bool,
    /// The token ids of `check.safetensors`.
    pub check_tokens: Vec<u32>,
}

/// Exports the run (or checkpoint folder) `checkpoint` into `out`: `model.safetensors`,
/// `config.json`, `tokenizer.json` (BPE runs) and `check.safetensors` (`tokens [1, T]` i64 and
/// `logits [1, T, vocab]` f32 of [`CHECK_PROMPT`], computed by this model on `device`).
pub fn export_run<B: ZooBackend>(
    checkpoint: &Path,
    out: &Path,
    device: &B::Device,
) -> Result<ExportSummary, TrainError> {
    let run = open_run::<B>(checkpoint, device)?;
    let model = export_model(&run.model, &run.config.model, out)?;
    let tokenizer = run.dir.tokenizer();
    let copied = tokenizer.exists();
    if copied {
        let to = out.join(TOKENIZER_FILE);
        std::fs::copy(&tokenizer, &to).map_err(TrainError::io(&to))?;
    }
    let mut tokens = run.tokenizer.encode(CHECK_PROMPT);
    let vocab = run.config.model.vocab_size as u32;
    tokens.retain(|&t| t < vocab);
    tokens.truncate(CHECK_TOKENS.min(run.config.model.max_seq_len));
    if tokens.is_empty() {
        tokens = (0..CHECK_TOKENS.min(run.config.model.max_seq_len) as u32)
            .map(|t| t % vocab)
            .collect();
    }
    let logits = logits(&run.model, &tokens, device)?;
    write_check(out, &tokens, &logits, vocab as usize)?;
    Ok(ExportSummary {
        model,
        tokenizer: copied,
        check_tokens: tokens,
    })
}
