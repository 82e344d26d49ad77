//! [`Collective`] on MPI (feature `mpi`): one peer per process, as `mpirun` or `srun` start
//! them, over the system's Open MPI or MPICH (rsmpi). Groups are MPI communicators of their
//! own (`MPI_Comm_split`), and the group operations are MPI's: `Allgather`, `Alltoall`,
//! `Reduce_scatter_block`, `Allreduce` and `Allgatherv` among the group's members only.
//!
//! rsmpi's communicators are neither `Send` nor `Sync` (they hold raw MPI handles), and the
//! peers of a process may call from any thread. So one thread owns MPI: it initialises it,
//! holds the world and every communicator split from it, runs the operations in the order
//! they arrive, and finalises MPI when the collective is dropped. Peers reach it through a
//! channel; no unsafe code is needed. Tensors travel through host memory as `f32` on every
//! backend (a GPU peer copies to the host and back: the cost is written in
//! docs/parallel-memory.md).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use self::worker::{Op, Worker, failed};
use crate::ParallelError;
use crate::collective::{Collective, GroupCollective};

mod worker;

/// A tensor's values on the host as `f32`, with its shape and type.
fn to_host<B: Backend>(tensor: FloatTensor<B>) -> (Vec<usize>, DType, Vec<f32>) {
    let data = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(tensor)).into_data();
    let (shape, dtype) = (data.shape.to_vec(), data.dtype);
    let values = data
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32");
    (shape, dtype, values)
}

/// Host values back on `device` as a tensor of `shape` and `dtype`.
fn from_host<B: Backend>(
    values: Vec<f32>,
    shape: Vec<usize>,
    dtype: DType,
    device: &B::Device,
) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(values, shape).convert_dtype(dtype), device)
}

/// The sum of `tensor` (any shape) over the members of communicator `comm`.
fn all_reduce_on<B: Backend>(
    worker: &Worker,
    comm: usize,
    tensor: FloatTensor<B>,
) -> Result<FloatTensor<B>, ParallelError> {
    let device = B::float_device(&tensor);
    let (shape, dtype, values) = to_host::<B>(tensor);
    let (_, sum) = worker.call(comm, Op::AllReduce, values)?;
    Ok(from_host::<B>(sum, shape, dtype, &device))
}

/// [`Collective`] of this process's one peer in an MPI job: rank and world size from the
/// launcher.
pub struct MpiCollective<B: Backend> {
    worker: Arc<Worker>,
    _backend: PhantomData<B>,
}

impl<B: Backend> std::fmt::Debug for MpiCollective<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiCollective")
            .field("rank", &self.worker.rank)
            .field("world", &self.worker.world)
            .finish()
    }
}

impl<B: Backend> MpiCollective<B> {
    /// Initialises MPI (once per process) and joins its world.
    pub fn init() -> Result<Self, ParallelError> {
        Ok(Self {
            worker: Arc::new(Worker::start()?),
            _backend: PhantomData,
        })
    }
}

impl<B: Backend> MpiCollective<B> {
    /// Ends every process of the job with exit code `code` (`MPI_Abort`): what a rank that
    /// failed does, so that no other rank waits for it in a collective.
    pub fn abort(&self, code: i32) -> ! {
        let _ = self.worker.call(0, Op::Abort(code), Vec::new());
        // MPI_Abort does not return; should it, this process ends at least.
        std::process::exit(code)
    }
}

impl<B: Backend> Collective<B> for MpiCollective<B> {
    fn rank(&self) -> usize {
        self.worker.rank
    }

    fn world(&self) -> usize {
        self.worker.world
    }

    fn all_reduce(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError> {
        all_reduce_on::<B>(&self.worker, 0, tensor)
    }

    /// The ranks other than 0 receive an `f32` tensor on their backend's default device.
    fn broadcast(&self, tensor: Option<FloatTensor<B>>) -> Result<FloatTensor<B>, ParallelError> {
        let (shape, dtype, values, device) = match tensor {
            Some(t) => {
                let device = B::float_device(&t);
                let (shape, dtype, values) = to_host::<B>(t);
                (shape, dtype, values, device)
            }
            None => (Vec::new(), DType::F32, Vec::new(), Default::default()),
        };
        let (shape, values) = self.worker.call(0, Op::Broadcast(shape), values)?;
        Ok(from_host::<B>(values, shape, dtype, &device))
    }

    /// Bytes this process has handed to MPI, by operation (`all_reduce`, `all_gather`, …):
    /// what its collectives sent, not counting MPI's own forwarding.
    fn traffic(&self) -> Option<BTreeMap<&'static str, u64>> {
        Some(
            self.worker
                .traffic
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    fn split(
        &self,
        partition: &[Vec<usize>],
    ) -> Result<Option<Arc<dyn GroupCollective<B>>>, ParallelError> {
        let rank = self.rank();
        let (color, members) = partition
            .iter()
            .enumerate()
            .find(|(_, g)| g.contains(&rank))
            .ok_or_else(|| ParallelError::Layout(format!("rank {rank} is in no group")))?;
        let key = members.iter().position(|&m| m == rank).expect("found");
        let (_, index) = self.worker.call(0, Op::Split { color, key }, Vec::new())?;
        Ok(Some(Arc::new(MpiGroup::<B> {
            worker: self.worker.clone(),
            comm: index[0] as usize,
            size: members.len(),
            _backend: PhantomData,
        })))
    }
}

/// One group's MPI communicator.
struct MpiGroup<B: Backend> {
    worker: Arc<Worker>,
    comm: usize,
    size: usize,
    _backend: PhantomData<B>,
}

impl<B: Backend> MpiGroup<B> {
    /// Runs `op` on a `[R, C]` tensor; the result has `rows(R)` rows.
    fn rows(
        &self,
        op: Op,
        tensor: FloatTensor<B>,
        rows: impl Fn(usize) -> usize,
    ) -> Result<FloatTensor<B>, ParallelError> {
        let device = B::float_device(&tensor);
        let (shape, dtype, values) = to_host::<B>(tensor);
        let [r, c] = shape[..] else {
            return Err(failed(
                op.name(),
                format!("expects [rows, columns], got {shape:?}"),
            ));
        };
        let (_, out) = self.worker.call(self.comm, op, values)?;
        Ok(from_host::<B>(out, vec![rows(r), c], dtype, &device))
    }
}

impl<B: Backend> GroupCollective<B> for MpiGroup<B> {
    fn all_gather(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError> {
        self.rows(Op::AllGather, tensor, |r| r * self.size)
    }

    fn all_to_all(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError> {
        self.rows(Op::AllToAll, tensor, |r| r)
    }

    fn reduce_scatter(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError> {
        self.rows(Op::ReduceScatter, tensor, |r| r / self.size)
    }

    fn all_reduce(&self, tensor: FloatTensor<B>) -> Result<FloatTensor<B>, ParallelError> {
        all_reduce_on::<B>(&self.worker, self.comm, tensor)
    }

    fn all_gather_rows(
        &self,
        tensor: FloatTensor<B>,
        counts: &[usize],
    ) -> Result<FloatTensor<B>, ParallelError> {
        let device = B::float_device(&tensor);
        let (shape, dtype, values) = to_host::<B>(tensor);
        let c = shape.get(1).copied().unwrap_or(1);
        let values_per_member = counts.iter().map(|&n| n * c).collect();
        let (_, out) = self
            .worker
            .call(self.comm, Op::AllGatherV(values_per_member), values)?;
        let rows = counts.iter().sum();
        Ok(from_host::<B>(out, vec![rows, c], dtype, &device))
    }
}
