use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use burn::collective::reset_collective;
use burn::tensor::backend::Backend;
use memory_layers_parallel::{BurnCollective, CollectiveConfig};

/// burn-collective keeps one server per backend type, so tests that use it run one at a
/// time: hold this guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `peer(rank, collective)` on `world` scoped threads (so it may borrow), each
/// registered with burn-collective on the default device, and returns their results in rank
/// order. A panicking peer panics here.
pub fn run_peers<B: Backend, T: Send>(
    world: usize,
    peer: impl Fn(usize, Arc<BurnCollective<B>>) -> T + Sync,
) -> Vec<T> {
    reset_collective::<B>();
    let peer = &peer;
    thread::scope(|scope| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                scope.spawn(move || {
                    let config = CollectiveConfig::default().with_num_devices(world);
                    let collective =
                        BurnCollective::register(rank, &Default::default(), config, world).unwrap();
                    peer(rank, Arc::new(collective))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
