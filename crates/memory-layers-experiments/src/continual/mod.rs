//! The continual-learning suite: a Memory+ base and a dense base learn facts A with natural
//! text; each finetuning method then teaches them facts B (new people, the same attributes)
//! at a sweep of learning rates and lengths, and every finetuned checkpoint is scored on what
//! it learned (recall of B), what it kept (recall of A) and its language modelling (the loss
//! on held-out natural text).

use memory_layers_data::FactsConfig;
use memory_layers_train::{
    FinetuneMethod, TrainBackend, TrainConfig, TrainOptions, TrainOverrides, count_background,
};
use memory_layers_zoo::ModelKind;

use crate::runner::{Event, in_pools, run_suite, train_run};
use crate::{Base, ExperimentError, SuitePlan};

mod report;
mod score;

pub use report::{ContinualRow, continual_markdown, matched};

use score::Scorer;

/// The new facts: half as many people as the base's corpus (20 of 40), after them in the
/// name list, as many biographies each.
pub fn facts_b(base: &Base) -> FactsConfig {
    FactsConfig {
        people: (base.facts.people / 2).max(2),
        first: base.facts.people,
        ..base.facts.clone()
    }
}

/// Steps of every finetuning run by default; its checkpoints at a third, two thirds and the
/// end are all scored (the sweep over lengths).
pub const CONTINUAL_STEPS: usize = 300;
/// Background documents (one sequence each) counted per Memory+ base.
pub const CONTINUAL_BACKGROUND: usize = 1000;

/// A third of the finetuning steps (a multiple of 3, checked by [`run_continual`]): the runs
/// checkpoint, and are scored, at one, two and three thirds.
pub(crate) fn third(base: &Base) -> usize {
    base.finetune_steps / 3
}

/// One finetuning run of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneSpec {
    /// Run directory name: `{label}-s{seed}`.
    pub id: String,
    /// The setting it stands for (every seed): `{base}-{method}-{setting}`.
    pub label: String,
    /// The base run's id.
    pub base: String,
    /// The base's model kind.
    pub kind: ModelKind,
    /// Method.
    pub method: FinetuneMethod,
    /// Learning rate of what is trained.
    pub lr: f64,
    /// Rows per step (sparse-memory).
    pub top_t: Option<usize>,
    /// Seed of the base and of the finetuning's data order.
    pub seed: u64,
}

/// The rates of the memory methods (SGD on the rows). The first three were set before any
/// run; the rest were added when none of the three learned facts B (docs/finetuning.md): with
/// the loss a mean over the batch's tokens, a row's gradient is a few thousandths.
const VALUE_RATES: [f64; 7] = [0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0];

/// The sweep on one base of `kind`: each method at each of its learning rates (and, for
/// sparse memory finetuning, each t); docs/finetuning.md, "Sized before the runs".
pub fn sweep(kind: ModelKind) -> Vec<(FinetuneMethod, f64, Option<usize>)> {
    use FinetuneMethod::*;
    let mut out = Vec::new();
    for lr in [1e-4, 3e-4, 1e-3] {
        out.push((Full, lr, None));
    }
    for lr in [1e-3, 3e-3, 1e-2] {
        out.push((Lora, lr, None));
    }
    if kind.has_pool() {
        for lr in VALUE_RATES {
            out.push((Memory, lr, None));
        }
        for top_t in [100, 1000] {
            for lr in VALUE_RATES {
                out.push((SparseMemory, lr, Some(top_t)));
            }
        }
    }
    out
}

/// Every finetuning run of the suite for `seeds` seeds, seed by seed.
pub fn finetune_specs(seeds: usize) -> Vec<FinetuneSpec> {
    let mut specs = Vec::new();
    for seed in 0..seeds as u64 {
        for kind in [ModelKind::MemoryPlus, ModelKind::Dense] {
            for (method, lr, top_t) in sweep(kind) {
                let t = top_t.map_or(String::new(), |t| format!("-t{t}"));
                let label = format!("{kind}-{method}-lr{lr}{t}");
                specs.push(FinetuneSpec {
                    id: format!("{label}-s{seed}"),
                    label,
                    base: format!("{kind}-s{seed}"),
                    kind,
                    method,
                    lr,
                    top_t,
                    seed,
                });
            }
        }
    }
    specs
}

