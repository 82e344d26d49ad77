//! Training data: text corpora (read as streams, prepared into token shards), the embedded defaults, synthetic facts with QA sets and
//! recall probes, tokenizers, and packing into batches.

mod batches;
mod corpus;
mod facts;
mod prepared;
mod qa;
mod recall;
mod shards;
mod tokenizer;

pub use batches::{Batches, Segment, Split};
pub(crate) use corpus::read_utf8;
pub use corpus::{Document, documents, embedded_shakespeare, input_files};
pub use facts::{Facts, FactsConfig};
pub use prepared::{PrepareConfig, prepare_corpus};
pub use qa::{QaPair, QaScores, exact_match, load_qa, normalize_answer, prompt, token_f1};
pub use recall::{RecallProbe, load_recall, recalls};
pub use shards::{MANIFEST, Manifest, ShardFile, Source, SplitFiles, TokenFile};
pub use tokenizer::{Tokenizer, TokenizerKind};
