use std::path::Path;

use serde::{Deserialize, Serialize};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

use crate::DataError;
use crate::progress::Phase;

/// Which tokenizer a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerKind {
    /// One token per byte (vocabulary 256).
    Byte,
    /// A Hugging Face tokenizer: byte-level BPE trained on the run's training text, or the
    /// `tokenizer.json` of `data.tokenizer_file`.
    Bpe,
    /// The word-level vocabulary of a compact knowledge corpus (`data.compact_facts`), made
    /// with it: every name and value one token.
    Words,
}

memory_layers_zoo::serde_names!(TokenizerKind);

/// A tokenizer: bytes, or a Hugging Face tokenizer (`tokenizers`).
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// One token per byte.
    Byte,
    /// A Hugging Face tokenizer: a byte-level BPE trained here, a file's, or a word-level
    /// vocabulary made with a compact knowledge corpus.
    Hf(Box<tokenizers::Tokenizer>),
}

/// The name a saved tokenizer's file has in every folder that holds one (a run, prepared
/// shards, an export), as in Hugging Face's.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

impl Tokenizer {
    /// Trains a byte-level BPE with `vocab_size` tokens on `texts` (deterministic).
    pub fn train_bpe<S: AsRef<str> + Send>(
        texts: impl Iterator<Item = S> + Send,
        vocab_size: usize,
    ) -> Result<Self, DataError> {
        if vocab_size < 257 {
            return Err(DataError::setting(
                "vocab_size",
                vocab_size,
                "must exceed 256 for BPE",
            ));
        }
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut tokenizer = tokenizers::Tokenizer::new(BPE::default());
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        tokenizer
            .train(&mut trainer, texts)
            .map_err(|e| DataError::Tokenizer(format!("BPE training failed: {e}")))?;
        Ok(Self::Hf(Box::new(tokenizer)))
    }

    /// The tokenizer a run or a preparation asks for: bytes, the Hugging Face file `file`,
    /// or a BPE of `vocab_size` trained on `texts` (read only then), announced as training
    /// "on `on`" when `progress`.
    pub fn choose<S: AsRef<str> + Send>(
        kind: TokenizerKind,
        file: Option<&Path>,
        vocab_size: usize,
        texts: impl Iterator<Item = S> + Send,
        on: &str,
        progress: bool,
    ) -> Result<Self, DataError> {
        match (kind, file) {
            (TokenizerKind::Byte, None) => Ok(Self::Byte),
            (TokenizerKind::Byte | TokenizerKind::Words, Some(file)) => Err(DataError::setting(
                "tokenizer_file",
                file.display(),
                "a tokenizer file needs tokenizer = \"bpe\"",
            )),
            (TokenizerKind::Words, None) => Err(DataError::setting(
                "tokenizer",
                "words",
                "is the vocabulary of data.compact_facts, made with that corpus",
            )),
            (TokenizerKind::Bpe, Some(file)) => Self::from_file(file),
            (TokenizerKind::Bpe, None) => {
                let phase = Phase::start(
                    progress,
                    format!("training a BPE tokenizer (vocabulary {vocab_size}) on {on}"),
                );
                let tokenizer = Self::train_bpe(texts, vocab_size)?;
                phase.done(format!("{} tokens", tokenizer.vocab_size()));
                Ok(tokenizer)
            }
        }
    }

    /// Loads a Hugging Face `tokenizer.json` (GPT-2, Llama, …).
    pub fn from_file(path: &Path) -> Result<Self, DataError> {
        if !path.exists() {
            return Err(DataError::input(path, None, "no such file"));
        }
        tokenizers::Tokenizer::from_file(path)
            .map(|t| Self::Hf(Box::new(t)))
            .map_err(|e| {
                DataError::input(
                    path,
                    None,
                    format!("not a Hugging Face tokenizer file ({e})"),
                )
            })
    }

    /// The tokens put between documents: the tokenizer's end-of-text token when it has one
    /// (`<|endoftext|>`, `</s>`, `<|end_of_text|>`, `<eos>`), else a blank line.
    pub fn document_separator(&self) -> Vec<u32> {
        if let Self::Hf(t) = self {
            let eos = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"]
                .iter()
                .find_map(|name| t.token_to_id(name));
            if let Some(id) = eos {
                return vec![id];
            }
        }
        self.encode("\n\n")
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Byte => 256,
            Self::Hf(t) => t.get_vocab_size(true),
        }
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Self::Byte => text.bytes().map(u32::from).collect(),
            Self::Hf(t) => t
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Token ids of each text, tokenised in parallel.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, DataError> {
        match self {
            Self::Byte => Ok(texts.iter().map(|t| self.encode(t)).collect()),
            Self::Hf(t) => t
                .encode_batch(texts.to_vec(), false)
                .map(|all| all.iter().map(|e| e.get_ids().to_vec()).collect())
                .map_err(|e| DataError::Tokenizer(format!("encoding failed: {e}"))),
        }
    }

    /// Text of token ids (invalid UTF-8 is replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Self::Byte => {
                let bytes: Vec<u8> = ids.iter().map(|&i| i.min(255) as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Self::Hf(t) => t.decode(ids, false).unwrap_or_default(),
        }
    }

    /// Saves as the Hugging Face file `path` (nothing for bytes).
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        match self {
            Self::Byte => Ok(()),
            Self::Hf(t) => t
                .save(path, false)
                .map_err(|e| DataError::input(path, None, format!("cannot save tokenizer: {e}"))),
        }
    }

    /// Loads a tokenizer of `kind` saved as `path` (nothing is read for bytes).
    pub fn load(kind: TokenizerKind, path: &Path) -> Result<Self, DataError> {
        match kind {
            TokenizerKind::Byte => Ok(Self::Byte),
            TokenizerKind::Bpe | TokenizerKind::Words => Self::from_file(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_and_bpe_round_trip() {
        let text = "Question: Where was Alma Abbott born?\nAnswer: Lisbon\nTo be, or not to be.";
        assert_eq!(Tokenizer::Byte.decode(&Tokenizer::Byte.encode(text)), text);
        let corpus = vec![text; 50].join("\n");
        let bpe = Tokenizer::train_bpe([corpus.as_str()].into_iter(), 300).unwrap();
        assert!(bpe.vocab_size() <= 300 && bpe.vocab_size() > 256);
        let ids = bpe.encode(text);
        assert!(ids.len() < text.len(), "merges shorten the text");
        assert_eq!(bpe.decode(&ids), text);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        bpe.save(&dir.join(TOKENIZER_FILE)).unwrap();
        let loaded = Tokenizer::load(TokenizerKind::Bpe, &dir.join(TOKENIZER_FILE)).unwrap();
        assert_eq!(loaded.encode(text), ids);
    }

    #[test]
    fn documents_are_separated_by_the_end_of_text_token_when_there_is_one() {
        assert_eq!(Tokenizer::Byte.document_separator(), vec![10, 10]);
        let corpus = vec!["To be, or not to be."; 50].join("\n");
        let Tokenizer::Hf(mut inner) =
            Tokenizer::train_bpe([corpus.as_str()].into_iter(), 300).unwrap()
        else {
            unreachable!("train_bpe makes a BPE tokenizer")
        };
        let blank = Tokenizer::Hf(inner.clone()).encode("\n\n");
        assert_eq!(Tokenizer::Hf(inner.clone()).document_separator(), blank);
        inner.add_special_tokens(&[tokenizers::AddedToken::from("</s>", true)]);
        let eos = inner.token_to_id("</s>").unwrap();
        assert_eq!(Tokenizer::Hf(inner).document_separator(), vec![eos]);
    }
}
