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
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::{Color, Communicator as _, SimpleCommunicator};
use mpi::traits::*;

use crate::ParallelError;
use crate::collective::{Collective, GroupCollective};

/// One MPI operation on communicator `comm` (0: the world).
enum Op {
    AllReduce,
    /// From the communicator's rank 0; the others pass nothing and learn the shape.
    Broadcast(Vec<usize>),
    AllGather,
    AllToAll,
    ReduceScatter,
    /// Every member's own number of values.
    AllGatherV(Vec<usize>),
    /// Joins the communicator of `color`, ranked by `key`; replies with its index.
    Split {
        color: usize,
        key: usize,
    },
    /// Ends every process of the job with this exit code (`MPI_Abort`); never replies.
    Abort(i32),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::AllReduce => "all_reduce",
            Op::Broadcast(_) => "broadcast",
            Op::AllGather => "all_gather",
            Op::AllToAll => "all_to_all",
            Op::ReduceScatter => "reduce_scatter",
            Op::AllGatherV(_) => "all_gather_v",
            Op::Split { .. } => "split",
            Op::Abort(_) => "abort",
        }
    }
}

/// What an operation returns: a shape (broadcast), the values, or a communicator's index.
type Reply = Result<(Vec<usize>, Vec<f32>), String>;

struct Request {
    comm: usize,
    op: Op,
    data: Vec<f32>,
    reply: Sender<Reply>,
}

/// The thread that owns MPI, and the channel to it.
struct Worker {
    requests: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    rank: usize,
    world: usize,
    /// Bytes this process handed to MPI, by operation.
    traffic: Mutex<BTreeMap<&'static str, u64>>,
}

impl Worker {
    fn start() -> Result<Self, ParallelError> {
        let (requests, inbox) = channel::<Request>();
        let (ready, started) = channel();
        let thread = std::thread::Builder::new()
            .name("mpi".into())
            .spawn(move || serve(inbox, ready))
            .map_err(|e| failed("initialize", e))?;
        let (rank, world) = started
            .recv()
            .map_err(|e| failed("initialize", e))?
            .map_err(|e| failed("initialize", e))?;
        Ok(Self {
            requests: Mutex::new(Some(requests)),
            thread: Mutex::new(Some(thread)),
            rank,
            world,
            traffic: Mutex::new(BTreeMap::new()),
        })
    }

    fn call(
        &self,
        comm: usize,
        op: Op,
        data: Vec<f32>,
    ) -> Result<(Vec<usize>, Vec<f32>), ParallelError> {
        let name = op.name();
        *self
            .traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default() += 4 * data.len() as u64;
        let (reply, answer) = channel();
        let sent = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok_or_else(|| failed(name, "MPI was finalised"))?
            .send(Request {
                comm,
                op,
                data,
                reply,
            });
        sent.map_err(|e| failed(name, e))?;
        answer
            .recv()
            .map_err(|e| failed(name, e))?
            .map_err(|e| failed(name, e))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which finalises MPI.
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// The MPI thread: initialise, answer requests in order, finalise.
fn serve(inbox: Receiver<Request>, ready: Sender<Result<(usize, usize), String>>) {
    // FUNNELED: the process has other threads (rayon's, the peers'), but only this one
    // calls MPI.
    let Some((universe, level)) = mpi::initialize_with_threading(Threading::Funneled) else {
        let _ = ready.send(Err("MPI is already initialised in this process".into()));
        return;
    };
    if level == Threading::Single {
        let _ = ready.send(Err(format!(
            "this MPI gives thread level {level:?}; FUNNELED or higher is needed"
        )));
        return;
    }
    let world = universe.world();
    let _ = ready.send(Ok((world.rank() as usize, world.size() as usize)));
    let mut comms = vec![world];
    for request in inbox {
        let result = run(&mut comms, request.comm, request.op, request.data);
        let _ = request.reply.send(result);
    }
}

fn run(comms: &mut Vec<SimpleCommunicator>, comm: usize, op: Op, data: Vec<f32>) -> Reply {
    let c = comms
        .get(comm)
        .ok_or_else(|| format!("no communicator {comm}"))?;
    let size = c.size() as usize;
    let out = match op {
        Op::AllReduce => {
            let mut out = vec![0f32; data.len()];
            c.all_reduce_into(&data[..], &mut out[..], SystemOperation::sum());
            (Vec::new(), out)
        }
        Op::Broadcast(shape) => {
            let root = c.process_at_rank(0);
            let mut dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            let mut rank = dims.len() as u64;
            root.broadcast_into(&mut rank);
            dims.resize(rank as usize, 0);
            root.broadcast_into(&mut dims[..]);
            let dims: Vec<usize> = dims.into_iter().map(|d| d as usize).collect();
            let mut out = data;
            out.resize(dims.iter().product(), 0.0);
            root.broadcast_into(&mut out[..]);
            (dims, out)
        }
        Op::AllGather => {
            let mut out = vec![0f32; data.len() * size];
            c.all_gather_into(&data[..], &mut out[..]);
            (Vec::new(), out)
        }
        Op::AllToAll => {
            if !data.len().is_multiple_of(size) {
                return Err(format!(
                    "{} values do not split into {size} parts",
                    data.len()
                ));
            }
            let mut out = vec![0f32; data.len()];
            c.all_to_all_into(&data[..], &mut out[..]);
            (Vec::new(), out)
        }
        Op::ReduceScatter => {
            if !data.len().is_multiple_of(size) {
                return Err(format!(
                    "{} values do not split into {size} blocks",
                    data.len()
                ));
            }
            let mut out = vec![0f32; data.len() / size];
            c.reduce_scatter_block_into(&data[..], &mut out[..], SystemOperation::sum());
            (Vec::new(), out)
        }
        Op::AllGatherV(counts) => {
            let total: usize = counts.iter().sum();
            let mut displs = Vec::with_capacity(counts.len());
            let mut at = 0i32;
            for &n in &counts {
                displs.push(at);
                at += n as i32;
            }
            let counts: Vec<i32> = counts.iter().map(|&n| n as i32).collect();
            let mut out = vec![0f32; total];
            let mut partition = PartitionMut::new(&mut out[..], counts, displs);
            c.all_gather_varcount_into(&data[..], &mut partition);
            (Vec::new(), out)
        }
        Op::Abort(code) => c.abort(code),
        Op::Split { color, key } => {
            let sub = c
                .split_by_color_with_key(Color::with_value(color as i32), key as i32)
                .ok_or("MPI_Comm_split gave no communicator")?;
            comms.push(sub);
            (Vec::new(), vec![(comms.len() - 1) as f32])
        }
    };
    Ok(out)
}

fn failed(op: &'static str, error: impl std::fmt::Display) -> ParallelError {
    ParallelError::Collective {
        op,
        message: error.to_string(),
    }
}

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
