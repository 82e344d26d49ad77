//! The suites: which runs each holds, built from one base configuration so that runs differ
//! only in what the comparison is about.

use std::path::PathBuf;

use memory_layers_data::{CompactFactsConfig, FactsConfig, TokenizerKind};
use memory_layers_train::TrainConfig;
use memory_layers_zoo::{ModelKind, Size, account};
use serde::{Deserialize, Serialize};

use crate::summary::{capacity_markdown, markdown};
use crate::{Budget, ExperimentError, Figure, SummaryRow};

/// A named set of training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Suite {
    /// Dense, MoE, PEER, Memory and Memory+ at the base's FLOPs per token, and dense models
    /// at about 2× and 4× those FLOPs.
    Models,
    /// Memory+ at five memory sizes (32² … 512² values), and the dense base for reference.
    MemorySize,
    /// Memory+ variants: 1 layer in the middle, 3 spread (the default), 3 adjacent; plain,
    /// swilu and sigmoid-gated memory; qk-norm toggled.
    Ablations,
    /// Knowledge capacity in bits, where parameters are the limit: dense models at four
    /// widths, and Memory and Memory+ on the narrowest at four pool sizes, trained on the
    /// compact knowledge corpus.
    Capacity,
    /// Continual learning: Memory+ and dense bases on facts A and natural text, finetuned
    /// on new facts B by every method at a sweep of settings, scored on both.
    Continual,
}

impl Suite {
    /// The budget that `experiment SUITE` uses unless told otherwise: training tokens per
    /// run such that the suite takes about an hour on two CPU cores (docs/results.md); for
    /// `capacity`, [`CAPACITY_EXPOSURES`] of every fact of the base's corpus.
    pub fn default_budget(self, base: &Base) -> Budget {
        match self {
            Suite::Models | Suite::MemorySize | Suite::Ablations | Suite::Continual => {
                Budget::Tokens(1_200_000)
            }
            Suite::Capacity => {
                let round = base.compact.tokens_per_pass() / base.compact.exposures;
                Budget::Tokens((round * CAPACITY_EXPOSURES) as u64)
            }
        }
    }

    /// The suite's table of `rows` (markdown): for `capacity` the bits held per kind of
    /// parameter, for the others recall, QA and loss.
    pub fn table(self, rows: &[SummaryRow]) -> String {
        match self {
            Suite::Capacity => capacity_markdown(rows),
            _ => markdown(rows),
        }
    }

    /// The figures of the suite's report.
    pub fn figures(self) -> &'static [Figure] {
        match self {
            Suite::Capacity => &[
                Figure::BitsVsParams,
                Figure::BitsVsFlops,
                Figure::BitsOverTraining,
                Figure::Loss,
            ],
            Suite::Continual => &[Figure::Loss],
            _ => &[
                Figure::RecallVsFlops,
                Figure::RecallVsParams,
                Figure::QaVsFlops,
                Figure::QaVsParams,
                Figure::Loss,
            ],
        }
    }
}

memory_layers_zoo::serde_names!(Suite);

/// The base every suite's runs are made from: a small Llama-style model on the CPU, trained
/// on a mix of natural text and the generated knowledge corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    /// Training text instead of the embedded plays and the generated facts (a user's own
    /// corpus, with its facts).
    pub data: Vec<PathBuf>,
    /// QA set instead of the generated held-out questions.
    pub qa: Option<PathBuf>,
    /// Recall probes instead of the generated ones.
    pub recall: Option<PathBuf>,
    /// The generated knowledge corpus (when `data` is empty).
    pub facts: FactsConfig,
    /// The compact knowledge corpus of the capacity suite (its exposures follow `tokens`).
    pub compact: CompactFactsConfig,
    /// Training tokens of every run.
    pub tokens: u64,
    /// Seeds per configuration (0, 1, …).
    pub seeds: usize,
    /// Steps of each finetuning run of the continual suite.
    pub finetune_steps: usize,
}

