//! Training data for memory-layer language models.
//!
//! - [`documents`]: text corpora read as streams: `.txt`, `.jsonl` (a text field per record),
//!   either compressed (`.gz`, `.zst`), parquet (a text column), folders of them; the embedded
//!   Shakespeare plays ([`embedded_shakespeare`]).
//! - [`prepare_corpus`]: a corpus tokenised once, in parallel, into token shards with a
//!   held-out split of whole documents and a [`Manifest`].
//! - [`Tokenizer`]: bytes, a byte-level BPE trained on the corpus, or a Hugging Face
//!   `tokenizer.json`.
//! - [`Facts`]: a generated knowledge corpus (biographies, QA lines, held-out QA, recall
//!   probes); [`CompactFacts`]: one written a token per name and value, for measuring
//!   capacity; [`QaPair`], [`RecallProbe`] and their scores.
//! - [`Batches`]: deterministic training and validation batches over tokens in memory or
//!   shard files.
//! - [`progress`]: a line per slow phase; [`write_atomic`]: files replaced whole.
//!
//! ```
//! use memory_layers_data::{Batches, Split, Tokenizer};
//!
//! let tokens = Tokenizer::Byte.encode(&"To be, or not to be. ".repeat(40));
//! let batches = Batches::new(&tokens, 16, 0.1, 0).unwrap();
//! assert!(batches.len(Split::Train) > 0);
//! let batch = batches.train_batch(0, 4).unwrap();
//! assert_eq!(batch.len(), 4 * 17);
//! ```

mod atomic;
mod batches;
mod compact;
mod corpus;
mod error;
mod facts;
mod prepared;
pub mod progress;
mod qa;
mod recall;
mod sample;
mod shards;
mod text;
mod tokenizer;

pub use atomic::write_atomic;
pub use batches::{Batches, Segment, Split};
pub use compact::{CompactFacts, CompactFactsConfig};
pub use corpus::{Document, documents, embedded_shakespeare, input_files, read_utf8};
pub use error::DataError;
pub use facts::{Facts, FactsConfig};
pub use prepared::{PrepareConfig, prepare_corpus};
pub use qa::{QaPair, QaScores, exact_match, load_qa, normalize_answer, prompt, token_f1};
pub use recall::{RecallProbe, load_recall, recalls};
pub use shards::{MANIFEST, Manifest, ShardFile, Source, SplitFiles, TokenFile};
pub use text::{DocSeparator, EMPTY_SEPARATOR, MAX_DOCUMENT_BYTES};
pub use tokenizer::{TOKENIZER_FILE, Tokenizer, TokenizerKind};
