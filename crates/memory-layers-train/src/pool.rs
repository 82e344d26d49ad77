//! Where model compute runs on the CPU.

use std::any::TypeId;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;

/// Runs `work` on a thread of rayon's pool when `B` is Flex (inline when already on a pool
/// thread), on the calling thread otherwise.
///
/// Flex splits each tensor operation over rayon's pool. Called from any other thread, every
/// operation hands its work to the pool and sleeps until it is done: a sleep and a wake-up
/// per operation, thousands per step of a small model (measured: a fifth of the experiments'
/// `tiny` Memory+ step). Called from a pool thread, the operation's caller works on a share
/// itself and the other threads steal the rest. A GPU backend queues on the calling
/// thread's stream, so its work stays where it was called.
pub(crate) fn on_pool<B: Backend, R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let flex = [TypeId::of::<Flex>(), TypeId::of::<Autodiff<Flex>>()];
    if flex.contains(&TypeId::of::<B>()) {
        rayon::scope(|_| work())
    } else {
        work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_work_runs_on_a_pool_thread() {
        // The test harness's threads are not rayon's.
        assert_eq!(rayon::current_thread_index(), None);
        assert!(on_pool::<Flex, _>(
            || rayon::current_thread_index().is_some()
        ));
        assert!(on_pool::<Autodiff<Flex>, _>(|| {
            rayon::current_thread_index().is_some()
        }));
    }
}
