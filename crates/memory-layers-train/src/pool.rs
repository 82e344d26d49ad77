//! Where model compute runs on the CPU.

/// Runs `work` on a thread of rayon's global pool (inline when already on one).
///
/// Flex splits each tensor operation over that pool. Called from any other thread, every
/// operation hands its work to the pool and sleeps until it is done: a sleep and a wake-up
/// per operation, thousands per step of a small model (measured: a fifth of the `tiny`
/// experiments' step). Called from a pool thread, the operation's caller works on a share
/// itself and the other threads steal the rest.
pub(crate) fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}
