//! The thread that owns MPI: it initialises it, holds the world and every communicator split
//! from it, runs the operations in the order they arrive and finalises MPI when dropped.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::{Color, Communicator as _, SimpleCommunicator};
use mpi::traits::*;

use crate::ParallelError;

/// One MPI operation on communicator `comm` (0: the world).
pub(super) enum Op {
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
    pub(super) fn name(&self) -> &'static str {
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
pub(super) struct Worker {
    requests: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub(super) rank: usize,
    pub(super) world: usize,
    /// Bytes this process handed to MPI, by operation.
    pub(super) traffic: Mutex<BTreeMap<&'static str, u64>>,
}

impl Worker {
    pub(super) fn start() -> Result<Self, ParallelError> {
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

    pub(super) fn call(
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

pub(super) fn failed(op: &'static str, error: impl std::fmt::Display) -> ParallelError {
    ParallelError::Collective {
        op,
        message: error.to_string(),
    }
}
