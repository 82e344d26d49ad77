//! Parallel memory: value tables sharded on the embedding dimension across peers.
//!
//! - [`Collective`]: the collective operations of one peer (all-reduce, broadcast), with
//!   [`BurnCollective`] on burn-collective (threads of a process, or nodes through its
//!   orchestrator); [`Group`] builds all-gather, all-to-all and reduce-scatter among a subset
//!   of peers on top; a [`Mesh`] arranges the peers as replicas × memory shards.
//! - [`ShardedValues`]: a [`ValueStore`](memory_values::ValueStore) whose table is split by
//!   columns over a memory group; layers read it like a whole table. [`ShardedBackend`] is the
//!   backend extension behind it (forward with collectives, backward through autodiff).
//!
//! - [`node_config`] and [`run_orchestrator`]: several processes (nodes) in one run.
//!
//! docs/parallel-memory.md draws the data flow and counts the bytes each step moves.

mod collective;
mod error;
mod group;
mod mesh;
mod nodes;
mod sharded;

pub use burn::collective::CollectiveConfig;
pub use collective::{BurnCollective, Collective};
pub use error::ParallelError;
pub use group::Group;
pub use mesh::Mesh;
pub use nodes::{node_config, run_orchestrator};
pub use sharded::{ShardedBackend, ShardedValues};
