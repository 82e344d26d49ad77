use model_zoo::SplitMix64;

use crate::TrainError;

/// Which part of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training sequences.
    Train,
    /// Validation sequences.
    Val,
}

/// Token sequences of `seq_len + 1` (inputs and shifted targets), split once into training and
/// validation sets, served as deterministic batches.
///
/// Batch `i` of the training stream is a pure function of the seed and `i`: epoch `e` visits
/// the training sequences in a permutation drawn from `seed + e`. So a run's data position is
/// just the number of batches it has consumed, and a resumed run sees the same batches.
#[derive(Debug, Clone)]
pub struct Batches {
    window: usize,
    train: Vec<u32>,
    val: Vec<u32>,
    seed: u64,
}

impl Batches {
    /// Cuts `tokens` into sequences of `seq_len + 1`, shuffles them with `seed`, and keeps
    /// `val_fraction` of them (at least one) for validation.
    pub fn new(
        tokens: &[u32],
        seq_len: usize,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Self, TrainError> {
        let window = seq_len + 1;
        let count = tokens.len() / window;
        if count < 2 {
            return Err(TrainError::config(
                "seq_len",
                seq_len,
                "the data holds fewer than two sequences of this length",
            ));
        }
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(TrainError::config(
                "val_fraction",
                val_fraction,
                "must be in [0, 1)",
            ));
        }
        let mut order: Vec<usize> = (0..count).collect();
        SplitMix64::new(seed ^ 0x5EED_DA7A).shuffle(&mut order);
        let n_val = ((count as f64 * val_fraction).round() as usize).clamp(1, count - 1);
        let gather = |ids: &[usize]| -> Vec<u32> {
            ids.iter()
                .flat_map(|&i| tokens[i * window..(i + 1) * window].iter().copied())
                .collect()
        };
        Ok(Self {
            window,
            val: gather(&order[..n_val]),
            train: gather(&order[n_val..]),
            seed,
        })
    }

    /// Held-out text only: `tokens` cut into sequences of `seq_len + 1`, all of them served
    /// by [`val_batches`](Self::val_batches) (none for training).
    pub fn held_out(tokens: &[u32], seq_len: usize) -> Result<Self, TrainError> {
        let window = seq_len + 1;
        let count = tokens.len() / window;
        if count == 0 {
            return Err(TrainError::config(
                "seq_len",
                seq_len,
                "the held-out text holds no sequence of this length",
            ));
        }
        Ok(Self {
            window,
            train: Vec::new(),
            val: tokens[..count * window].to_vec(),
            seed: 0,
        })
    }

    /// Sequences in a split.
    pub fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train.len() / self.window,
            Split::Val => self.val.len() / self.window,
        }
    }

    /// Sequence length (inputs).
    pub fn seq_len(&self) -> usize {
        self.window - 1
    }

    fn sequence(&self, split: Split, i: usize) -> &[u32] {
        let data = match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        };
        &data[i * self.window..(i + 1) * self.window]
    }

    /// Training batch number `index`: `batch_size` sequences, `[batch_size, seq_len + 1]`
    /// flattened.
    pub fn train_batch(&self, index: usize, batch_size: usize) -> Vec<u32> {
        let n = self.len(Split::Train);
        let mut out = Vec::with_capacity(batch_size * self.window);
        let mut epoch_order: Option<(usize, Vec<usize>)> = None;
        for slot in index * batch_size..(index + 1) * batch_size {
            let (epoch, position) = (slot / n, slot % n);
            if epoch_order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let mut order: Vec<usize> = (0..n).collect();
                SplitMix64::new(self.seed.wrapping_add(epoch as u64)).shuffle(&mut order);
                epoch_order = Some((epoch, order));
            }
            let order = &epoch_order.as_ref().expect("set above").1;
            out.extend_from_slice(self.sequence(Split::Train, order[position]));
        }
        out
    }

    /// The validation set in batches of at most `batch_size` sequences: (tokens, sequences).
    pub fn val_batches(&self, batch_size: usize) -> impl Iterator<Item = (Vec<u32>, usize)> + '_ {
        let n = self.len(Split::Val);
        (0..n).step_by(batch_size.max(1)).map(move |start| {
            let end = (start + batch_size).min(n);
            let tokens = (start..end)
                .flat_map(|i| self.sequence(Split::Val, i).iter().copied())
                .collect();
            (tokens, end - start)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_deterministic_and_cover_each_epoch() {
        let tokens: Vec<u32> = (0..1000).collect();
        let b = Batches::new(&tokens, 9, 0.1, 7).unwrap();
        assert_eq!(b.len(Split::Train) + b.len(Split::Val), 100);
        assert_eq!(b.len(Split::Val), 10);
        let again = Batches::new(&tokens, 9, 0.1, 7).unwrap();
        assert_eq!(b.train_batch(5, 4), again.train_batch(5, 4));
        let mut firsts: Vec<u32> = (0..90)
            .flat_map(|i| b.train_batch(i, 1))
            .step_by(10)
            .collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(
            firsts.len(),
            90,
            "one epoch visits every training sequence once"
        );
        let val: Vec<u32> = b.val_batches(3).flat_map(|(t, _)| t).step_by(10).collect();
        assert!(
            val.iter().all(|v| !firsts.contains(v)),
            "validation never trains"
        );
        assert!(Batches::new(&tokens[..15], 9, 0.1, 7).is_err());
    }
}
