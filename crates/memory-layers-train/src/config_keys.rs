//! A configuration as dotted keys (`optim.warmup_steps`): unknown keys in a `config.toml`,
//! `--set KEY=VALUE` on the command line, and what a resumed run may change.

use std::collections::BTreeMap;

use toml::Value;

use crate::{TrainConfig, TrainError};

/// Keys a resumed run may change: the length of the schedule and how it logs, checkpoints
/// and evaluates. Everything else would make the checkpoint a different run.
const RESUMABLE: [&str; 10] = [
    "optim.steps",
    "run.out",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.log_every",
    "run.eval_every",
    "run.eval_batches",
    "run.eval_tokens",
    "run.qa_limit",
    "run.recall_limit",
];

/// Every leaf of `value` by dotted key.
fn leaves(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Table(table) => {
                for (key, value) in table {
                    let key = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&key, value, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// `config` as a TOML value; a value TOML cannot hold (a seed past 2^63 - 1) is an error.
fn to_value(config: &TrainConfig) -> Result<Value, TrainError> {
    Value::try_from(config).map_err(|e| TrainError::config("run", e, "cannot be written as TOML"))
}

/// Whether `key` names a table of `value` or a leaf inside one.
fn known(value: &Value, key: &str) -> bool {
    let leaves = leaves(value);
    leaves.contains_key(key) || leaves.keys().any(|k| k.starts_with(&format!("{key}.")))
}

impl TrainConfig {
    /// Parses a `config.toml`; a key the configuration does not have is an error naming it
    /// (a misspelt key would otherwise be ignored silently).
    pub fn parse(text: &str) -> Result<Self, String> {
        let input: Value = toml::from_str(text).map_err(|e| e.to_string())?;
        let config: TrainConfig = input
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        let parsed = to_value(&config).map_err(|e| e.to_string())?;
        let unknown: Vec<String> = leaves(&input)
            .into_keys()
            .filter(|key| !known(&parsed, key))
            .collect();
        match unknown.as_slice() {
            [] => Ok(config),
            keys => Err(format!("unknown key {}", keys.join(", "))),
        }
    }

    /// Sets the key `key` (dotted, as in config.toml) to `value`, written as a TOML value
    /// (`100`, `3e-4`, `true`, `"text"`; a bare word is taken as a string).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), TrainError> {
        let bad = |rule| TrainError::Setting {
            key: key.to_string(),
            value: value.to_string(),
            rule,
        };
        let parsed: Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(value.to_string()));
        let no_such_key = || bad("no such key in the configuration".to_string());
        let mut root = to_value(self)?;
        let mut slot = &mut root;
        // Unset options (`data.qa`, `data.facts` after --no-facts) are absent from the
        // serialised configuration: missing keys are added, and the key must then survive a
        // round trip through the configuration to count as one of its own.
        for part in key.split('.') {
            slot = slot
                .as_table_mut()
                .ok_or_else(no_such_key)?
                .entry(part)
                .or_insert_with(|| Value::Table(Default::default()));
        }
        if slot.as_table().is_some_and(|t| !t.is_empty()) {
            return Err(bad("names a section; set one of its keys".to_string()));
        }
        *slot = parsed;
        let config: TrainConfig = root
            .try_into()
            .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        if !leaves(&to_value(&config)?).contains_key(key) {
            return Err(no_such_key());
        }
        *self = config;
        Ok(())
    }

    /// Checks that this configuration continues `saved`: only the number of steps and the
    /// logging, checkpoint and evaluation settings may differ (the vocabulary size comes
    /// from the saved tokenizer). The error names every other key that differs.
    pub fn check_resumes(&self, saved: &TrainConfig) -> Result<(), TrainError> {
        let mut this = self.clone();
        this.model.vocab_size = saved.model.vocab_size;
        let (new, old) = (leaves(&to_value(&this)?), leaves(&to_value(saved)?));
        let keys: std::collections::BTreeSet<&String> = new.keys().chain(old.keys()).collect();
        let changed: Vec<String> = keys
            .into_iter()
            .filter(|key| !RESUMABLE.contains(&key.as_str()) && new.get(*key) != old.get(*key))
            .map(|key| {
                let show = |v: Option<&Value>| v.map_or("(none)".to_string(), Value::to_string);
                format!("{key} ({} → {})", show(old.get(key)), show(new.get(key)))
            })
            .collect();
        if changed.is_empty() {
            Ok(())
        } else {
            Err(TrainError::Resume(changed.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use memory_layers_zoo::{ModelKind, Size};

    use super::*;

    fn tiny() -> TrainConfig {
        TrainConfig::new(ModelKind::Dense, Size::Tiny)
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = toml::to_string(&tiny()).unwrap();
        assert_eq!(TrainConfig::parse(&text).unwrap(), tiny());
        // A misspelt key with a default would be ignored; a required one is missing.
        let typo = text.replace("keep_checkpoints", "keep_checkpionts");
        let err = TrainConfig::parse(&typo).unwrap_err();
        assert!(err.contains("run.keep_checkpionts"), "{err}");
        let typo = text.replace("warmup_steps", "warmup_stpes");
        let err = TrainConfig::parse(&typo).unwrap_err();
        assert!(err.contains("warmup_steps"), "{err}");
        let extra = format!("{text}\n[extra]\nx = 1\n");
        assert!(TrainConfig::parse(&extra).unwrap_err().contains("extra.x"));
    }

    #[test]
    fn set_changes_one_key_and_refuses_what_does_not_fit() {
        let mut config = tiny();
        config.set("optim.warmup_steps", "100").unwrap();
        assert_eq!(config.optim.warmup_steps, 100);
        config.set("optim.decay", "linear").unwrap();
        assert_eq!(config.optim.decay, crate::Decay::Linear);
        config.set("model.product_keys.qk_norm", "false").unwrap();
        assert!(!config.model.product_keys.qk_norm);
        // Options that are unset are keys too.
        assert_eq!(config.data.qa, None);
        config.set("data.qa", "held-out.jsonl").unwrap();
        assert_eq!(config.data.qa, Some("held-out.jsonl".into()));
        config.set("model.memory.layers", "[1, 2]").unwrap();
        assert_eq!(config.model.memory.layers, Some(vec![1, 2]));
        for (key, value, rule) in [
            ("optim.warmup", "1", "no such key"),
            ("data.nope.deeper", "1", "no such key"),
            ("optim", "1", "names a section"),
            ("optim.steps", "-3", "invalid value"),
            ("optim.lr", "fast", "invalid type"),
        ] {
            let err = config.set(key, value).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(rule), "{err}");
        }
        // A seed TOML cannot hold is an error, not a panic.
        config.run.seed = u64::MAX;
        let err = config.set("optim.steps", "10").unwrap_err().to_string();
        assert!(err.contains("cannot be written as TOML"), "{err}");
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("run.seed")
        );
    }

    #[test]
    fn a_resumed_run_may_change_only_its_length_and_reporting() {
        let saved = tiny();
        let mut longer = saved.clone();
        longer.optim.steps *= 2;
        longer.run.checkpoint_every = 7;
        longer.model.vocab_size += 1;
        longer.check_resumes(&saved).unwrap();
        let mut other = longer.clone();
        other.optim.lr = 1e-4;
        other.model.kind = ModelKind::MemoryPlus;
        let err = other.check_resumes(&saved).unwrap_err().to_string();
        assert!(err.contains("optim.lr (0.003 → 0.0001)"), "{err}");
        assert!(err.contains("model.kind"), "{err}");
        assert!(!err.contains("optim.steps"), "{err}");
    }
}
