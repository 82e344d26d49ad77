//! The developer commands; `train`, `eval` and `generate` come from memory-layers-cli.

pub mod bench;
pub mod corpus;
pub mod parity;
pub mod report;
pub mod results;
pub mod zoo;