/// Blocks of the base model: enough that Memory+ replaces 3 FFNs of 6, one in the middle.
pub const BASE_LAYERS: usize = 6;
/// Sub-keys per half of the base's memory (128² = 16384 values).
pub const BASE_N_KEYS: usize = 128;
/// The generated corpus of the suites: 40 people, 1.4 kbit of facts, about 57 exposures of
/// each at the default budget (docs/results.md has the sizing).
pub const SUITE_FACTS: FactsConfig = FactsConfig {
    people: 40,
    bios_per_person: 10,
    seed: 1,
    first: 0,
};
/// Bytes of the embedded plays in the suites' training text (the next 100 kB are the
/// natural-text validation set).
pub const SUITE_TEXT_BYTES: usize = 100_000;

/// The run `train` makes without a size: `kind` as in the `models` suite at its default
/// budget, seed 0, so that its result compares with the committed suite.
pub fn default_run(kind: ModelKind) -> TrainConfig {
    let Budget::Tokens(tokens) = Suite::Models.default_budget(&Base::new(1, 1)) else {
        unreachable!("the models suite's default budget is in tokens")
    };
    let mut config = Base::new(tokens, 1).config(kind);
    config.run.out = PathBuf::from("runs").join(kind.to_string());
    config
}

impl Base {
    /// The base with the generated data and `tokens` per run.
    pub fn new(tokens: u64, seeds: usize) -> Self {
        Self {
            data: Vec::new(),
            qa: None,
            recall: None,
            facts: SUITE_FACTS,
            compact: CAPACITY_FACTS,
            tokens,
            seeds,
            finetune_steps: crate::CONTINUAL_STEPS,
        }
    }

    /// The configuration of a run of `kind` (before the suite's changes), seed 0.
    pub fn config(&self, kind: ModelKind) -> TrainConfig {
        let mut config = TrainConfig::new(kind, Size::Tiny);
        let model = &mut config.model;
        model.layers = BASE_LAYERS;
        model.product_keys = model.product_keys.clone().with_n_keys(BASE_N_KEYS);
        let data = &mut config.data;
        data.paths = self.data.clone();
        data.qa = self.qa.clone();
        data.recall = self.recall.clone();
        data.facts = self.data.is_empty().then(|| self.facts.clone());
        data.embedded_bytes = self.data.is_empty().then_some(SUITE_TEXT_BYTES);
        self.schedule(&mut config);
        config
    }

    /// Steps for the base's tokens per run, warmup, checkpoints, logging, evaluations, every
    /// QA question and recall probe.
    fn schedule(&self, config: &mut TrainConfig) {
        let o = &mut config.optim;
        let per_step = (o.batch_size * o.seq_len * o.grad_accum) as u64;
        o.steps = self.tokens.div_ceil(per_step).max(1) as usize;
        o.warmup_steps = (o.steps / 20).max(1);
        let run = &mut config.run;
        run.checkpoint_every = (o.steps / 10).max(1);
        run.log_every = (o.steps / 100).clamp(1, 50);
        run.eval_every = (o.steps / 4).max(1);
        run.qa_limit = 0;
        run.recall_limit = 0;
    }
}

/// One run of a suite.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Directory name under the suite's `runs/`: `{label}-s{seed}`.
    pub id: String,
    /// The configuration it stands for (the same for every seed).
    pub label: String,
    /// Its seed.
    pub seed: u64,
    /// What it trains.
    pub config: TrainConfig,
}

/// A labelled configuration, before seeds.
type Variant = (String, TrainConfig);

