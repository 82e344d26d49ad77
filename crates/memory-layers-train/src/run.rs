//! A run set up: its configuration resolved and saved, its data ready, and the stepper it
//! starts from (seeded).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::tensor::backend::{Backend, DTypeUsage, set_default_float_dtype};
use burn::tensor::{DType, FloatDType};

use crate::checkpoint::{checkpoint_error, find_checkpoint, load_state};
use crate::config::{Precision, TrainConfig};
use crate::data::Split;
use crate::prepare::{RunData, prepare_data};
use crate::{Stepper, TrainBackend, TrainError};

/// Held while a run seeds the device and draws its initial parameters.
static INIT: Mutex<()> = Mutex::new(());

/// A request to stop a run early (SIGINT, SIGTERM): the loop finishes its step, writes a
/// checkpoint and returns [`TrainError::Interrupted`]. Clones share the request.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A request not yet made.
    pub fn new() -> Self {
        Self::default()
    }

    /// The flag that makes the request, for a signal handler to set.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }

    /// Whether the request was made.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue the run in `config.run.out` from its checkpoint. The configuration must be
    /// the saved one but for the number of steps and the logging, checkpoint and evaluation
    /// settings ([`TrainConfig::check_resumes`]).
    pub resume: bool,
    /// Replace a run already in `config.run.out` (otherwise an error).
    pub overwrite: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop early when this is requested.
    pub interrupt: Interrupt,
}

/// Removes what a run wrote into `out` (not the folder, nor files it did not write: a
/// tokenizer file given with `--tokenizer` may live there).
fn remove_run(out: &Path) -> Result<(), TrainError> {
    for entry in std::fs::read_dir(out).map_err(TrainError::io(out))? {
        let path = entry.map_err(TrainError::io(out))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let ours = name.as_deref().is_some_and(|n| {
            ["config.toml", "metrics.jsonl", "eval.json", "loss.svg"].contains(&n)
                || n.starts_with("checkpoint")
                || n.starts_with(".checkpoint")
        });
        if ours {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(TrainError::io(&path))?;
        }
    }
    Ok(())
}

/// A run set up: configuration resolved and saved, data ready, the checkpoint to resume.
pub(crate) struct Run {
    pub(crate) config: TrainConfig,
    pub(crate) data: RunData,
    pub(crate) checkpoint: Option<PathBuf>,
    pub(crate) options: TrainOptions,
}

impl Run {
    /// Resolves the configuration (from the run directory when resuming), prepares the data
    /// and sets the device's float type.
    pub(crate) fn start<B: Backend>(
        mut config: TrainConfig,
        device: &B::Device,
        options: TrainOptions,
    ) -> Result<Self, TrainError> {
        let out = config.run.out.clone();
        let config_path = out.join("config.toml");
        config.validate()?;
        let checkpoint = if options.resume {
            let dir = checkpoint_to_resume(&out)?;
            config.check_resumes(&TrainConfig::load(&config_path)?)?;
            let done = load_state(&dir)?.step;
            if done > config.optim.steps {
                return Err(TrainError::config(
                    "optim.steps",
                    format!("{} (the checkpoint is at step {done})", config.optim.steps),
                    "must not be below the checkpoint's step: a resumed run can only go on",
                ));
            }
            Some(dir)
        } else {
            if config_path.exists() || find_checkpoint(&out).is_some() {
                if !options.overwrite {
                    return Err(TrainError::RunExists(out));
                }
                remove_run(&out)?;
            }
            None
        };
        std::fs::create_dir_all(&out).map_err(TrainError::io(&out))?;
        let data = prepare_data(&mut config, &out, options.resume, options.progress)?;
        if data.batches.len(Split::Train) == 0 {
            return Err(TrainError::config(
                "optim.seq_len",
                config.optim.seq_len,
                "the training split holds no sequence of seq_len + 1 tokens",
            ));
        }
        config.validate()?;
        config.save(&config_path)?;
        set_precision::<B>(config.run.precision, device)?;
        Ok(Self {
            config,
            data,
            checkpoint,
            options,
        })
    }

    /// The run rank 0 of another process set up with [`Run::start`] (which must have
    /// finished): this rank's own configuration (the same command line), with the tokenizer,
    /// token shards and checkpoint rank 0 wrote read from the run directory; nothing written.
    pub(crate) fn follow<B: Backend>(
        mut config: TrainConfig,
        device: &B::Device,
        options: TrainOptions,
    ) -> Result<Self, TrainError> {
        let out = config.run.out.clone();
        config.validate()?;
        let checkpoint = if options.resume {
            Some(checkpoint_to_resume(&out)?)
        } else {
            None
        };
        let data = prepare_data(&mut config, &out, true, false)?;
        set_precision::<B>(config.run.precision, device)?;
        Ok(Self {
            config,
            data,
            checkpoint,
            options: TrainOptions {
                progress: false,
                ..options
            },
        })
    }

    /// The whole stepper: fresh, or from the checkpoint being resumed.
    pub(crate) fn stepper<B: TrainBackend>(
        &self,
        device: &B::Device,
    ) -> Result<Stepper<B>, TrainError> {
        // Burn initialises parameters lazily, in the order of first use (which the optimizer
        // setup changes) and separately in each clone: materialise them now, in module order,
        // so that one device and every rank of a parallel run start from the same values.
        // The device's random stream is global: seeding and drawing hold a process-wide lock,
        // so that runs started side by side in one process each draw their own seed's numbers.
        let model = {
            let _drawing = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            B::seed(device, self.config.run.seed);
            let model = self.config.model.init::<B>(device)?;
            model.clone().load_record(model.into_record())
        };
        // A new run may start from a Hugging Face-named checkpoint (`run.init_from`); a
        // resumed one has its weights in its checkpoint.
        let model = match (&self.checkpoint, &self.config.run.init_from) {
            (None, Some(path)) => {
                let phase = crate::phase::Phase::start(
                    self.options.progress,
                    format!("initialising from {}", path.display()),
                );
                let (model, report) = crate::export::load_hf(model, &self.config.model, path)
                    .map_err(|e| TrainError::InitFrom(Box::new(e)))?;
                phase.done(report.summary());
                model
            }
            _ => model,
        };
        let stepper = Stepper::new(model, &self.config.optim);
        match &self.checkpoint {
            Some(dir) => stepper.load(dir, device),
            None => Ok(stepper),
        }
    }
}

/// The checkpoint a resumed run in `out` starts from.
fn checkpoint_to_resume(out: &Path) -> Result<PathBuf, TrainError> {
    find_checkpoint(out).ok_or_else(|| checkpoint_error(out, "no checkpoint to resume from"))
}

/// Makes `precision` the device's default float type; must run before any tensor exists.
fn set_precision<B: Backend>(precision: Precision, device: &B::Device) -> Result<(), TrainError> {
    if precision == Precision::F32 {
        return Ok(());
    }
    let unsupported = |rule| TrainError::config("run.precision", "bf16", rule);
    if !B::dtype_usage(device, DType::BF16).contains(DTypeUsage::Arithmetic) {
        return Err(unsupported("this backend does not compute in bf16"));
    }
    set_default_float_dtype::<B>(device, FloatDType::BF16).map_err(|_| {
        unsupported("must be chosen before any tensor is made on the device (a new process)")
    })
}
