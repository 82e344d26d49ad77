//! The peers of a parallel run as a mesh: `replicas × shards`.

use std::sync::Arc;

use burn::tensor::backend::Backend;

use crate::{Collective, Group, ParallelError};

/// `world = replicas × shards` peers, rank `= replica · shards + shard`: each memory group
/// (consecutive ranks, one node's fast links in practice) holds one copy of the value pool
/// split on columns over its `shards` members; the peers holding the same columns in different
/// memory groups are that shard's replicas and average its gradient.
#[derive(Debug, Clone)]
pub struct Mesh<B: Backend> {
    world: Group<B>,
    memory: Group<B>,
    replicas: Group<B>,
}

impl<B: Backend> Mesh<B> {
    /// This peer's place in the mesh with memory groups of `shards` peers.
    pub fn new(collective: Arc<dyn Collective<B>>, shards: usize) -> Result<Self, ParallelError> {
        let world = collective.world();
        if shards == 0 || !world.is_multiple_of(shards) {
            return Err(ParallelError::Layout(format!(
                "memory groups of {shards} peers do not divide a world of {world}"
            )));
        }
        let replicas = world / shards;
        let memory = (0..replicas)
            .map(|r| (r * shards..(r + 1) * shards).collect())
            .collect();
        let copies = (0..shards)
            .map(|s| (0..replicas).map(|r| r * shards + s).collect())
            .collect();
        Ok(Self {
            world: Group::world(collective.clone()),
            memory: Group::new(collective.clone(), memory)?,
            replicas: Group::new(collective, copies)?,
        })
    }

    /// Every peer.
    pub fn world(&self) -> &Group<B> {
        &self.world
    }

    /// The peers sharing one copy of the value pool, each holding `1/shards` of its columns.
    pub fn memory(&self) -> &Group<B> {
        &self.memory
    }

    /// The peers holding the same columns of the pool (one per memory group).
    pub fn replicas(&self) -> &Group<B> {
        &self.replicas
    }
}
