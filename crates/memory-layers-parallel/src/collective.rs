//! One collective trait for parallel memory and data-parallel training, the group
//! operations a transport with sub-communicators offers natively, and the burn-collective
//! implementation (all-reduce, broadcast over every registered peer; no sub-groups).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::ParallelError;

/// The collective operations of one peer among `world` peers. Every peer calls each operation
/// with tensors of the same shape, in the same order.
pub trait Collective<B: Backend>: Send + Sync {
    /// This peer's rank, `0..world`.
    fn rank(&self) -> usize;
    /// Number of peers.
    fn world(&self) -> usize;
    /// Element-wise sum over all peers. Ring all-reduce: about `2·bytes` sent per peer.
    fn all_reduce(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError>;
    /// Rank 0's tensor on every peer (`Some` on rank 0, `None` elsewhere): `bytes` per peer.
    fn broadcast(&self, tensor: Option<FloatTensor<B>>) -> Result<FloatTensor<B>, ParallelError>;
    /// The group of `partition` (lists of world ranks, each in group order) that holds this
    /// peer, as a communicator of its own where the transport has them (MPI); `None` where it
    /// has not, and [`Group`](crate::Group) builds the group operations from world
    /// all-reduces. Every peer calls it with the same partition, in the same order.
    fn split(
        &self,
        _partition: &[Vec<usize>],
    ) -> Result<Option<Arc<dyn GroupCollective<B>>>, ParallelError> {
        Ok(None)
    }
    /// Bytes this peer has handed to the transport so far, by operation, where the transport
    /// counts them (MPI).
    fn traffic(&self) -> Option<BTreeMap<&'static str, u64>> {
        None
    }
}

/// A collective with its sub-communicators hidden: groups run on slot buffers in world
/// all-reduces, as on burn-collective. For measuring, on one transport, what the groups' own
/// communicators save (`train --mpi-world-groups`), and for testing one path against the
/// other.
pub struct WorldGroups<B: Backend>(pub Arc<dyn Collective<B>>);

impl<B: Backend> Collective<B> for WorldGroups<B> {
    fn rank(&self) -> usize {
        self.0.rank()
    }

    fn world(&self) -> usize {
        self.0.world()
    }

    fn all_reduce(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError> {
        self.0.all_reduce(tensor)
    }

    fn broadcast(&self, tensor: Option<FloatTensor<B>>) -> Result<FloatTensor<B>, ParallelError> {
        self.0.broadcast(tensor)
    }

    fn traffic(&self) -> Option<BTreeMap<&'static str, u64>> {
        self.0.traffic()
    }
}

/// The operations of one group among its own members (a sub-communicator): each member
/// calls each operation with tensors of the same shape, in the same order. Tensors are
/// `[rows, columns]` unless said otherwise.
pub trait GroupCollective<B: Backend>: Send + Sync {
    /// Every member's `[R, C]` stacked in group order: `[size·R, C]`.
    fn all_gather(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError>;
    /// `[size·R, C]`: row block `j` goes to member `j`; returns the blocks received, block
    /// `j` from member `j`.
    fn all_to_all(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError>;
    /// `[size·R, C]` summed over the members; member `j` receives row block `j`: `[R, C]`.
    fn reduce_scatter(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError>;
    /// Element-wise sum over the members (any shape).
    fn all_reduce(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError>;
    /// Every member's `[counts[j], C]` stacked in group order: `[Σ counts, C]`.
    fn all_gather_rows(
        &self,
        tensor: FloatTensor<B>,
        counts: &[usize],
    ) -> Result<FloatTensor<B>, ParallelError>;
}

/// [`Collective`] on burn-collective: threads of one process share its local server;
/// processes on several nodes meet through the global settings of [`CollectiveConfig`]
/// (orchestrator and node addresses).
#[derive(Debug)]
pub struct BurnCollective<B: Backend> {
    peer: PeerId,
    world: usize,
    _backend: PhantomData<B>,
}

impl<B: Backend> BurnCollective<B> {
    /// Registers peer `rank` with burn-collective on `device`; `config` says how many peers
    /// there are (`with_num_devices`) and, for several nodes, where the orchestrator is.
    pub fn register(
        rank: usize,
        device: &B::Device,
        config: CollectiveConfig,
        world: usize,
    ) -> Result<Self, ParallelError> {
        if rank >= world {
            return Err(ParallelError::Layout(format!(
                "rank {rank} is outside a world of {world} peers"
            )));
        }
        collective::register::<B>(PeerId::from(rank), device.clone(), config)
            .map_err(|e| failed("register", e))?;
        Ok(Self {
            peer: PeerId::from(rank),
            world,
            _backend: PhantomData,
        })
    }

    /// Tells burn-collective this peer is done (every peer calls it before exiting).
    pub fn finish(self) -> Result<(), ParallelError> {
        collective::finish_collective::<B>(self.peer).map_err(|e| failed("finish", e))
    }
}

fn failed(op: &'static str, error: impl std::fmt::Debug) -> ParallelError {
    ParallelError::Collective {
        op,
        message: format!("{error:?}"),
    }
}

impl<B: Backend> Collective<B> for BurnCollective<B> {
    fn rank(&self) -> usize {
        self.peer.0 as usize
    }

    fn world(&self) -> usize {
        self.world
    }

    fn all_reduce(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError> {
        let shared = collective::all_reduce::<B>(self.peer, tensor, ReduceOperation::Sum)
            .map_err(|e| failed("all_reduce", e))?;
        private::<B>(shared)
    }

    fn broadcast(&self, tensor: Option<FloatTensor<B>>) -> Result<FloatTensor<B>, ParallelError> {
        let shared =
            collective::broadcast::<B>(self.peer, tensor).map_err(|e| failed("broadcast", e))?;
        private::<B>(shared)
    }
}

/// This peer's own copy of a collective's result, complete before the shared buffer is let go.
///
/// burn-collective hands every peer on one device the same result buffer. On CubeCL devices
/// each thread queues work on its own stream, and a tensor op may run in place once its handle
/// is the last one: a peer that dropped its handle with a read still queued could then see the
/// buffer after another peer changed it in place (a mean divided twice, seen on wgpu). So each
/// peer copies and waits for its copy before dropping its handle.
fn private<B: Backend>(shared: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError> {
    let device = B::float_device(&shared);
    // A second handle held until the copy is done: the handle given to the copy's op is let
    // go when the op is queued, and with it gone another peer's handle would be the last
    // one, free to change the buffer in place before this peer's queued copy has read it
    // (2 means in 5000 still came out wrong on lavapipe under load without this).
    let held = shared.clone();
    let copy = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(shared))
        .add_scalar(0.0)
        .into_primitive()
        .tensor();
    B::sync(&device).map_err(|e| failed("sync", e))?;
    drop(held);
    Ok(copy)
}
