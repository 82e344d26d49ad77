//! How a run trains: alone on one device ([`train`]), or as every rank of a parallel run, one
//! thread each ([`train_parallel`]).

mod parallel;
mod single;

pub use parallel::train_parallel;
pub use single::train;
