//! How a run trains: alone on one device ([`train`]), as every rank of a parallel run, one
//! thread each ([`train_parallel`]), or as one rank among processes ([`train_peer`]: MPI).

mod parallel;
mod single;

pub use parallel::{train_parallel, train_peer};
pub use single::train;
