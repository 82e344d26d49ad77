//! Changes to a run's configuration, as a command line gives them, applied by the
//! configuration's own rules.

use std::path::PathBuf;

use memory_layers_data::{DocSeparator, TokenizerKind};
use memory_layers_zoo::{ModelKind, Size, preset};

use crate::{Precision, TrainConfig, TrainError, ValueOptimizer};

/// Changes to a [`TrainConfig`]; `None` (or empty) leaves a setting as it is.
/// [`TrainOverrides::apply`] keeps the configuration's rules:
/// - the warmup keeps its share of the steps when a new run changes their number (unless the
///   warmup is set too); a resumed run keeps its warmup;
/// - a new peak learning rate keeps the values' ratio to it (10× in the presets) unless the
///   values' rate is given;
/// - `knn` follows the sub-keys down (`knn ≤ n_keys`), whether they are set by `n_keys` or
///   by `set`, unless `knn` is set too;
/// - a finetuning run that trains the memory values alone takes `lr` as theirs.
#[derive(Debug, Clone, Default)]
pub struct TrainOverrides {
    /// A preset model in place of the configuration's.
    pub model: Option<(ModelKind, Size)>,
    /// Training text (files and folders).
    pub data: Vec<PathBuf>,
    /// A folder `prepare` wrote, instead of `data`.
    pub prepared: Option<PathBuf>,
    /// The field of a .jsonl record that holds its text.
    pub text_field: Option<String>,
    /// What ends a document in a text file.
    pub doc_separator: Option<DocSeparator>,
    /// Validation held out by tokens.
    pub val_tokens: Option<usize>,
    /// Bytes of the corpus a BPE is trained on.
    pub tokenizer_sample: Option<usize>,
    /// Validation tokens the final evaluation scores (0: all).
    pub eval_tokens: Option<usize>,
    /// Held-out QA set.
    pub qa: Option<PathBuf>,
    /// Fact-recall probes.
    pub recall: Option<PathBuf>,
    /// The tokenizer, and a Hugging Face file for it.
    pub tokenizer: Option<(TokenizerKind, Option<PathBuf>)>,
    /// Leave out the generated knowledge corpus.
    pub no_facts: bool,
    /// Optimizer steps.
    pub steps: Option<usize>,
    /// Sequences per micro-batch.
    pub batch_size: Option<usize>,
    /// Tokens per sequence.
    pub seq_len: Option<usize>,
    /// Micro-batches per step.
    pub grad_accum: Option<usize>,
    /// Sub-keys per half of the product-key layers.
    pub n_keys: Option<usize>,
    /// Peak learning rate.
    pub lr: Option<f64>,
    /// Peak learning rate of the value tables.
    pub value_lr: Option<f64>,
    /// Optimizer of the value tables.
    pub value_optimizer: Option<ValueOptimizer>,
    /// Floating-point type.
    pub precision: Option<Precision>,
    /// Seed.
    pub seed: Option<u64>,
    /// Run directory.
    pub out: Option<PathBuf>,
    /// Steps between checkpoints.
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept.
    pub keep_checkpoints: Option<usize>,
    /// Weights to start from (Hugging Face names).
    pub init_from: Option<PathBuf>,
    /// Finetuning: adapter rank.
    pub lora_rank: Option<usize>,
    /// Finetuning: adapter scale numerator.
    pub lora_alpha: Option<f64>,
    /// Finetuning: value rows updated per sparse-memory step.
    pub top_t: Option<usize>,
    /// Finetuning: where the background access counts come from.
    pub background: Option<PathBuf>,
    /// Finetuning: background documents counted.
    pub background_batches: Option<usize>,
    /// Any key of `config.toml` (dotted) and its value, applied last.
    pub set: Vec<(String, String)>,
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

impl TrainOverrides {
    /// `config` with these changes; `resumed` when it is a saved run's configuration that
    /// continues (its warmup stays).
    pub fn apply(&self, mut config: TrainConfig, resumed: bool) -> Result<TrainConfig, TrainError> {
        if let Some((kind, size)) = self.model {
            config.model = preset(kind, size, None);
        }
        if let Some(n_keys) = self.n_keys {
            let keys = &mut config.model.product_keys;
            *keys = keys.clone().with_n_keys(n_keys);
        }
        let data = &mut config.data;
        if !self.data.is_empty() {
            data.paths = self.data.clone();
        }
        set(&mut data.qa, self.qa.clone().map(Some));
        set(&mut data.recall, self.recall.clone().map(Some));
        set(&mut data.prepared, self.prepared.clone().map(Some));
        if let Some((kind, file)) = &self.tokenizer {
            (data.tokenizer, data.tokenizer_file) = (*kind, file.clone());
        }
        set(&mut data.text_field, self.text_field.clone());
        set(&mut data.doc_separator, self.doc_separator.clone());
        set(&mut data.val_tokens, self.val_tokens.map(Some));
        set(&mut data.tokenizer_sample, self.tokenizer_sample.map(Some));
        if self.no_facts {
            data.facts = None;
        }
        let base = (config.optim.steps, config.optim.warmup_steps);
        let o = &mut config.optim;
        set(&mut o.steps, self.steps);
        // Where the base accumulates (the paper-size presets), a micro-batch given alone keeps
        // the sequences a step when it divides them.
        let sequences = o.batch_size * o.grad_accum;
        if let (Some(batch), None, true) = (self.batch_size, self.grad_accum, o.grad_accum > 1)
            && batch > 0
            && sequences.is_multiple_of(batch)
        {
            o.grad_accum = (sequences / batch).max(1);
        }
        set(&mut o.batch_size, self.batch_size);
        set(&mut o.seq_len, self.seq_len);
        set(&mut o.grad_accum, self.grad_accum);
        let values_only = config
            .finetune
            .as_ref()
            .is_some_and(|f| f.method.values_only());
        if let (Some(lr), true) = (self.lr, values_only) {
            o.value_lr = lr;
        } else if let Some(lr) = self.lr {
            // Rounded so that 0.03 / 0.003 is 10, not 9.999999999999998.
            let ratio = (o.value_lr / o.lr * 1e9).round() / 1e9;
            o.value_lr = lr * ratio;
            o.lr = lr;
        }
        set(&mut o.value_lr, self.value_lr);
        set(&mut o.value_optimizer, self.value_optimizer);
        let run = &mut config.run;
        set(&mut run.seed, self.seed);
        set(&mut run.out, self.out.clone());
        set(&mut run.checkpoint_every, self.checkpoint_every);
        set(&mut run.keep_checkpoints, self.keep_checkpoints);
        set(&mut run.precision, self.precision);
        set(&mut run.eval_tokens, self.eval_tokens);
        if let Some(path) = &self.init_from {
            if !path.is_file() {
                return Err(TrainError::config(
                    "run.init_from",
                    path.display(),
                    "no such file",
                ));
            }
            run.init_from = Some(path.clone());
        }
        self.apply_finetune(&mut config)?;
        let keys_before = config.model.product_keys.n_keys;
        for (key, value) in &self.set {
            config.set(key, value)?;
        }
        let given = |key: &str| self.set.iter().any(|(k, _)| k == key);
        let keys = &mut config.model.product_keys;
        if keys.n_keys != keys_before && !given("model.product_keys.knn") {
            *keys = keys.clone().with_n_keys(keys.n_keys);
        }
        if !resumed && config.optim.steps != base.0 && !given("optim.warmup_steps") {
            let steps = config.optim.steps;
            (config.optim.steps, config.optim.warmup_steps) = base;
            config.set_steps(steps);
        }
        Ok(config)
    }

