//! One collective trait for parallel memory and data-parallel training, its burn-collective
//! implementation, and the group operations parallel memory needs built on it.
//!
//! burn-collective 0.21 offers all-reduce, reduce and broadcast over every registered peer (one
//! world, no sub-groups). A [`Group`] runs all-gather, all-to-all and reduce-scatter among its
//! members as ONE world all-reduce of a buffer in which each peer fills its own slot: every
//! peer of the world takes part in every group operation (all groups act at the same time in
//! SPMD training), and the buffer is world-sized. The traffic per call is written on each
//! method; a transport with sub-communicators (NCCL) would move `world/size` times less.

use std::marker::PhantomData;
use std::sync::Arc;

use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Int, Tensor, TensorPrimitive};

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
        collective::all_reduce::<B>(self.peer, tensor, ReduceOperation::Sum)
            .map_err(|e| failed("all_reduce", e))
    }

    fn broadcast(&self, tensor: Option<FloatTensor<B>>) -> Result<FloatTensor<B>, ParallelError> {
        collective::broadcast::<B>(self.peer, tensor).map_err(|e| failed("broadcast", e))
    }
}

/// Int values travel as two floats (`hi·2¹² + lo`), each exact in f32 below 2²⁴: indices up to
/// 2³⁶.
const INT_SPLIT: i64 = 1 << 12;

/// Peers that exchange data among themselves (a memory group: the `P` shards of one replica).
#[derive(Clone)]
pub struct Group<B: Backend> {
    collective: Arc<dyn Collective<B>>,
    members: Vec<usize>,
    position: usize,
}

impl<B: Backend> std::fmt::Debug for Group<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("members", &self.members)
            .field("position", &self.position)
            .finish()
    }
}

impl<B: Backend> Group<B> {
    /// The group of world ranks `members` (in group order), which must contain this peer.
    pub fn new(
        collective: Arc<dyn Collective<B>>,
        members: Vec<usize>,
    ) -> Result<Self, ParallelError> {
        let (rank, world) = (collective.rank(), collective.world());
        let distinct = members
            .iter()
            .enumerate()
            .all(|(i, m)| !members[..i].contains(m));
        if members.iter().any(|&m| m >= world) || !distinct {
            return Err(ParallelError::Layout(format!(
                "group {members:?} must list distinct ranks below the world size {world}"
            )));
        }
        let position = members.iter().position(|&m| m == rank).ok_or_else(|| {
            ParallelError::Layout(format!("rank {rank} is not in its group {members:?}"))
        })?;
        Ok(Self {
            collective,
            members,
            position,
        })
    }

    /// Members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// This peer's place in the group, `0..size`.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The underlying collective.
    pub fn collective(&self) -> &Arc<dyn Collective<B>> {
        &self.collective
    }

    /// Every member's `[R, C]` rows stacked in group order: `[size·R, C]`. One world
    /// all-reduce of `world·R·C` values.
    pub fn all_gather(&self, tensor: Tensor<B, 2>) -> Result<Tensor<B, 2>, ParallelError> {
        let [r, c] = tensor.dims();
        let (rank, world) = (self.collective.rank(), self.collective.world());
        let buffer = Tensor::zeros([world * r, c], &tensor.device())
            .slice_assign([rank * r..(rank + 1) * r, 0..c], tensor);
        let all = self.world_sum(buffer)?;
        Ok(Tensor::cat(
            self.members
                .iter()
                .map(|&m| all.clone().slice([m * r..(m + 1) * r, 0..c]))
                .collect(),
            0,
        ))
    }

    /// [`all_gather`](Self::all_gather) of int values (as two floats each; `|v| < 2³⁶`).
    pub fn all_gather_ints(
        &self,
        tensor: Tensor<B, 2, Int>,
    ) -> Result<Tensor<B, 2, Int>, ParallelError> {
        let [_, c] = tensor.dims();
        let hi = tensor.clone().div_scalar(INT_SPLIT);
        let lo = tensor - hi.clone().mul_scalar(INT_SPLIT);
        let gathered = self.all_gather(Tensor::cat(vec![hi.float(), lo.float()], 1))?;
        let [rows, _] = gathered.dims();
        let hi = gathered.clone().slice([0..rows, 0..c]).round().int();
        let lo = gathered.slice([0..rows, c..2 * c]).round().int();
        Ok(hi.mul_scalar(INT_SPLIT) + lo)
    }

    /// Sends `parts[j]` (all `[R, C]`) to member `j`; returns what each member sent to this
    /// one, in group order. One world all-reduce of `world·size·R·C` values.
    pub fn all_to_all(&self, parts: Vec<Tensor<B, 2>>) -> Result<Vec<Tensor<B, 2>>, ParallelError> {
        let size = self.size();
        if parts.len() != size {
            return Err(ParallelError::Layout(format!(
                "all_to_all needs one part per member ({size}), got {}",
                parts.len()
            )));
        }
        let [r, c] = parts[0].dims();
        if parts.iter().any(|p| p.dims() != [r, c]) {
            return Err(ParallelError::Layout(
                "all_to_all parts must have equal shapes".into(),
            ));
        }
        let (rank, world) = (self.collective.rank(), self.collective.world());
        let device = parts[0].device();
        // Slot (source rank, destination position) holds rows ((src·size + dst)·R ..).
        let mine = Tensor::cat(parts, 0);
        let start = rank * size * r;
        let buffer = Tensor::zeros([world * size * r, c], &device)
            .slice_assign([start..start + size * r, 0..c], mine);
        let all = self.world_sum(buffer)?;
        Ok(self
            .members
            .iter()
            .map(|&m| {
                let at = (m * size + self.position) * r;
                all.clone().slice([at..at + r, 0..c])
            })
            .collect())
    }

    /// Sums `tensor [size·R, C]` over the members; member `j` receives rows block `j`: `[R, C]`.
    /// Built on [`all_gather`](Self::all_gather): `world·size·R·C` values.
    pub fn reduce_scatter(&self, tensor: Tensor<B, 2>) -> Result<Tensor<B, 2>, ParallelError> {
        let [rows, c] = tensor.dims();
        let size = self.size();
        if !rows.is_multiple_of(size) {
            return Err(ParallelError::Layout(format!(
                "reduce_scatter needs rows ({rows}) divisible by the group size ({size})"
            )));
        }
        let r = rows / size;
        let gathered = self.all_gather(tensor)?;
        let block = self.position * r;
        Ok((0..size)
            .map(|m| {
                let at = m * rows + block;
                gathered.clone().slice([at..at + r, 0..c])
            })
            .reduce(|a, b| a + b)
            .expect("a group has a member"))
    }

    fn world_sum(&self, buffer: Tensor<B, 2>) -> Result<Tensor<B, 2>, ParallelError> {
        let sum = self
            .collective
            .all_reduce(buffer.into_primitive().tensor())?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(sum)))
    }
}