impl Suite {
    /// Every run of the suite, seed by seed (a whole comparison per seed), in a fixed order.
    pub fn runs(self, base: &Base) -> Result<Vec<RunSpec>, ExperimentError> {
        if base.seeds == 0 {
            return Err(ExperimentError::Setting {
                field: "seeds",
                value: "0".into(),
                rule: "must be at least 1",
            });
        }
        let variants = match self {
            Suite::Models => models(base),
            Suite::MemorySize => memory_size(base),
            Suite::Ablations => ablations(base),
            Suite::Capacity => capacity(base),
            Suite::Continual => crate::continual::bases(base),
        };
        let mut runs = Vec::new();
        for seed in 0..base.seeds as u64 {
            for (label, config) in &variants {
                let mut config = config.clone();
                config.run.seed = seed;
                config.validate().map_err(|error| ExperimentError::Run {
                    run: label.clone(),
                    error: Box::new(error),
                })?;
                runs.push(RunSpec {
                    id: format!("{label}-s{seed}"),
                    label: label.clone(),
                    seed,
                    config,
                });
            }
        }
        Ok(runs)
    }
}

/// `models`: the paper's five at the base's compute, and wider dense models at ~2× and ~4×
/// its FLOPs per token.
fn models(base: &Base) -> Vec<Variant> {
    let memory = base.config(ModelKind::Memory);
    let mut moe = base.config(ModelKind::Moe);
    // The paper's rule: the fewest experts whose total parameters exceed Memory's.
    let memory_total = account(&memory.model).total_params;
    moe.model.moe.experts = (2..=64)
        .find(|&experts| {
            let mut c = moe.model.clone();
            c.moe.experts = experts;
            account(&c).total_params > memory_total
        })
        .unwrap_or(64);
    let mut peer = base.config(ModelKind::Peer);
    // The paper pairs 1024² memory values with 768² PEER experts (two vectors each): the
    // same ratio of sub-keys, about the same parameters.
    let keys = &mut peer.model.product_keys;
    *keys = keys.clone().with_n_keys((BASE_N_KEYS * 3).div_ceil(4));
    let dense = base.config(ModelKind::Dense);
    vec![
        ("dense".into(), dense.clone()),
        ("moe".into(), moe),
        ("peer".into(), peer),
        ("memory".into(), memory),
        ("memory-plus".into(), base.config(ModelKind::MemoryPlus)),
        ("dense-2x".into(), wider(&dense, 96, 320)),
        ("dense-4x".into(), wider(&dense, 128, 512)),
    ]
}

/// `dense` at model dim `dim` and FFN hidden size `hidden` (attention heads unchanged).
fn wider(dense: &TrainConfig, dim: usize, hidden: usize) -> TrainConfig {
    let mut config = dense.clone();
    config.model.dim = dim;
    config.model.ffn_hidden = hidden;
    config.model.product_keys.dim = dim;
    config
}

/// `memory-size`: Memory+ from 32² to 512² values (256×), and dense for reference.
fn memory_size(base: &Base) -> Vec<Variant> {
    let mut variants = vec![("dense".to_string(), base.config(ModelKind::Dense))];
    for n_keys in [32, 64, 128, 256, 512] {
        let mut config = base.config(ModelKind::MemoryPlus);
        let keys = &mut config.model.product_keys;
        *keys = keys.clone().with_n_keys(n_keys);
        variants.push((format!("memory-plus-{n_keys}sq"), config));
    }
    variants
}

/// `ablations`: placement (1 middle, 3 spread, 3 adjacent), the value path (plain, swilu,
/// sigmoid-gated) and qk-norm, each changed alone from Memory+.
fn ablations(base: &Base) -> Vec<Variant> {
    let plus = base.config(ModelKind::MemoryPlus);
    let mid = plus.model.layers / 2;
    let with = |f: &dyn Fn(&mut TrainConfig)| {
        let mut config = plus.clone();
        f(&mut config);
        config
    };
    let qk = !plus.model.product_keys.qk_norm;
    let spread = plus.model.product_key_layers();
    vec![
        ("memory-plus".into(), plus.clone()),
        (
            "one-layer".into(),
            with(&|c| c.model.memory.layers = Some(vec![mid])),
        ),
        (
            "adjacent".into(),
            with(&|c| c.model.memory.layers = Some(vec![mid - 1, mid, mid + 1])),
        ),
        ("plain".into(), with(&|c| plain(c, spread.clone(), false))),
        ("gated".into(), with(&|c| plain(c, spread.clone(), true))),
        (
            format!("qk-norm-{}", if qk { "on" } else { "off" }),
            with(&|c| c.model.product_keys.qk_norm = qk),
        ),
    ]
}

