//! A [`Stepper`] written into a checkpoint folder and read back: the model and every
//! optimizer group's state. A LoRA finetuning run's checkpoint holds the model with its
//! adapters merged (what evaluation and export read), the adapters, and their AdamW as the
//! model's optimizer; it resumes from its base's weights and the adapters.

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::Recorder as _;
use memory_layers_values::{RowOptimizer, RowOptimizerRecord};

use super::{Stepper, Tuning};
use crate::checkpoint::{Recorder, checkpoint_error, load_model, record_error};
use crate::optim::value_param_ids;
use crate::run_dir::{CheckpointDir, Record};
use crate::{TrainBackend, TrainError};

impl<B: TrainBackend> Stepper<B> {
    /// Writes the model and optimizer records into checkpoint `dir`.
    pub fn save(&self, dir: &CheckpointDir) -> Result<(), TrainError> {
        let recorder = Recorder::default();
        self.trained()
            .save_file(dir.record(Record::Model), &recorder)
            .map_err(record_error(dir, Record::Model))?;
        let optim = match &self.tuning {
            Tuning::Lora { lora, optim } => {
                lora.clone()
                    .save_file(dir.record(Record::Lora), &recorder)
                    .map_err(record_error(dir, Record::Lora))?;
                optim.to_record()
            }
            _ => self.optim.to_record(),
        };
        recorder
            .record(optim, dir.record(Record::Optim))
            .map_err(record_error(dir, Record::Optim))?;
        recorder
            .record(self.value_optim.to_record(), dir.record(Record::ValueOptim))
            .map_err(record_error(dir, Record::ValueOptim))?;
        let rows: Vec<RowOptimizerRecord<B>> = self
            .row_optims
            .iter()
            .map(RowOptimizer::to_record)
            .collect();
        // The largest record of a run with AdamW on its values: written a tensor at a time.
        super::streamed::save_rows(rows, dir.record(Record::ValueRows))
            .map_err(record_error(dir, Record::ValueRows))
    }

    /// Loads the model and optimizer records from checkpoint `dir`.
    pub fn load(mut self, dir: &CheckpointDir, device: &B::Device) -> Result<Self, TrainError> {
        let recorder = Recorder::default();
        let optim = recorder
            .load(dir.record(Record::Optim), device)
            .map_err(record_error(dir, Record::Optim))?;
        match &mut self.tuning {
            // The model stays the base; the adapters and their AdamW come back.
            Tuning::Lora { lora, optim: adamw } => {
                *lora = lora
                    .clone()
                    .load_file(dir.record(Record::Lora), &recorder, device)
                    .map_err(record_error(dir, Record::Lora))?;
                *adamw = adamw.clone().load_record(optim);
            }
            _ => {
                self.model = load_model(self.model, dir, device)?;
                // Parameter ids come with the record: the value group must be found again.
                self.value_ids = value_param_ids(&self.model);
                self.optim = self.optim.load_record(optim);
            }
        }
        self.value_optim = self.value_optim.load_record(
            recorder
                .load(dir.record(Record::ValueOptim), device)
                .map_err(record_error(dir, Record::ValueOptim))?,
        );
        let rows: Vec<RowOptimizerRecord<B>> = recorder
            .load(dir.record(Record::ValueRows), device)
            .map_err(record_error(dir, Record::ValueRows))?;
        if rows.len() != self.row_optims.len() {
            return Err(checkpoint_error(
                dir.path(),
                format!(
                    "the checkpoint has {} row-wise value optimizers, this run {} \
                     (was it saved with another value_optimizer?)",
                    rows.len(),
                    self.row_optims.len()
                ),
            ));
        }
        self.row_optims = self
            .row_optims
            .into_iter()
            .zip(rows)
            .map(|(optim, record)| optim.load_record(record))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }
}
