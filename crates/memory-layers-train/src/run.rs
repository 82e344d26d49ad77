//! A run set up: its configuration resolved and saved, its data ready, and the stepper it
//! starts from (seeded).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::tensor::backend::{Backend, DTypeUsage, set_default_float_dtype};
use burn::tensor::{DType, FloatDType};

use memory_layers_data::progress::Phase;
use memory_layers_data::{Manifest, Split};

use burn::module::AutodiffModule;
use memory_layers_zoo::{Lora, Transformer};

use crate::checkpoint::{checkpoint_error, load_model, load_state};
use crate::config::{Precision, TrainConfig};
use crate::finetune::{Background, FinetuneConfig, FinetuneMethod, base_step};
use crate::optim::adamw;
use crate::prepare::{RunData, prepare_data};
use crate::run_dir::{CheckpointDir, RunDir};
use crate::stepper::{Sparse, Tuning};
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

/// A run set up: configuration resolved and saved, data ready, the checkpoint to resume.
pub(crate) struct Run {
    pub(crate) config: TrainConfig,
    pub(crate) dir: RunDir,
    pub(crate) data: RunData,
    pub(crate) checkpoint: Option<CheckpointDir>,
    pub(crate) options: TrainOptions,
}

impl Run {
    /// Resolves the configuration (from the run directory when resuming), prepares the data
    /// and sets the device's float type.
    pub(crate) fn start<B: Backend>(
        config: TrainConfig,
        device: &B::Device,
        options: TrainOptions,
    ) -> Result<Self, TrainError> {
        let dir = RunDir::new(&config.run.out);
        config.validate()?;
        if let Some(finetune) = &config.finetune {
            refuse_base_as_out(finetune, &dir)?;
        }
        // A new finetuning run reads its data with its base's tokenizer; checked before
        // `--overwrite` removes anything.
        let finetuning = config.finetune.is_some() && !options.resume;
        let base_tokenizer = match finetuning {
            true => Some(base_tokenizer(&config)?),
            false => None,
        };
        let checkpoint = if options.resume {
            let checkpoint = checkpoint_to_resume(&dir)?;
            config.check_resumes(&dir.load_config()?)?;
            let done = load_state(&checkpoint)?.step;
            if done > config.optim.steps {
                return Err(TrainError::config(
                    "optim.steps",
                    format!("{} (the checkpoint is at step {done})", config.optim.steps),
                    "must not be below the checkpoint's step: a resumed run can only go on",
                ));
            }
            Some(checkpoint)
        } else {
            if dir.holds_run() {
                if !options.overwrite {
                    return Err(TrainError::RunExists(dir.path().to_path_buf()));
                }
                dir.remove_run()?;
            }
            None
        };
        dir.create()?;
        // A new finetuning run copies its base's tokenizer in, and prepares its data and counts
        // its background afresh.
        if let Some(file) = base_tokenizer {
            dir.remove_derived_data()?;
            if file.exists() {
                std::fs::copy(&file, dir.tokenizer()).map_err(TrainError::io(&file))?;
            }
        }
        let reuse = options.resume || finetuning;
        let run = Self::ready::<B>(config, dir, checkpoint, options, reuse, device)?;
        if run.data.batches.len(Split::Train) == 0 {
            return Err(TrainError::config(
                "optim.seq_len",
                run.config.optim.seq_len,
                "the training split holds no sequence of seq_len + 1 tokens",
            ));
        }
        run.config.validate()?;
        run.config.save(&run.dir.config())?;
        Ok(run)
    }

    /// The run rank 0 of another process set up with [`Run::start`] (which must have
    /// finished): this rank's own configuration (the same command line), with the tokenizer,
    /// token shards and checkpoint rank 0 wrote read from the run directory; nothing written.
    pub(crate) fn follow<B: Backend>(
        config: TrainConfig,
        device: &B::Device,
        options: TrainOptions,
    ) -> Result<Self, TrainError> {
        let dir = RunDir::new(&config.run.out);
        config.validate()?;
        let checkpoint = options
            .resume
            .then(|| checkpoint_to_resume(&dir))
            .transpose()?;
        let options = TrainOptions {
            progress: false,
            ..options
        };
        Self::ready::<B>(config, dir, checkpoint, options, true, device)
    }