/// Memory without swilu in blocks `layers` (Memory+'s placement), with the sigmoid gate or
/// without.
fn plain(config: &mut TrainConfig, layers: Vec<usize>, gated: bool) {
    config.model.kind = ModelKind::Memory;
    config.model.memory.layers = Some(layers);
    config.model.memory.gated = gated;
}

/// The capacity suite's corpus: sized in docs/results.md so that the dense models'
/// parameters, not their exposures, limit what they store. `exposures` follows the budget.
pub const CAPACITY_FACTS: CompactFactsConfig = CompactFactsConfig {
    people: 8000,
    attributes: 6,
    values: 64,
    exposures: 1,
    seed: 1,
};
/// Exposures of each fact at the capacity suite's default budget.
pub const CAPACITY_EXPOSURES: usize = 100;
/// Widths of the capacity suite's dense models (4 blocks, heads of 8 dims each).
pub const CAPACITY_DIMS: [usize; 4] = [16, 24, 40, 56];
/// Sub-keys per half of the capacity suite's memories on the narrowest base (32² … 256²).
pub const CAPACITY_N_KEYS: [usize; 4] = [32, 64, 128, 256];
/// Blocks of every capacity model.
const CAPACITY_LAYERS: usize = 4;
/// The capacity models' peak learning rate times their width.
const CAPACITY_LR_WIDTH: f64 = 0.5;

impl Base {
    /// A run of the capacity suite: `kind` at width `dim` on the compact knowledge corpus,
    /// its exposures set by the tokens per run.
    fn capacity_config(&self, kind: ModelKind, dim: usize) -> TrainConfig {
        let mut config = TrainConfig::new(kind, Size::Tiny);
        let model = &mut config.model;
        model.dim = dim;
        model.layers = CAPACITY_LAYERS;
        model.heads = (dim / 8).max(1);
        model.kv_heads = model.heads;
        model.ffn_hidden = 4 * dim;
        let keys = &mut model.product_keys;
        keys.dim = dim;
        keys.k_dim = dim / 2;
        let round = self.compact.tokens_per_pass() as u64;
        let data = &mut config.data;
        data.facts = None;
        data.tokenizer = TokenizerKind::Words;
        data.val_fraction = 0.01;
        data.compact_facts = Some(CompactFactsConfig {
            exposures: self.tokens.div_ceil(round).max(1) as usize,
            ..self.compact.clone()
        });
        let o = &mut config.optim;
        (o.batch_size, o.seq_len) = (32, 64);
        // The learning rate falls with the width (as in µP); pilot runs set the constant
        // (docs/results.md, "Capacity, sized before the runs").
        o.lr = CAPACITY_LR_WIDTH / dim as f64;
        o.value_lr = 10.0 * o.lr;
        self.schedule(&mut config);
        config.run.recall_limit = 300;
        config
    }
}

/// `capacity`: dense at four widths (about 10× in parameters), and Memory and Memory+ on the
/// narrowest at four pool sizes (64× in values).
fn capacity(base: &Base) -> Vec<Variant> {
    let mut variants: Vec<Variant> = CAPACITY_DIMS
        .iter()
        .map(|&dim| {
            (
                format!("dense-{dim}"),
                base.capacity_config(ModelKind::Dense, dim),
            )
        })
        .collect();
    let narrowest = CAPACITY_DIMS[0];
    for kind in [ModelKind::Memory, ModelKind::MemoryPlus] {
        for n_keys in CAPACITY_N_KEYS {
            let mut config = base.capacity_config(kind, narrowest);
            let keys = &mut config.model.product_keys;
            *keys = keys.clone().with_n_keys(n_keys);
            variants.push((format!("{kind}-{narrowest}-{n_keys}sq"), config));
        }
    }
    variants
}
