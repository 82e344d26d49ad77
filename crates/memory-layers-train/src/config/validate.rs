//! The rules a [`TrainConfig`] must keep, checked before anything runs: each error names the
//! field and the rule.

use memory_layers_data::{DocSeparator, EMPTY_SEPARATOR, TokenizerKind};

use super::{TrainConfig, ValueOptimizer};
use crate::TrainError;

impl TrainConfig {
    /// Checks every rule; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), TrainError> {
        let o = &self.optim;
        let positive = [
            ("optim.steps", o.steps),
            ("optim.batch_size", o.batch_size),
            ("optim.seq_len", o.seq_len),
            ("optim.grad_accum", o.grad_accum),
            ("run.checkpoint_every", self.run.checkpoint_every),
            ("run.keep_checkpoints", self.run.keep_checkpoints),
            ("run.log_every", self.run.log_every),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(TrainError::config(field, value, "must be at least 1"));
            }
        }
        let given = [
            ("data.val_tokens", self.data.val_tokens),
            ("data.tokenizer_sample", self.data.tokenizer_sample),
        ];
        for (field, value) in given {
            if value == Some(0) {
                return Err(TrainError::config(
                    field,
                    0,
                    "must be at least 1 when given",
                ));
            }
        }
        if self.data.doc_separator == DocSeparator::Marker(String::new()) {
            return Err(TrainError::config(
                "data.doc_separator",
                "\"\"",
                EMPTY_SEPARATOR,
            ));
        }
        if o.seq_len > self.model.max_seq_len {
            return Err(TrainError::config(
                "optim.seq_len",
                o.seq_len,
                "must not exceed model.max_seq_len",
            ));
        }
        if self.run.seed > i64::MAX as u64 {
            return Err(TrainError::config(
                "run.seed",
                self.run.seed,
                "must be at most 2^63 - 1 (config.toml stores it as a TOML integer)",
            ));
        }
        for (field, value) in [("optim.lr", o.lr), ("optim.value_lr", o.value_lr)] {
            if !value.is_finite() || value <= 0.0 {
                return Err(TrainError::config(field, value, "must be positive"));
            }
        }
        if self.data.tokenizer_file.is_some() && self.data.tokenizer == TokenizerKind::Byte {
            return Err(TrainError::config(
                "data.tokenizer_file",
                "set",
                "needs data.tokenizer = \"bpe\" (a tokenizer file replaces the trained BPE)",
            ));
        }
        if let Some(dir) = &self.data.prepared {
            if !self.data.paths.is_empty() {
                return Err(TrainError::config(
                    "data.prepared",
                    dir.display(),
                    "takes the place of data.paths: give one of them",
                ));
            }
            if self.data.tokenizer_file.is_some() {
                return Err(TrainError::config(
                    "data.prepared",
                    dir.display(),
                    "holds its own tokenizer: data.tokenizer_file applies to `prepare`",
                ));
            }
        }
        if !(0.0..=1.0).contains(&o.min_lr_ratio) {
            return Err(TrainError::config(
                "optim.min_lr_ratio",
                o.min_lr_ratio,
                "must be in [0, 1]",
            ));
        }
        for (field, value) in [("optim.beta1", o.beta1), ("optim.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&value) {
                return Err(TrainError::config(field, value, "must be in [0, 1)"));
            }
        }
        for (field, value) in [
            ("optim.eps", o.eps),
            ("optim.weight_decay", o.weight_decay),
            ("optim.grad_clip", o.grad_clip),
            ("optim.value_grad_clip", o.value_grad_clip),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(TrainError::config(
                    field,
                    value,
                    "must be finite and not negative",
                ));
            }
        }
        if let Some(facts) = &self.data.facts {
            facts.validate()?;
        }
        let words = self.data.tokenizer == TokenizerKind::Words;
        match &self.data.compact_facts {
            Some(compact) => {
                compact.validate()?;
                let other = [
                    ("data.paths", !self.data.paths.is_empty()),
                    ("data.prepared", self.data.prepared.is_some()),
                    ("data.facts", self.data.facts.is_some()),
                ];
                if let Some((field, _)) = other.iter().find(|(_, set)| *set) {
                    return Err(TrainError::config(
                        field,
                        "set",
                        "is another training text: data.compact_facts is the whole of it",
                    ));
                }
                if !words {
                    return Err(TrainError::config(
                        "data.tokenizer",
                        self.data.tokenizer,
                        "must be \"words\" with data.compact_facts (its vocabulary)",
                    ));
                }
            }
            None if words => {
                return Err(TrainError::config(
                    "data.tokenizer",
                    "words",
                    "is the vocabulary of data.compact_facts, which is not set",
                ));
            }
            None => {}
        }
        if let Some(finetune) = &self.finetune {
            finetune.validate(&self.model)?;
            if finetune.method.values_only() && o.value_optimizer == ValueOptimizer::DenseAdamW {
                return Err(TrainError::config(
                    "optim.value_optimizer",
                    o.value_optimizer,
                    "must be row-wise (sgd, sparse-adamw, rowwise-adagrad) for memory \
                     finetuning: dense AdamW moves every row, read or not",
                ));
            }
            let data = &self.data;
            if data.compact_facts.is_some() {
                return Err(TrainError::config(
                    "data.compact_facts",
                    "set",
                    "has a vocabulary of its own: a finetuning run reads text with its base's \
                     tokenizer",
                ));
            }
            if data.paths.is_empty() && data.prepared.is_none() && data.facts.is_none() {
                return Err(TrainError::config(
                    "data",
                    "no training text",
                    "a finetuning run needs the new text to learn: data.paths (--data), \
                     data.prepared or data.facts",
                ));
            }
        }
        Ok(self.model.validate()?)
    }
}
