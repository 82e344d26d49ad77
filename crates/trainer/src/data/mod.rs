//! Training data: text corpora, the embedded defaults, synthetic facts with QA sets and
//! recall probes, tokenizers, and packing into batches.

mod batches;
mod corpus;
mod facts;
mod qa;
mod recall;
mod tokenizer;

pub use batches::{Batches, Split};
pub(crate) use corpus::read_utf8;
pub use corpus::{Document, embedded_shakespeare, load_documents};
pub use facts::{Facts, FactsConfig};
pub use qa::{QaPair, QaScores, exact_match, load_qa, normalize_answer, prompt, token_f1};
pub use recall::{RecallProbe, load_recall, recalls};
pub use tokenizer::{Tokenizer, TokenizerKind};
