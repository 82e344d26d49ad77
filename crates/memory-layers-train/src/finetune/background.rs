//! Background access counts of a memory pool, the statistic sparse memory finetuning ranks
//! value rows against (Lin et al., "Continual Learning via Sparse Memory Finetuning", 2025):
//! in how many batches of background text (the pretraining data) each value row was read at
//! least once. A finetuning step then updates only the rows its batch reads much more than
//! background text does: the top `t` by TF-IDF,
//!
//! ```text
//! score(i) = c(i) / Σ_j c(j) · ln((|B| + 1) / (df(i) + 1))
//! ```
//!
//! `c(i)` the reads of row `i` in the batch (every retrieval of every memory layer sharing the
//! pool, not weighted), `df(i)` the background batches that read it, `|B|` their number.

use std::path::Path;

use memory_layers_data::progress::Progress;
use memory_layers_data::{Batches, DataError, MANIFEST, write_atomic};
use memory_layers_zoo::{Transformer, ZooBackend};
use serde::{Deserialize, Serialize};

use crate::checkpoint::checkpoint_error;
use crate::config::DataConfig;
use crate::loss::lm_loss;
use crate::prepare::prepare_data;
use crate::run_dir::RunDir;
use crate::{TrainConfig, TrainError};

/// The background reads of a memory pool (`background.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Background {
    /// Background documents counted (`|B|`).
    pub batches: usize,
    /// Sequences per document.
    pub sequences: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Rows of the pool (`n_keys²`).
    pub values: usize,
    /// Per row, the documents that read it at least once (`df`).
    pub df: Vec<u32>,
}
/// The distinct rows `indices` read and how often each was, ascending by row.
pub(crate) fn reads(mut indices: Vec<u32>) -> Vec<(u32, u32)> {
    indices.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for i in indices {
        match out.last_mut() {
            Some((row, count)) if *row == i => *count += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

/// The rows every memory layer of `model` read on `tokens` (`batch` sequences).
pub(crate) fn pool_reads<B: ZooBackend>(
    model: &Transformer<B>,
    tokens: &[u32],
    batch: usize,
    device: &B::Device,
) -> Result<Vec<u32>, TrainError> {
    let (_, out) = lm_loss(model, tokens, batch, device, None)?;
    model.check_value_ranges()?;
    Ok(retrieved(&out.memory))
}

/// Every index the memory layers' retrievals in `memory` read.
pub(crate) fn retrieved<B: burn::tensor::backend::Backend>(
    memory: &[(usize, memory_layers_nn::MemoryOutput<B, 3>)],
) -> Vec<u32> {
    memory
        .iter()
        .flat_map(|(_, out)| {
            out.retrieval
                .indices
                .clone()
                .into_data()
                .convert::<i64>()
                .into_vec::<i64>()
                .expect("converted on the host")
        })
        .map(|i| i as u32)
        .collect()
}

impl Background {
    /// Counts the reads of `model`'s pool on the first `documents` documents of
    /// `sequences` training sequences each of `batches`.
    pub fn count<B: ZooBackend>(
        model: &Transformer<B>,
        batches: &Batches,
        documents: usize,
        sequences: usize,
        device: &B::Device,
        progress: bool,
    ) -> Result<Self, TrainError> {
        let values = model
            .pool
            .as_ref()
            .map(|pool| pool.weight.dims()[0])
            .unwrap_or_default();
        let mut df = vec![0u32; values];
        let mut bar = Progress::start(
            progress,
            "counting background reads",
            documents,
            "documents",
        );
        for index in 0..documents {
            let tokens = batches.train_batch(index, sequences)?;
            for (row, _) in reads(pool_reads(model, &tokens, sequences, device)?) {
                df[row as usize] += 1;
            }
            bar.add(1);
        }
        bar.done(format!(
            "{} of {values} rows read",
            df.iter().filter(|&&d| d > 0).count()
        ));
        Ok(Self {
            batches: documents,
            sequences,
            seq_len: batches.seq_len(),
            values,
            df,
        })
    }

    /// The counts in `path`: a `background.json`, or a run directory holding one.
    fn stored(path: &Path, values: usize) -> Result<Option<Self>, TrainError> {
        let file = if path.is_dir() {
            RunDir::new(path).background()
        } else {
            path.to_path_buf()
        };
        file.is_file()
            .then(|| Self::load(&file, values))
            .transpose()
    }

    /// The counts a sparse-memory run in `dir` ranks against: its own `background.json` (saved
    /// when it started); else those stored at `source` (a `background.json`, or a run
    /// directory holding one); else counted with `model` on the training data of `source` (a
    /// run directory, or a folder `prepare` wrote, read with the run `config`'s settings) and
    /// saved into `dir`. `source` is only read.
    pub(crate) fn for_run<B: ZooBackend>(
        dir: &RunDir,
        source: &Path,
        config: &TrainConfig,
        model: &Transformer<B>,
        (documents, sequences): (usize, usize),
        device: &B::Device,
        progress: bool,
    ) -> Result<Self, TrainError> {
        let values = config.model.product_keys.n_keys.pow(2);
        if let Some(own) = Self::stored(&dir.background(), values)? {
            return Ok(own);
        }
        if let Some(stored) = Self::stored(source, values)? {
            stored.save(&dir.background())?;
            return Ok(stored);
        }
        let batches = background_data(source, config, progress)?;
        let counted = Self::count(model, &batches, documents, sequences, device, progress)?;
        counted.save(&dir.background())?;
        Ok(counted)
    }

    /// Reads `background.json` at `path`, checked against a pool of `values` rows.
    pub fn load(path: &Path, values: usize) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        let background: Self = serde_json::from_str(&text)
            .map_err(|e| DataError::input(path, None, format!("invalid background counts: {e}")))?;
        if background.values != values || background.df.len() != values {
            return Err(DataError::input(
                path,
                None,
                format!(
                    "counts a pool of {} values, this model's has {values}: background counts \
                     from another model shape",
                    background.df.len()
                ),
            )
            .into());
        }
        Ok(background)
    }

    /// Writes `background.json` at `path`.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let text = serde_json::to_string(self).expect("counts serialise");
        Ok(write_atomic(path, text.as_bytes())?)
    }

    /// The `t` rows of a batch's `reads` (row, count) with the highest TF-IDF, ascending by
    /// row; ties go to the smaller row.
    pub fn top(&self, reads: &[(u32, u32)], t: usize) -> Vec<u32> {
        let total: u32 = reads.iter().map(|&(_, c)| c).sum();
        let idf = |row: u32| {
            ((self.batches as f64 + 1.0) / (f64::from(self.df[row as usize]) + 1.0)).ln()
        };
        let mut scored: Vec<(f64, u32)> = reads
            .iter()
            .map(|&(row, count)| (f64::from(count) / f64::from(total.max(1)) * idf(row), row))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut top: Vec<u32> = scored.into_iter().take(t).map(|(_, row)| row).collect();
        top.sort_unstable();
        top
    }
}

/// Counts the background reads of the run or checkpoint `run` on its own training data
/// (`documents` documents of `sequences` sequences) and saves them in the run directory's
/// `background.json`, where finetuning runs from it find them.
pub fn count_background<B: ZooBackend>(
    run: &Path,
    (documents, sequences): (usize, usize),
    device: &B::Device,
    progress: bool,
) -> Result<Background, TrainError> {
    let opened = crate::open_run::<B>(run, device)?;
    if opened.model.pool.is_none() {
        return Err(checkpoint_error(
            run,
            "its model has no memory layers: nothing to count (a Memory or Memory+ model has them)",
        ));
    }
    for (field, value) in [
        ("finetune.background_batches", documents),
        ("finetune.background_sequences", sequences),
    ] {
        if value == 0 {
            return Err(TrainError::config(field, value, "must be at least 1"));
        }
    }
    let batches = background_data(opened.dir.path(), &opened.config, progress)?;
    let counted = Background::count(
        &opened.model,
        &batches,
        documents,
        sequences,
        device,
        progress,
    )?;
    counted.save(&opened.dir.background())?;
    Ok(counted)
}

/// The training batches of `source`: a run directory (its data, as it trained on them) or a
/// folder `prepare` wrote (cut as `config` cuts sequences), whose vocabulary must be the
/// model's. Nothing is written.
fn background_data(
    source: &Path,
    config: &TrainConfig,
    progress: bool,
) -> Result<Batches, TrainError> {
    let run = RunDir::new(source);
    let mut reading = if run.config().is_file() {
        let saved = run.load_config()?;
        let prepared_here = saved.data.prepared.is_none() && !saved.data.paths.is_empty();
        if prepared_here && !run.data().join(MANIFEST).is_file() {
            return Err(checkpoint_error(
                source,
                "its prepared training data (data/) is gone: count the background on a folder \
                 `prepare` wrote instead",
            ));
        }
        saved
    } else if source.join(MANIFEST).is_file() {
        let mut reading = config.clone();
        reading.data = DataConfig {
            paths: Vec::new(),
            prepared: Some(source.to_path_buf()),
            facts: None,
            compact_facts: None,
            qa: None,
            recall: None,
            tokenizer_file: None,
            ..reading.data
        };
        reading
    } else {
        return Err(DataError::input(
            source,
            None,
            "is neither a background.json, a run directory nor a folder `prepare` wrote: no \
             background access counts there",
        )
        .into());
    };
    let data = prepare_data(&mut reading, &run, true, progress)?;
    if reading.model.vocab_size != config.model.vocab_size {
        return Err(DataError::input(
            source,
            None,
            format!(
                "has a vocabulary of {} tokens where the model has {}: background text must be \
                 tokenised as the base run was",
                reading.model.vocab_size, config.model.vocab_size
            ),
        )
        .into());
    }
    Ok(data.batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranking_equals_a_brute_force_count() {
        // 8 rows; 4 background batches read rows 0 and 1 always, row 2 once, the rest never.
        let background = Background {
            batches: 4,
            sequences: 1,
            seq_len: 1,
            values: 8,
            df: vec![4, 4, 1, 0, 0, 0, 0, 0],
        };
        let batch = vec![0, 0, 0, 0, 1, 2, 2, 3, 5, 5, 7];
        let counted = reads(batch.clone());
        assert_eq!(
            counted,
            vec![(0, 4), (1, 1), (2, 2), (3, 1), (5, 2), (7, 1)]
        );
        // By hand: score = c/11 · ln(5/(df+1)).
        let score = |row: usize| {
            let c = batch.iter().filter(|&&i| i == row as u32).count() as f64;
            c / 11.0 * (5.0 / (f64::from(background.df[row]) + 1.0)).ln()
        };
        let mut brute: Vec<usize> = (0..8).filter(|&r| batch.contains(&(r as u32))).collect();
        brute.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
        for t in 1..=6 {
            let mut expected: Vec<u32> = brute[..t].iter().map(|&r| r as u32).collect();
            expected.sort_unstable();
            assert_eq!(background.top(&counted, t), expected, "t = {t}");
        }
        // Rows 0 and 1 are read by every background batch: last, though row 0 is read most here.
        assert_eq!(background.top(&counted, 4), vec![2, 3, 5, 7]);
        assert_eq!(
            background.top(&counted, 100).len(),
            6,
            "at most the rows read"
        );
    }
}
