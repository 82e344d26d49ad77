//! Where model compute runs on the CPU.

use std::any::TypeId;
use std::sync::{Mutex, TryLockError};

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;

/// Held while a job of [`on_pool`] runs on rayon's global pool.
static POOL_JOB: Mutex<()> = Mutex::new(());

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
        one_job_on_pool(&POOL_JOB, work)
    } else {
        work()
    }
}

/// `work` as the one job of `lock` on rayon's pool, or on the calling thread when another
/// runs or this thread is a pool thread already.
///
/// One at a time: a pool thread that waits inside an operation runs queued jobs, so a
/// second training queued beside the first could run inside the first's backward pass and
/// wait for the autodiff graph's lock that the first holds (seen: two finetuning tests hung).
/// The operations' own jobs hold no lock and are safe to run anywhere.
fn one_job_on_pool<R: Send>(lock: &Mutex<()>, work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return work();
    }
    let _one = match lock.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return work(),
    };
    rayon::scope(|_| work())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_a_pool_thread_one_job_at_a_time() {
        let on_pool = || rayon::current_thread_index().is_some();
        // The test harness's threads are not rayon's.
        assert!(!on_pool());
        let lock = Mutex::new(());
        assert!(one_job_on_pool(&lock, on_pool));
        // Nested: inline on the pool thread, the lock not taken again.
        assert!(one_job_on_pool(&lock, || one_job_on_pool(&lock, on_pool)));
        // Another job running: this one stays on its caller.
        let _running = lock.lock().unwrap();
        assert!(!one_job_on_pool(&lock, on_pool));
    }
}