/// The bases of the suite: Memory+ and dense, as in `models`, on facts A and the plays.
pub(crate) fn bases(base: &Base) -> Vec<(String, TrainConfig)> {
    [ModelKind::MemoryPlus, ModelKind::Dense]
        .into_iter()
        .map(|kind| (kind.to_string(), base.config(kind)))
        .collect()
}

impl FinetuneSpec {
    /// The finetuning run's configuration, from the base run in `base_dir`.
    fn config(
        &self,
        base_dir: &std::path::Path,
        plan: &SuitePlan,
    ) -> Result<TrainConfig, ExperimentError> {
        let failed = |error| ExperimentError::Run {
            run: self.id.clone(),
            error: Box::new(error),
        };
        let config = TrainConfig::finetune(base_dir, self.method).map_err(failed)?;
        let overrides = TrainOverrides {
            steps: Some(3 * third(&plan.base)),
            lr: Some(self.lr),
            top_t: self.top_t,
            out: Some(plan.out.run(&self.id).path().to_path_buf()),
            seed: Some(self.seed),
            ..TrainOverrides::default()
        };
        let mut config = overrides.apply(config, false).map_err(failed)?;
        config.data.facts = Some(facts_b(&plan.base));
        let run = &mut config.run;
        run.checkpoint_every = third(&plan.base);
        // Every checkpoint: an interrupted run's extra one must not push out a scored one.
        run.keep_checkpoints = 100;
        run.log_every = 10;
        run.eval_tokens = 1 << 14;
        config.validate().map_err(failed)?;
        Ok(config)
    }
}

/// Runs the continual suite: the bases (as any suite's runs), their background counts, then
/// every finetuning run, `plan.jobs` at a time, each checkpoint scored into a row. Returns
/// the rows, in the sweep's order.
pub fn run_continual<B: TrainBackend>(
    plan: &SuitePlan,
    device: &B::Device,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Vec<ContinualRow>, ExperimentError> {
    let steps = plan.base.finetune_steps;
    if steps == 0 || !steps.is_multiple_of(3) {
        return Err(ExperimentError::Setting {
            field: "finetune_steps",
            value: steps.to_string(),
            rule: "must be a positive multiple of 3: every run is scored at a third, two \
                   thirds and the end",
        });
    }
    run_suite::<B>(plan, device, on_event)?;
    let out = &plan.out;
    for seed in 0..plan.base.seeds {
        let dir = out.run(&format!("{}-s{seed}", ModelKind::MemoryPlus));
        if !dir.background().exists() {
            count_background::<B::InnerBackend>(
                dir.path(),
                (CONTINUAL_BACKGROUND, 1),
                device,
                false,
            )
            .map_err(|error| ExperimentError::Run {
                run: dir.path().display().to_string(),
                error: Box::new(error),
            })?;
        }
    }
    let specs = finetune_specs(plan.base.seeds);
    let scorer = Scorer::new(plan);
    let total = specs.len();
    let rows = in_pools(plan.jobs, total, |i| {
        let spec = &specs[i];
        if let Some(rows) = scorer.finished(spec)? {
            on_event(Event::FinetuneSkipped {
                index: i + 1,
                total,
                id: &spec.id,
            });
            return Ok(rows);
        }
        on_event(Event::Finetuning {
            index: i + 1,
            total,
            id: &spec.id,
        });
        let base_dir = out.run(&spec.base);
        let config = spec.config(base_dir.path(), plan)?;
        let resume = out.run(&spec.id).latest_checkpoint().is_some();
        if !resume {
            let path = out.run(&spec.id).path().to_path_buf();
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(|e| ExperimentError::file(&path, e))?;
            }
        }
        let options = TrainOptions {
            resume,
            overwrite: false,
            progress: false,
            interrupt: plan.interrupt.clone(),
        };
        let summary = train_run::<B>(&spec.id, config, device, options)?;
        let rows = scorer.score::<B::InnerBackend>(spec, summary.train_seconds, device)?;
        for row in &rows {
            on_event(Event::Finetuned {
                index: i + 1,
                total,
                row,
            });
        }
        Ok(rows)
    })?;
    let rows: Vec<ContinualRow> = rows.into_iter().flatten().collect();
    report::write(out, &rows)?;
    Ok(rows)
}
