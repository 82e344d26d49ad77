//! The group operations parallel memory needs, built on a [`Collective`].
//!
//! A [`Group`], one group of a partition of the world, runs all-gather, all-to-all,
//! reduce-scatter, all-reduce and sparse row sums among its members. Where the transport has
//! sub-communicators (MPI: [`Collective::split`]), each is the transport's own operation among
//! the members. burn-collective 0.21 has none (all-reduce, reduce and broadcast over every
//! registered peer): there each operation is ONE world all-reduce of a buffer in which each
//! peer (or each group) fills its own slot, so every peer of the world takes part in every
//! group operation (all groups of the partition act at the same time in SPMD training). The
//! traffic per call of that path is written on each method; it moves `world/size` times more
//! than the native one. A partition of single peers needs no communication at all.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorPrimitive};
use memory_layers_values::{RowGrads, ValueBackend};

use crate::{Collective, GroupCollective, ParallelError};

/// Int values travel as two floats (`hi·2¹² + lo`), each exact in f32 below 2²⁴: indices up to
/// 2³⁶.
const INT_SPLIT: i64 = 1 << 12;

/// `[R, C]` ints as `[R, 2C]` floats: the high parts, then the low parts.
fn ints_to_floats<B: Backend>(ints: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let hi = ints.clone().div_scalar(INT_SPLIT);
    let lo = ints - hi.clone().mul_scalar(INT_SPLIT);
    Tensor::cat(vec![hi.float(), lo.float()], 1)
}

/// The inverse of [`ints_to_floats`].
fn floats_to_ints<B: Backend>(floats: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let [rows, c2] = floats.dims();
    let c = c2 / 2;
    let hi = floats.clone().slice([0..rows, 0..c]).round().int();
    let lo = floats.slice([0..rows, c..c2]).round().int();
    hi.mul_scalar(INT_SPLIT) + lo
}

/// Peers that exchange data among themselves: the `P` shards of one replica (a memory group),
/// the replicas of one shard, or the whole world. Groups come as a partition of the world:
/// every peer is in exactly one group of the partition, and all groups of a partition run the
/// same operation at the same time (SPMD).
#[derive(Clone)]
pub struct Group<B: Backend> {
    collective: Arc<dyn Collective<B>>,
    /// The group's own communicator, where the transport has them.
    native: Option<Arc<dyn GroupCollective<B>>>,
    members: Vec<usize>,
    position: usize,
    /// This group's index in its partition, and how many groups the partition has.
    slot: usize,
    slots: usize,
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
    /// This peer's group in `partition`: lists of world ranks (each in group order) that
    /// together hold every rank exactly once.
    pub fn new(
        collective: Arc<dyn Collective<B>>,
        partition: Vec<Vec<usize>>,
    ) -> Result<Self, ParallelError> {
        let (rank, world) = (collective.rank(), collective.world());
        let mut seen = vec![0usize; world];
        for &m in partition.iter().flatten() {
            if m >= world {
                return Err(ParallelError::Layout(format!(
                    "groups {partition:?} name rank {m}, outside a world of {world}"
                )));
            }
            seen[m] += 1;
        }
        if seen.iter().any(|&n| n != 1) {
            return Err(ParallelError::Layout(format!(
                "groups {partition:?} must hold every rank below {world} exactly once"
            )));
        }
        let slots = partition.len();
        let native = if slots == world {
            None
        } else {
            collective.split(&partition)?
        };
        let (slot, members) = partition
            .into_iter()
            .enumerate()
            .find(|(_, g)| g.contains(&rank))
            .expect("every rank is in one group");
        let position = members
            .iter()
            .position(|&m| m == rank)
            .expect("the group holds this rank");
        Ok(Self {
            collective,
            native,
            members,
            position,
            slot,
            slots,
        })
    }