    /// The run with its data (what the run directory holds, with `reuse`) and the device's
    /// float type set.
    fn ready<B: Backend>(
        mut config: TrainConfig,
        dir: RunDir,
        checkpoint: Option<CheckpointDir>,
        options: TrainOptions,
        reuse: bool,
        device: &B::Device,
    ) -> Result<Self, TrainError> {
        let data = prepare_data(&mut config, &dir, reuse, options.progress)?;
        set_precision::<B>(config.run.precision, device)?;
        Ok(Self {
            config,
            dir,
            data,
            checkpoint,
            options,
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
        let (model, lora) = {
            let _drawing = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            B::seed(device, self.config.run.seed);
            let model = self.config.model.init::<B>(device)?;
            let model = model.clone().load_record(model.into_record());
            let lora = match &self.config.finetune {
                Some(f) if f.method == FinetuneMethod::Lora => {
                    let lora = f.lora().init(&model, device)?;
                    Some(lora.clone().load_record(lora.into_record()))
                }
                _ => None,
            };
            (model, lora)
        };
        // A finetuning run starts from its base's weights (a LoRA run resumes from them too);
        // a new run may start from a Hugging Face-named checkpoint (`run.init_from`); a
        // resumed one has its weights in its checkpoint.
        let model = match (&self.checkpoint, &self.config.run.init_from) {
            _ if self.config.finetune.is_some() => {
                let finetune = self.config.finetune.as_ref().expect("finetuning");
                let now = base_step(&finetune.base)?;
                if now != finetune.base_step {
                    return Err(checkpoint_error(
                        &finetune.base,
                        format!(
                            "the base checkpoint is at step {now}, this finetuning run started \
                             from step {}: the base run moved on, and this run would continue \
                             from other weights",
                            finetune.base_step
                        ),
                    ));
                }
                load_model(model, &CheckpointDir::at(&finetune.base), device)?
            }
            (None, Some(path)) => {
                let phase = Phase::start(
                    self.options.progress,
                    format!("initialising from {}", path.display()),
                );
                let (model, report) =
                    memory_layers_zoo::hf::load_hf(model, &self.config.model, path)
                        .map_err(TrainError::InitFrom)?;
                phase.done(report.summary());
                model
            }
            _ => model,
        };
        let stepper = match &self.config.finetune {
            Some(finetune) => {
                let tuning = self.tuning(finetune, &model, lora, device)?;
                Stepper::tuned(model, &self.config.optim, tuning)
            }
            None => Stepper::new(model, &self.config.optim),
        };
        match &self.checkpoint {
            Some(dir) => stepper.load(dir, device),
            None => Ok(stepper),
        }
    }
}

impl Run {
    /// What a finetuning run trains, from its base `model` (and fresh `lora` adapters).
    fn tuning<B: TrainBackend>(
        &self,
        finetune: &FinetuneConfig,
        model: &Transformer<B>,
        lora: Option<Lora<B>>,
        device: &B::Device,
    ) -> Result<Tuning<B>, TrainError> {
        Ok(match finetune.method {
            FinetuneMethod::Full => Tuning::All,
            FinetuneMethod::Memory => Tuning::Values { sparse: None },
            FinetuneMethod::Lora => Tuning::Lora {
                lora: lora.expect("drawn for LoRA runs"),
                optim: adamw(&self.config.optim).init(),
            },
            FinetuneMethod::SparseMemory => {
                let base = RunDir::containing(&finetune.base);
                let source = finetune.background.as_deref().unwrap_or(base.path());
                let background = Background::for_run(
                    &self.dir,
                    source,
                    &self.config,
                    &model.valid(),
                    (finetune.background_batches, finetune.background_sequences),
                    device,
                    self.options.progress,
                )?;
                Tuning::Values {
                    sparse: Some(Sparse {
                        background,
                        top_t: finetune.top_t,
                    }),
                }
            }
        })
    }
}

/// Refuses a finetuning run whose directory is its base's (`--overwrite` would delete the
/// base).
fn refuse_base_as_out(finetune: &FinetuneConfig, dir: &RunDir) -> Result<(), TrainError> {
    let base = RunDir::containing(&finetune.base);
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize())
    {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(base.path(), dir.path()) {
        return Err(TrainError::config(
            "run.out",
            dir.path().display(),
            "is the base run's directory: a finetuning run writes a new one (--out)",
        ));
    }
    Ok(())
}

/// The tokenizer file of a finetuning run's base (present for BPE bases), after checking
/// that the run's model and tokenizer are the base's and that a prepared folder it trains on
/// was tokenised as the base was.
fn base_tokenizer(config: &TrainConfig) -> Result<std::path::PathBuf, TrainError> {
    let finetune = config.finetune.as_ref().expect("a finetuning run");
    let base = RunDir::containing(&finetune.base);
    let saved = base.load_config()?;
    let mut model = config.model.clone();
    model.vocab_size = saved.model.vocab_size;
    if model != saved.model {
        return Err(TrainError::config(
            "model",
            base.config().display(),
            "must be the base run's model: finetuning changes weights, not the architecture",
        ));
    }
    if config.data.tokenizer != saved.data.tokenizer {
        return Err(TrainError::config(
            "data.tokenizer",
            config.data.tokenizer,
            "must be the base run's tokenizer",
        ));
    }
    let file = base.tokenizer();
    if let Some(prepared) = &config.data.prepared {
        let manifest = Manifest::load(prepared)?;
        let theirs = Manifest::tokenizer_file(prepared);
        let read = |path: &std::path::Path| std::fs::read(path).ok();
        if manifest.tokenizer != saved.data.tokenizer || read(&theirs) != read(&file) {
            return Err(TrainError::config(
                "data.prepared",
                prepared.display(),
                "was tokenised with another tokenizer than the base run's: prepare it with \
                 --tokenizer BASE/tokenizer.json",
            ));
        }
    }
    Ok(file)
}

/// The checkpoint a resumed run in `dir` starts from.
fn checkpoint_to_resume(dir: &RunDir) -> Result<CheckpointDir, TrainError> {
    dir.latest_checkpoint()
        .ok_or_else(|| checkpoint_error(dir.path(), "no checkpoint to resume from"))
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
