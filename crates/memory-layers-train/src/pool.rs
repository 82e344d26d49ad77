//! Where model compute runs on the CPU.

use std::any::TypeId;
use std::sync::{Mutex, OnceLock, TryLockError};

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use rayon::{ThreadPool, ThreadPoolBuilder};

/// Held while a job of [`on_pool`] runs on the training pool.
static POOL_JOB: Mutex<()> = Mutex::new(());

/// Runs `work` on a thread of the training pool when `B` is Flex (inline when already on a
/// rayon thread), on the calling thread otherwise.
///
/// Flex splits each tensor operation over rayon's threads. Called from any other thread, every
/// operation hands its work to the pool and sleeps until it is done: a sleep and a wake-up
/// per operation, thousands per step of a small model (measured: a fifth of the experiments'
/// `tiny` Memory+ step). Called from a pool thread, the operation's caller works on a share
/// itself and the other threads steal the rest. A GPU backend queues on the calling
/// thread's stream, so its work stays where it was called.
pub(crate) fn on_pool<B: Backend, R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match is_flex::<B>().then(training_pool).flatten() {
        Some(pool) => one_job_on_pool(pool, &POOL_JOB, work),
        None => work(),
    }
}

/// Whether `B` is Flex, with or without autodiff (either checkpointing strategy).
fn is_flex<B: 'static>() -> bool {
    [
        TypeId::of::<Flex>(),
        TypeId::of::<Autodiff<Flex>>(),
        TypeId::of::<Autodiff<Flex, BalancedCheckpointing>>(),
    ]
    .contains(&TypeId::of::<B>())
}

/// A pool of rayon threads for training jobs, one per core like rayon's global pool, but not
/// that pool: a training that runs outside it (on its caller's thread, while another has the
/// pool) hands its operations to the global pool while it holds the autodiff graph's lock.
/// Had the job queued on the global pool, a thread working on such an operation could take
/// the job up while waiting for its share and block on that lock beneath the very work the
/// lock's holder waits for (seen: two finetuning tests hung). Its threads get a main thread's
/// 8 MiB of stack (rayon's default is 2 MiB) as a precaution, no overflow having been seen:
/// the training loop runs on one of them. `None` where no thread could be started; the work
/// then stays on its caller.
fn training_pool() -> Option<&'static ThreadPool> {
    static POOL: OnceLock<Option<ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        ThreadPoolBuilder::new()
            .thread_name(|i| format!("train-{i}"))
            .stack_size(8 << 20)
            .build()
            .ok()
    })
    .as_ref()
}

/// `work` as the one job of `lock` on `pool`, or on the calling thread when another runs or
/// this thread is a rayon thread already.
///
/// One at a time: a pool thread that waits inside an operation runs queued jobs, so a
/// second training queued beside the first could run inside the first's backward pass and
/// wait for the autodiff graph's lock that the first holds. The operations' own jobs hold no
/// lock and are safe to run anywhere.
fn one_job_on_pool<R: Send>(
    pool: &ThreadPool,
    lock: &Mutex<()>,
    work: impl FnOnce() -> R + Send,
) -> R {
    if rayon::current_thread_index().is_some() {
        return work();
    }
    let _one = match lock.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return work(),
    };
    pool.install(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_runs_on_the_pool_with_and_without_autodiff_and_checkpointing() {
        assert!(is_flex::<Flex>());
        assert!(is_flex::<Autodiff<Flex>>());
        assert!(is_flex::<Autodiff<Flex, BalancedCheckpointing>>());
        assert!(!is_flex::<f32>());
    }

    #[test]
    fn work_runs_on_the_pool_one_job_at_a_time() {
        let pool = ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // On this pool: not rayon's global one, whose threads serve the operations of a
        // training outside it.
        let on_pool = || pool.current_thread_index().is_some();
        // The test harness's threads are not rayon's.
        assert!(!on_pool());
        let lock = Mutex::new(());
        assert!(one_job_on_pool(&pool, &lock, on_pool));
        // Nested: inline on the pool thread, the lock not taken again.
        assert!(one_job_on_pool(&pool, &lock, || one_job_on_pool(
            &pool, &lock, on_pool
        )));
        // Another job running: this one stays on its caller.
        let _running = lock.lock().unwrap();
        assert!(!one_job_on_pool(&pool, &lock, on_pool));
    }
}
