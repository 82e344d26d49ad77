//! Parallel memory: value tables sharded on the embedding dimension across peers.
//!
//! - [`Collective`]: the collective operations of one peer (all-reduce, broadcast), with
//!   [`BurnCollective`] on burn-collective (threads of a process, or nodes through its
//!   orchestrator) and `MpiCollective` on MPI (feature `mpi`: one peer per process, groups as
//!   communicators of their own, [`GroupCollective`]); [`Group`] runs all-gather, all-to-all
//!   and reduce-scatter among a subset of peers, natively or on world all-reduces; a [`Mesh`]
//!   arranges the peers as replicas × memory shards.
//! - [`ShardedValues`]: a [`ValueStore`](memory_layers_values::ValueStore) whose table is split by
//!   columns over a memory group; layers read it like a whole table. [`ShardedBackend`] is the
//!   backend extension behind it (forward with collectives, backward through autodiff).
//!
//! - [`node_config`] and [`run_orchestrator`]: several processes (nodes) in one run;
//!   [`launcher_rank`] and [`local_device`]: what an MPI launcher tells its processes.
//!
//! docs/parallel-memory.md draws the data flow and counts the bytes each step moves.

mod collective;
mod error;
mod group;
mod launcher;
mod mesh;
#[cfg(feature = "mpi")]
mod mpi;
mod nodes;
mod sharded;

pub use burn::collective::CollectiveConfig;
pub use collective::{BurnCollective, Collective, GroupCollective, WorldGroups};
pub use error::ParallelError;
pub use group::Group;
pub use launcher::{launcher_rank, local_device};
pub use mesh::Mesh;
#[cfg(feature = "mpi")]
pub use mpi::MpiCollective;
pub use nodes::{node_config, run_orchestrator};
pub use sharded::{ShardedBackend, ShardedValues};