    /// The whole world as one group.
    pub fn world(collective: Arc<dyn Collective<B>>) -> Self {
        let world = collective.world();
        Self::new(collective, vec![(0..world).collect()]).expect("the world is a partition")
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
        if self.solo() {
            return Ok(tensor);
        }
        if let Some(native) = &self.native {
            return Ok(float(native.all_gather(primitive(tensor))?));
        }
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
        Ok(floats_to_ints(self.all_gather(ints_to_floats(tensor))?))
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
        if self.solo() {
            return Ok(parts);
        }
        if let Some(native) = &self.native {
            let received = float::<B, 2>(native.all_to_all(primitive(Tensor::cat(parts, 0)))?);
            return Ok((0..size)
                .map(|j| received.clone().slice([j * r..(j + 1) * r, 0..c]))
                .collect());
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
        if let Some(native) = &self.native {
            return Ok(float(native.reduce_scatter(primitive(tensor))?));
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

    /// Element-wise sum over the members. One world all-reduce of `slots·bytes` (the
    /// partition's groups side by side).
    pub fn all_reduce<const D: usize>(
        &self,
        tensor: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, ParallelError> {
        if self.solo() {
            return Ok(tensor);
        }
        if let Some(native) = &self.native {
            return Ok(float(native.all_reduce(primitive(tensor))?));
        }
        let shape = tensor.shape();
        let n = shape.num_elements();
        let flat = tensor.reshape([1, n]);
        let sum = if self.slots == 1 {
            self.world_sum(flat)?
        } else {
            let buffer = Tensor::zeros([self.slots, n], &flat.device())
                .slice_assign([self.slot..self.slot + 1, 0..n], flat);
            self.world_sum(buffer)?
                .slice([self.slot..self.slot + 1, 0..n])
        };
        Ok(sum.reshape(shape))
    }

    /// Sums sparse row gradients over the members: every member gets the rows any member
    /// touched, ids distinct and ascending, summed in member order (so all members get the same
    /// bits). `width` and `device` describe the rows when this member has none. One world
    /// all-reduce of the counts, then an [`all_gather`](Self::all_gather) of
    /// `max_count × (width + 2)` values per peer.
    pub fn sum_rows(
        &self,
        grads: Option<RowGrads<B>>,
        width: usize,
        device: &B::Device,
    ) -> Result<Option<RowGrads<B>>, ParallelError>
    where
        B: ValueBackend,
    {
        if self.solo() {
            return Ok(grads);
        }
        let count = grads.as_ref().map_or(0, |g| g.ids.dims()[0]);
        let counts = self.counts(count, device)?;
        let most = counts.iter().copied().max().unwrap_or(0);
        if most == 0 {
            return Ok(None);
        }
        let columns = width + 2;
        let block =
            grads.map(|g| Tensor::cat(vec![ints_to_floats(g.ids.reshape([count, 1])), g.rows], 1));
        let counts: Vec<usize> = self.members.iter().map(|&m| counts[m]).collect();
        // Member j's rows start at `starts[j]` of what the group gathered: each member's rows
        // as they are on the native path, blocks padded to the largest count on the slot path.
        let (gathered, starts): (Tensor<B, 2>, Vec<usize>) = match &self.native {
            Some(native) => {
                let starts = counts
                    .iter()
                    .scan(0, |at, &n| Some(std::mem::replace(at, *at + n)))
                    .collect();
                let block = block.unwrap_or_else(|| Tensor::zeros([0, columns], device));
                let gathered = native.all_gather_rows(primitive(block), &counts)?;
                (float(gathered), starts)
            }
            None => {
                let padded = match block {
                    None => Tensor::zeros([most, columns], device),
                    Some(block) if count < most => {
                        let padding = Tensor::zeros([most - count, columns], device);
                        Tensor::cat(vec![block, padding], 0)
                    }
                    Some(block) => block,
                };
                let gathered = self.all_gather(padded)?;
                (gathered, (0..counts.len()).map(|j| j * most).collect())
            }
        };
        let parts = counts
            .iter()
            .zip(starts)
            .filter(|&(&n, _)| n > 0)
            .map(|(&n, start)| {
                let rows = start..start + n;
                RowGrads {
                    ids: floats_to_ints(gathered.clone().slice([rows.clone(), 0..2])).reshape([n]),
                    rows: gathered.clone().slice([rows, 2..columns]),
                }
            })
            .collect();
        Ok(RowGrads::coalesce(parts))
    }

    /// Every world rank's `count`: all of them on the slot path (one world all-reduce), this
    /// group's members' on the native path (the others zero).
    fn counts(&self, count: usize, device: &B::Device) -> Result<Vec<usize>, ParallelError> {
        let (rank, world) = (self.collective.rank(), self.collective.world());
        let values: Vec<f32> = match &self.native {
            Some(native) => {
                let mine = Tensor::<B, 2>::from_floats([[count as f32]], device);
                let gathered = float::<B, 2>(native.all_gather(primitive(mine))?);
                let by_member: Vec<f32> = gathered.into_data().iter::<f32>().collect();
                let mut all = vec![0.0; world];
                for (&m, &c) in self.members.iter().zip(&by_member) {
                    all[m] = c;
                }
                all
            }
            None => {
                let mine = Tensor::zeros([world, 1], device).slice_assign(
                    [rank..rank + 1, 0..1],
                    Tensor::from_floats([[count as f32]], device),
                );
                self.world_sum(mine)?.into_data().iter::<f32>().collect()
            }
        };
        Ok(values.into_iter().map(|c| c as usize).collect())
    }

    /// Every group of the partition is one peer: group operations need no communication.
    fn solo(&self) -> bool {
        self.slots == self.collective.world()
    }

    fn world_sum(&self, buffer: Tensor<B, 2>) -> Result<Tensor<B, 2>, ParallelError> {
        let sum = self
            .collective
            .all_reduce(buffer.into_primitive().tensor())?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(sum)))
    }
}

fn primitive<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
) -> burn::tensor::ops::FloatTensor<B> {
    tensor.into_primitive().tensor()
}

fn float<B: Backend, const D: usize>(tensor: burn::tensor::ops::FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}