    /// The finetuning settings, refused for a run that does not finetune.
    fn apply_finetune(&self, config: &mut TrainConfig) -> Result<(), TrainError> {
        let given = self.lora_rank.is_some()
            || self.lora_alpha.is_some()
            || self.top_t.is_some()
            || self.background.is_some()
            || self.background_batches.is_some();
        let Some(finetune) = &mut config.finetune else {
            return match given {
                true => Err(TrainError::config(
                    "finetune",
                    "(none)",
                    "LoRA, top-t and background settings belong to finetuning runs \
                     (memory-layers finetune)",
                )),
                false => Ok(()),
            };
        };
        set(&mut finetune.lora_rank, self.lora_rank);
        set(&mut finetune.lora_alpha, self.lora_alpha);
        set(&mut finetune.top_t, self.top_t);
        set(&mut finetune.background, self.background.clone().map(Some));
        set(&mut finetune.background_batches, self.background_batches);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TrainConfig {
        TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny)
    }

    #[test]
    fn sub_keys_bring_knn_down_by_flag_or_by_key() {
        let by_flag = TrainOverrides {
            n_keys: Some(8),
            ..Default::default()
        };
        let by_key = TrainOverrides {
            set: vec![("model.product_keys.n_keys".into(), "8".into())],
            ..Default::default()
        };
        let (a, b) = (
            by_flag.apply(tiny(), false).unwrap(),
            by_key.apply(tiny(), false).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.model.product_keys.n_keys, 8);
        assert_eq!(a.model.product_keys.knn, 8);
        a.validate().unwrap();
        // knn set alongside is the user's: the configuration's validation judges it.
        let both = TrainOverrides {
            set: vec![
                ("model.product_keys.n_keys".into(), "8".into()),
                ("model.product_keys.knn".into(), "12".into()),
            ],
            ..Default::default()
        };
        let c = both.apply(tiny(), false).unwrap();
        assert_eq!(c.model.product_keys.knn, 12);
        assert!(c.validate().unwrap_err().to_string().contains("knn"));
    }

