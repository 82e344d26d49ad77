//! Scoring a finetuned checkpoint: recall and bits of facts B (learned) and facts A (kept),
//! and the loss on held-out natural text, beside the same of its base before finetuning.

use std::collections::BTreeMap;
use std::sync::Mutex;

use memory_layers_train::{
    CheckpointDir, EvalReport, RunData, RunDir, TrainConfig, TrainError, TrainState, evaluate,
    open_run, prepare_data,
};
use memory_layers_zoo::ZooBackend;

use super::{ContinualRow, FinetuneSpec};
use crate::summary::{read_json, write_json};
use crate::{ExperimentError, SuitePlan};

/// A model's scores on facts A (with the held-out text) and on facts B.
#[derive(Clone)]
struct Scores {
    a: EvalReport,
    b: EvalReport,
}

/// Scores the suite's checkpoints; the bases' own scores are computed once.
pub(crate) struct Scorer<'a> {
    plan: &'a SuitePlan,
    bases: Mutex<BTreeMap<String, Scores>>,
}

/// A run's configuration for scoring: every recall probe, one QA question (the suite does
/// not read QA), a sample of the validation split.
fn scoring(mut config: TrainConfig) -> TrainConfig {
    config.run.qa_limit = 1;
    config.run.recall_limit = 0;
    config.run.eval_tokens = 1 << 14;
    config
}

/// The data a run in `dir` was trained and evaluated on, with `config`'s scoring settings.
fn data_of(dir: &RunDir) -> Result<(TrainConfig, RunData), TrainError> {
    let mut config = scoring(dir.load_config()?);
    let data = prepare_data(&mut config, dir, true, false)?;
    Ok((config, data))
}

impl<'a> Scorer<'a> {
    pub(crate) fn new(plan: &'a SuitePlan) -> Self {
        Self {
            plan,
            bases: Mutex::new(BTreeMap::new()),
        }
    }

    /// The steps at which a finetuning run's checkpoints are scored.
    fn steps(&self) -> [usize; 3] {
        let third = super::third(&self.plan.base);
        [third, 2 * third, 3 * third]
    }

    /// The row id of `spec` at `step`.
    fn row_id(spec: &FinetuneSpec, step: usize) -> String {
        format!("{}-at{step}", spec.id)
    }

    /// The rows of `spec` when every one of them was written.
    pub(crate) fn finished(
        &self,
        spec: &FinetuneSpec,
    ) -> Result<Option<Vec<ContinualRow>>, ExperimentError> {
        let paths: Vec<_> = self
            .steps()
            .iter()
            .map(|&step| self.plan.out.row(&Self::row_id(spec, step)))
            .collect();
        if !paths.iter().all(|p| p.exists()) {
            return Ok(None);
        }
        paths
            .iter()
            .map(|p| read_json(p))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Scores every kept checkpoint of the finished run `spec` and writes its rows.
    pub(crate) fn score<B: ZooBackend>(
        &self,
        spec: &FinetuneSpec,
        train_seconds: f64,
        device: &B::Device,
    ) -> Result<Vec<ContinualRow>, ExperimentError> {
        let failed = |error| ExperimentError::Run {
            run: spec.id.clone(),
            error: Box::new(error),
        };
        let out = &self.plan.out;
        let (base_dir, dir) = (out.run(&spec.base), out.run(&spec.id));
        let (a_config, a_data) = data_of(&base_dir).map_err(failed)?;
        let (b_config, b_data) = data_of(&dir).map_err(failed)?;
        let scores = |path: &std::path::Path| -> Result<Scores, TrainError> {
            let model = open_run::<B>(path, device)?.model;
            Ok(Scores {
                a: evaluate(&model, &a_config, &a_data, device, false)?,
                b: evaluate(&model, &b_config, &b_data, device, false)?,
            })
        };
        let before = {
            let known = self.lock().get(&spec.base).cloned();
            match known {
                Some(scores) => scores,
                None => {
                    let scores = scores(base_dir.path()).map_err(failed)?;
                    self.lock().insert(spec.base.clone(), scores.clone());
                    scores
                }
            }
        };
        let mut checkpoints: Vec<CheckpointDir> = dir
            .kept_checkpoints()
            .map_err(failed)?
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        checkpoints.push(dir.checkpoint());
        let mut rows = Vec::new();
        for checkpoint in checkpoints {
            let state: TrainState = read_json(&checkpoint.state())?;
            if !self.steps().contains(&state.step) {
                continue;
            }
            let after = scores(checkpoint.path()).map_err(failed)?;
            let row = ContinualRow::new(spec, state.step, train_seconds, &before, &after);
            write_json(&out.row(&Self::row_id(spec, state.step)), &row)?;
            rows.push(row);
        }
        rows.sort_by_key(|r| r.steps);
        Ok(rows)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Scores>> {
        self.bases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ContinualRow {
    /// The row of `spec` at `step`: `before` its base's scores, `after` the checkpoint's.
    fn new(
        spec: &FinetuneSpec,
        step: usize,
        train_seconds: f64,
        before: &Scores,
        after: &Scores,
    ) -> Self {
        let recall = |r: &EvalReport| r.fact_recall.unwrap_or(0.0);
        let bits = |r: &EvalReport| r.knowledge.as_ref().map(|k| k.bits);
        Self {
            id: Scorer::row_id(spec, step),
            label: format!("{}-at{step}", spec.label),
            setting: spec.label.clone(),
            base: spec.kind.to_string(),
            method: spec.method,
            lr: spec.lr,
            top_t: spec.top_t,
            steps: step,
            seed: spec.seed,
            learned: recall(&after.b),
            learned_bits: bits(&after.b),
            kept: recall(&after.a),
            kept_bits: bits(&after.a),
            text_loss: after.a.text_val_loss,
            base_learned: recall(&before.b),
            base_kept: recall(&before.a),
            base_kept_bits: bits(&before.a),
            base_text_loss: before.a.text_val_loss,
            train_seconds,
        }
    }
}
