//! `--budget`: one knob that scales every run of a suite, in training tokens per run or in
//! minutes for the whole suite.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use memory_layers_train::{Stepper, TrainBackend};
use serde::{Deserialize, Serialize};

use crate::summary::{read_json, write_json};
use crate::{ExperimentError, RunSpec, Suite, SuitePlan};

/// How much training a suite gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Training tokens of every run (`2M`, `500k`, `1500000`).
    Tokens(u64),
    /// Wall-clock minutes of the whole suite (`45min`): every run gets the same tokens, as
    /// many as the suite's measured step times allow.
    Minutes(f64),
}

impl FromStr for Budget {
    type Err = ExperimentError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ExperimentError::Budget(text.to_string());
        let t = text.trim();
        if let Some(minutes) = t.strip_suffix("min") {
            let minutes: f64 = minutes.trim().parse().map_err(|_| bad())?;
            return if minutes.is_finite() && minutes > 0.0 {
                Ok(Self::Minutes(minutes))
            } else {
                Err(bad())
            };
        }
        let t = t.strip_suffix("tokens").unwrap_or(t).trim();
        let (number, scale) = match t.chars().last() {
            Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
            Some('M') => (&t[..t.len() - 1], 1e6),
            Some('G') => (&t[..t.len() - 1], 1e9),
            _ => (t, 1.0),
        };
        let tokens: f64 = number.trim().parse().map_err(|_| bad())?;
        let tokens = tokens * scale;
        if tokens.is_finite() && tokens >= 1.0 && tokens.fract() == 0.0 {
            Ok(Self::Tokens(tokens as u64))
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tokens(tokens) => write!(f, "{tokens} tokens per run"),
            Self::Minutes(minutes) => write!(f, "{minutes} minutes per suite"),
        }
    }
}

/// The resolved budget, kept in `suite.json` so that a resumed suite trains the same runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SuiteRecord {
    suite: Suite,
    budget: String,
    tokens_per_run: u64,
}

/// Tokens per run: the budget's, or as many as fit its minutes at the measured step times
/// (kept in `suite.json`, so that a resumed suite does not measure again).
pub(crate) fn resolve_tokens(
    plan: &SuitePlan,
    specs: &[RunSpec],
    cost: &BTreeMap<String, f64>,
) -> Result<u64, ExperimentError> {
    let path = plan.out.record();
    let budget = plan.budget.to_string();
    if path.exists() {
        let record: SuiteRecord = read_json(&path)?;
        if record.suite == plan.suite && record.budget == budget {
            return Ok(record.tokens_per_run);
        }
        if record.suite == plan.suite {
            return Err(ExperimentError::Setting {
                field: "budget",
                value: budget,
                rule: "differs from the budget this suite's directory was run with; continue \
                       with that budget or use a new --out",
            });
        }
        return Err(ExperimentError::Setting {
            field: "out",
            value: plan.out.path().display().to_string(),
            rule: "holds another suite; use a new --out",
        });
    }
    let tokens = match plan.budget {
        Budget::Tokens(tokens) => tokens,
        Budget::Minutes(minutes) => {
            let per_token: f64 = specs
                .iter()
                .map(|s| cost.get(&s.label).copied().unwrap_or(0.0))
                .sum();
            // A sixth of the time is left for evaluations and checkpoints.
            let tokens = minutes * 60.0 * (5.0 / 6.0) / per_token.max(1e-12);
            (tokens as u64).max(1)
        }
    };
    write_json(
        &path,
        &SuiteRecord {
            suite: plan.suite,
            budget,
            tokens_per_run: tokens,
        },
    )?;
    Ok(tokens)
}

/// Seconds per training token of every configuration among `specs` (timed over a few steps
/// on synthetic tokens after one warm-up step).
pub(crate) fn seconds_per_token<B: TrainBackend>(
    specs: &[&RunSpec],
    device: &B::Device,
) -> Result<BTreeMap<String, f64>, ExperimentError> {
    const TIMED_STEPS: u32 = 3;
    let mut cost = BTreeMap::new();
    for spec in specs {
        if cost.contains_key(&spec.label) {
            continue;
        }
        let config = &spec.config;
        let failed = |error| ExperimentError::Run {
            run: spec.id.clone(),
            error: Box::new(error),
        };
        let model = config
            .model
            .init::<B>(device)
            .map_err(|e| failed(e.into()))?;
        let mut stepper = Stepper::new(model, &config.optim);
        let o = &config.optim;
        let vocab = config.model.vocab_size as u64;
        let batch: Vec<u32> = (0..(o.batch_size * (o.seq_len + 1)) as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) % vocab) as u32)
            .collect();
        let step = |stepper: &mut Stepper<B>| {
            stepper
                .step(std::slice::from_ref(&batch), 1.0, None, device)
                .map_err(failed)
        };
        step(&mut stepper)?;
        let started = Instant::now();
        for _ in 0..TIMED_STEPS {
            step(&mut stepper)?;
        }
        let tokens = (o.batch_size * o.seq_len) as f64 * f64::from(TIMED_STEPS);
        cost.insert(spec.label.clone(), started.elapsed().as_secs_f64() / tokens);
    }
    Ok(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units_and_refuse_nonsense() {
        assert_eq!("2M".parse::<Budget>().unwrap(), Budget::Tokens(2_000_000));
        assert_eq!("1.5M".parse::<Budget>().unwrap(), Budget::Tokens(1_500_000));
        assert_eq!("500k".parse::<Budget>().unwrap(), Budget::Tokens(500_000));
        assert_eq!("4096".parse::<Budget>().unwrap(), Budget::Tokens(4096));
        assert_eq!(
            "3000 tokens".parse::<Budget>().unwrap(),
            Budget::Tokens(3000)
        );
        assert_eq!("45min".parse::<Budget>().unwrap(), Budget::Minutes(45.0));
        assert_eq!("0.5 min".parse::<Budget>().unwrap(), Budget::Minutes(0.5));
        for bad in ["", "abc", "0", "-5", "1.5", "0min", "-1min", "2X", "nanmin"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad:?} is refused");
        }
    }
}