    #[test]
    fn a_micro_batch_alone_keeps_an_accumulating_presets_sequences_a_step() {
        let paper = TrainConfig::new(ModelKind::MemoryPlus, Size::M373);
        assert_eq!(paper.optim.grad_accum, 2, "the 373m preset accumulates");
        let batch = |batch_size, grad_accum| {
            let o = TrainOverrides {
                batch_size: Some(batch_size),
                grad_accum,
                ..Default::default()
            };
            let c = o.apply(paper.clone(), false).unwrap().optim;
            (c.batch_size, c.grad_accum)
        };
        assert_eq!(batch(2, None), (2, 4), "8 sequences a step");
        assert_eq!(batch(8, None), (8, 1));
        assert_eq!(
            batch(3, None),
            (3, 2),
            "3 does not divide 8: the accumulation stays"
        );
        assert_eq!(batch(4, Some(3)), (4, 3), "both given: as given");
        // A preset without accumulation takes the micro-batch as the step.
        let o = TrainOverrides {
            batch_size: Some(4),
            ..Default::default()
        };
        let c = o.apply(tiny(), false).unwrap().optim;
        assert_eq!((c.batch_size, c.grad_accum), (4, 1));
    }

    #[test]
    fn steps_keep_the_warmup_share_and_lr_the_value_ratio() {
        let base = tiny();
        let share = base.optim.warmup_steps as f64 / base.optim.steps as f64;
        let o = TrainOverrides {
            steps: Some(1000),
            lr: Some(1e-3),
            ..Default::default()
        };
        let c = o.apply(base.clone(), false).unwrap();
        assert_eq!(c.optim.warmup_steps, (1000.0 * share).round() as usize);
        assert_eq!(c.optim.value_lr, 1e-2);
        // A resumed run keeps its warmup; a warmup given is kept.
        assert_eq!(
            o.apply(base.clone(), true).unwrap().optim.warmup_steps,
            base.optim.warmup_steps
        );
        let warm = TrainOverrides {
            steps: Some(1000),
            set: vec![("optim.warmup_steps".into(), "7".into())],
            ..Default::default()
        };
        assert_eq!(warm.apply(base, false).unwrap().optim.warmup_steps, 7);
    }
}
