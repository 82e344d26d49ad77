//! Training as every rank of a parallel run: one thread per rank, each registered with the
//! collectives on its device, running the loop on its share of the batch and of the pool.

use std::sync::Arc;

use memory_layers_parallel::{BurnCollective, Collective, CollectiveConfig};

use crate::run::{Run, TrainOptions};
use crate::train_loop::TrainSummary;
use crate::{Layout, Rank, TrainBackend, TrainConfig, TrainError};

/// [`train`](crate::train) on the `N` ranks of `layout`, one thread each on its device
/// (`devices[rank]`; the CPU's one device may repeat): data parallel over all of them, the
/// value pool sharded over memory groups of `P`. Checkpoints hold the whole model, so a run
/// resumes on any layout. Rank 0 writes the run directory.
pub fn train_parallel<B: TrainBackend>(
    config: TrainConfig,
    devices: &[B::Device],
    options: TrainOptions,
    layout: &Layout,
) -> Result<TrainSummary, TrainError> {
    alone(&config)?;
    layout.validate(config.optim.batch_size)?;
    let n = layout.devices;
    let [device, ..] = devices else {
        return Err(TrainError::Parallel("no device to train on".into()));
    };
    if devices.len() != n {
        return Err(TrainError::Parallel(format!(
            "{n} peers need {n} devices, but {} were given",
            devices.len()
        )));
    }
    let run = Run::start::<B>(config, device, options)?;
    let whole = run.stepper::<B>(device)?;
    let results: Vec<Result<Option<TrainSummary>, TrainError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|index| {
                let (run, whole, device) = (&run, &whole, &devices[index]);
                scope.spawn(move || -> Result<Option<TrainSummary>, TrainError> {
                    let collective = BurnCollective::<B::InnerBackend>::register(
                        index,
                        device,
                        CollectiveConfig::default().with_num_devices(n),
                        n,
                    )
                    .map_err(TrainError::from)?;
                    let collective = Arc::new(collective);
                    let summary =
                        Rank::new(collective.clone(), device.clone(), layout.memory_parallel)
                            .and_then(|rank| {
                                let stepper = whole.for_rank(&rank, device)?;
                                run.train_loop(stepper, Some(&rank), device)
                            });
                    // Unregistered whatever happened, so that this process can start another run.
                    let finished =
                        Arc::into_inner(collective).map(|c| c.finish().map_err(TrainError::from));
                    let summary = summary?;
                    finished.transpose()?;
                    Ok(summary)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(TrainError::Parallel("a peer thread panicked".into())))
            })
            .collect()
    });
    let mut summary = None;
    for result in results {
        if let Some(s) = result? {
            summary = Some(s);
        }
    }
    summary.ok_or_else(|| TrainError::Parallel("no peer reported".into()))
}

/// [`train`](crate::train) as one rank of a parallel run whose other ranks are other
/// processes (an MPI job: `collective` says which rank this is among how many). Rank 0 sets
/// the run up (replaces an old one, prepares the data, writes config.toml) while the others
/// wait; then they read what it wrote, and every rank trains its share as with
/// [`train_parallel`]. Returns the summary on rank 0, `None` on the others.
pub fn train_peer<B: TrainBackend>(
    config: TrainConfig,
    device: &B::Device,
    options: TrainOptions,
    layout: &Layout,
    collective: Arc<dyn Collective<B::InnerBackend>>,
) -> Result<Option<TrainSummary>, TrainError> {
    alone(&config)?;
    layout.validate(config.optim.batch_size)?;
    let world = collective.world();
    if world != layout.devices {
        return Err(TrainError::Parallel(format!(
            "the launcher started {world} processes, but --devices is {}: one process per peer",
            layout.devices
        )));
    }
    let rank = Rank::new(collective.clone(), device.clone(), layout.memory_parallel)?;
    let lead =
        (rank.index() == 0).then(|| Run::start::<B>(config.clone(), device, options.clone()));
    let ready = match &lead {
        Some(Err(_)) => Err(TrainError::Parallel(
            "rank 0 could not set the run up".into(),
        )),
        _ => Ok(()),
    };
    if let Err(e) = rank.agree(ready) {
        return Err(match lead {
            Some(Err(own)) => own,
            _ => e,
        });
    }
    let run = match lead {
        Some(run) => run?,
        None => Run::follow::<B>(config, device, options)?,
    };
    let stepper = run.stepper::<B>(device)?.for_rank(&rank, device)?;
    let summary = run.train_loop(stepper, Some(&rank), device)?;
    if let (Some(traffic), Some(_)) = (collective.traffic(), &summary) {
        // What rank 0 handed to the transport in this session, by operation (the difference
        // of two runs of different lengths is the traffic per step).
        let path = run.dir.traffic();
        let text = serde_json::to_string_pretty(&traffic).expect("a map of counts");
        memory_layers_data::write_atomic(&path, text.as_bytes())?;
    }
    Ok(summary)
}

/// Refuses a finetuning run: it trains on one device.
fn alone(config: &TrainConfig) -> Result<(), TrainError> {
    match config.finetune {
        Some(_) => Err(TrainError::Parallel(
            "a finetuning run trains on one device: start it without --devices".into(),
        )),
        None => Ok(()),
    }
}
