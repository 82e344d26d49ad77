//! A suite's directory: every file a suite writes is named here, and only here.
//!
//! ```text
//! SUITE/
//!   suite.json        the suite and its resolved budget (a resumed suite trains the same runs)
//!   summary.json      one row per finished run
//!   summary.md        the table: mean over seeds (lowest–highest)
//!   continual.json    the continual suite's finetuned checkpoints, scored
//!   continual.md      its tables
//!   *.svg             the figures
//!   rows/ID.json      the row of each finished run (each scored checkpoint, for continual)
//!   runs/ID/          each run's directory (memory_layers_train::RunDir)
//! ```

use std::path::{Path, PathBuf};

use memory_layers_train::RunDir;

use crate::Suite;

const RECORD: &str = "suite.json";
const SUMMARY_JSON: &str = "summary.json";
const SUMMARY_MD: &str = "summary.md";
const CONTINUAL_JSON: &str = "continual.json";
const CONTINUAL_MD: &str = "continual.md";
const ROWS: &str = "rows";
const RUNS: &str = "runs";

/// A figure of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Fact recall against FLOPs per token.
    RecallVsFlops,
    /// Fact recall against total parameters.
    RecallVsParams,
    /// Held-out QA against FLOPs per token.
    QaVsFlops,
    /// Held-out QA against total parameters.
    QaVsParams,
    /// Bits of facts held against total parameters, a line per model family.
    BitsVsParams,
    /// Bits of facts held against FLOPs per token, a line per model family.
    BitsVsFlops,
    /// Bits held at each evaluation during training.
    BitsOverTraining,
    /// Training loss of each configuration.
    Loss,
    /// Facts A forgotten against facts B learned, a line per finetuning method.
    ForgettingVsLearning,
}

impl Figure {
    fn file(self) -> &'static str {
        match self {
            Self::RecallVsFlops => "recall_vs_flops.svg",
            Self::RecallVsParams => "recall_vs_params.svg",
            Self::QaVsFlops => "qa_vs_flops.svg",
            Self::QaVsParams => "qa_vs_params.svg",
            Self::BitsVsParams => "bits_vs_params.svg",
            Self::BitsVsFlops => "bits_vs_flops.svg",
            Self::BitsOverTraining => "bits_over_training.svg",
            Self::Loss => "loss.svg",
            Self::ForgettingVsLearning => "forgetting_vs_learning.svg",
        }
    }
}

/// A suite's directory (which need not exist yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteDir {
    root: PathBuf,
}

impl SuiteDir {
    /// The suite directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `suite.json`.
    pub fn record(&self) -> PathBuf {
        self.root.join(RECORD)
    }

    /// `summary.json`.
    pub fn summary_json(&self) -> PathBuf {
        self.root.join(SUMMARY_JSON)
    }

    /// `summary.md`.
    pub fn summary_md(&self) -> PathBuf {
        self.root.join(SUMMARY_MD)
    }

    /// `continual.json`.
    pub fn continual_json(&self) -> PathBuf {
        self.root.join(CONTINUAL_JSON)
    }

    /// `continual.md`.
    pub fn continual_md(&self) -> PathBuf {
        self.root.join(CONTINUAL_MD)
    }

    /// The file of `figure`.
    pub fn figure(&self, figure: Figure) -> PathBuf {
        self.root.join(figure.file())
    }

    /// The row of run `id`, written when it is finished and evaluated.
    pub fn row(&self, id: &str) -> PathBuf {
        self.root.join(ROWS).join(format!("{id}.json"))
    }

    /// The run directory of run `id`.
    pub fn run(&self, id: &str) -> RunDir {
        RunDir::new(self.root.join(RUNS).join(id))
    }

    /// Creates the folders.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(RUNS))?;
        std::fs::create_dir_all(self.root.join(ROWS))
    }

    /// Every file of `suite`'s report.
    pub fn report_files(&self, suite: Suite) -> Vec<PathBuf> {
        let continual = match suite {
            Suite::Continual => vec![
                self.continual_json(),
                self.continual_md(),
                self.figure(Figure::ForgettingVsLearning),
            ],
            _ => Vec::new(),
        };
        [self.summary_json(), self.summary_md()]
            .into_iter()
            .chain(suite.figures().iter().map(|&f| self.figure(f)))
            .chain(continual)
            .collect()
    }
}
