use std::sync::{Arc, Mutex};

use memory_layers_zoo::SplitMix64;

use crate::DataError;
use crate::shards::TokenFile;

/// Which part of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training sequences.
    Train,
    /// Validation sequences.
    Val,
}

/// A run of tokens cut into sequences: in memory, or a shard file read on demand.
#[derive(Debug)]
pub enum Segment {
    /// Tokens in memory.
    Owned(Vec<u32>),
    /// A prepared shard.
    File(TokenFile),
}

impl Segment {
    fn len(&self) -> usize {
        match self {
            Self::Owned(tokens) => tokens.len(),
            Self::File(file) => file.len(),
        }
    }
}

/// The sequences of one split: each segment cut into windows of `seq_len + 1` tokens (a
/// segment's last partial window is not used).
#[derive(Debug)]
struct Sequences {
    segments: Vec<Segment>,
    /// Sequences before each segment, and the total last.
    starts: Vec<usize>,
}

impl Sequences {
    fn new(segments: Vec<Segment>, window: usize) -> Self {
        let mut starts = vec![0];
        for segment in &segments {
            starts.push(starts.last().expect("starts at 0") + segment.len() / window);
        }
        Self { segments, starts }
    }

    fn len(&self) -> usize {
        *self.starts.last().expect("starts at 0")
    }

    /// Appends sequence `i` to `out`.
    fn append(&self, i: usize, window: usize, out: &mut Vec<u32>) -> Result<(), DataError> {
        let segment = self.starts.partition_point(|&s| s <= i) - 1;
        let offset = (i - self.starts[segment]) * window;
        match &self.segments[segment] {
            Segment::Owned(tokens) => {
                out.extend_from_slice(&tokens[offset..offset + window]);
                Ok(())
            }
            Segment::File(file) => file.read(offset, window, out),
        }
    }
}

/// Token sequences of `seq_len + 1` (inputs and shifted targets) in a training and a
/// validation split, served as deterministic batches.
///
/// Batch `i` of the training stream is a pure function of the seed and `i`: epoch `e` visits
/// the training sequences in a permutation drawn from `seed + e`. So a run's data position is
/// just the number of batches it has consumed, and a resumed run sees the same batches.
#[derive(Debug)]
pub struct Batches {
    window: usize,
    train: Sequences,
    val: Sequences,
    seed: u64,
    /// The current epoch's permutation of the training sequences.
    order: Mutex<Option<(usize, Arc<Vec<usize>>)>>,
}

impl Batches {
    /// Cuts `tokens` into sequences of `seq_len + 1`, shuffles them with `seed`, and keeps
    /// `val_fraction` of them (at least one) for validation.
    pub fn new(
        tokens: &[u32],
        seq_len: usize,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Self, DataError> {
        let window = seq_len + 1;
        let count = tokens.len() / window;
        if count < 2 {
            return Err(DataError::setting(
                "seq_len",
                seq_len,
                "the data holds fewer than two sequences of this length",
            ));
        }
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(DataError::setting(
                "val_fraction",
                val_fraction,
                "must be in [0, 1)",
            ));
        }
        let mut order: Vec<usize> = (0..count).collect();
        SplitMix64::new(seed ^ 0x5EED_DA7A).shuffle(&mut order);
        let n_val = ((count as f64 * val_fraction).round() as usize).clamp(1, count - 1);
        let gather = |ids: &[usize]| -> Vec<Segment> {
            vec![Segment::Owned(
                ids.iter()
                    .flat_map(|&i| tokens[i * window..(i + 1) * window].iter().copied())
                    .collect(),
            )]
        };
        Ok(Self::from_segments(
            gather(&order[n_val..]),
            gather(&order[..n_val]),
            seq_len,
            seed,
        ))
    }

    /// The splits as given: each segment cut into sequences of `seq_len + 1` in order.
    pub fn from_segments(
        train: Vec<Segment>,
        val: Vec<Segment>,
        seq_len: usize,
        seed: u64,
    ) -> Self {
        let window = seq_len + 1;
        Self {
            window,
            train: Sequences::new(train, window),
            val: Sequences::new(val, window),
            seed,
            order: Mutex::new(None),
        }
    }

    /// Held-out text only: `tokens` cut into sequences of `seq_len + 1`, all of them served
    /// by [`val_batches`](Self::val_batches) (none for training).
    pub fn held_out(tokens: &[u32], seq_len: usize) -> Result<Self, DataError> {
        if tokens.len() <= seq_len {
            return Err(DataError::setting(
                "seq_len",
                seq_len,
                "the held-out text holds no sequence of this length",
            ));
        }
        Ok(Self::from_segments(
            Vec::new(),
            vec![Segment::Owned(tokens.to_vec())],
            seq_len,
            0,
        ))
    }

    /// Sequences in a split.
    pub fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train.len(),
            Split::Val => self.val.len(),
        }
    }

    /// Sequence length (inputs).
    pub fn seq_len(&self) -> usize {
        self.window - 1
    }

    /// The permutation of the training sequences in `epoch`, kept until the next epoch.
    fn epoch_order(&self, epoch: usize) -> Arc<Vec<usize>> {
        let mut cached = self.order.lock().unwrap_or_else(|p| p.into_inner());
        match &*cached {
            Some((e, order)) if *e == epoch => order.clone(),
            _ => {
                let mut order: Vec<usize> = (0..self.train.len()).collect();
                SplitMix64::new(self.seed.wrapping_add(epoch as u64)).shuffle(&mut order);
                let order = Arc::new(order);
                *cached = Some((epoch, order.clone()));
                order
            }
        }
    }

    /// Training batch number `index`: `batch_size` sequences, `[batch_size, seq_len + 1]`
    /// flattened. An error only when a shard cannot be read.
    pub fn train_batch(&self, index: usize, batch_size: usize) -> Result<Vec<u32>, DataError> {
        self.train_batch_part(index, batch_size, 0..batch_size)
    }

    /// The sequences at positions `part` of training batch `index` (one rank's share of it),
    /// read alone: the same tokens as that slice of [`train_batch`](Self::train_batch).
    pub fn train_batch_part(
        &self,
        index: usize,
        batch_size: usize,
        part: std::ops::Range<usize>,
    ) -> Result<Vec<u32>, DataError> {
        let n = self.train.len();
        if n == 0 {
            return Err(DataError::setting(
                "data",
                "a training split",
                "holds no sequence to train on",
            ));
        }
        let mut out = Vec::with_capacity(part.len() * self.window);
        for position in part {
            let slot = index * batch_size + position;
            let order = self.epoch_order(slot / n);
            self.train.append(order[slot % n], self.window, &mut out)?;
        }
        Ok(out)
    }

    /// The validation set in batches of at most `batch_size` sequences: (tokens, sequences).
    pub fn val_batches(
        &self,
        batch_size: usize,
    ) -> impl Iterator<Item = Result<(Vec<u32>, usize), DataError>> + '_ {
        self.val_sample(batch_size, None)
    }

    /// Tokens per sequence window: `seq_len + 1` (inputs and the shifted targets).
    pub fn window(&self) -> usize {
        self.window
    }

    /// Validation batches of `batch_size` sequences (the last may be shorter) over `sequences`
    /// of them spread evenly over the whole split (`None`, or more than it has: every one):
    /// the same sequences every time, from every part of the split.
    pub fn val_sample(
        &self,
        batch_size: usize,
        sequences: Option<usize>,
    ) -> impl Iterator<Item = Result<(Vec<u32>, usize), DataError>> + '_ {
        let n = self.len(Split::Val);
        let m = sequences.map_or(n, |m| m.min(n));
        let pick = move |j: usize| j * n / m.max(1);
        (0..m).step_by(batch_size.max(1)).map(move |start| {
            let end = (start + batch_size).min(m);
            let mut tokens = Vec::with_capacity((end - start) * self.window);
            for j in start..end {
                self.val.append(pick(j), self.window, &mut tokens)?;
            }
            Ok((tokens, end - start))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_sample_spreads_over_the_split() {
        let tokens: Vec<u32> = (0..1000).collect();
        let b = Batches::new(&tokens, 9, 0.5, 7).unwrap();
        let first = |batch: Vec<u32>| batch.chunks(10).map(|w| w[0]).collect::<Vec<_>>();
        let all: Vec<u32> = b
            .val_batches(100)
            .flat_map(|x| first(x.unwrap().0))
            .collect();
        assert_eq!(all.len(), 50);
        let some: Vec<u32> = b
            .val_sample(3, Some(5))
            .flat_map(|x| first(x.unwrap().0))
            .collect();
        assert_eq!(some, [all[0], all[10], all[20], all[30], all[40]]);
        assert_eq!(
            b.val_sample(3, Some(500)).count(),
            17,
            "capped at the split"
        );
    }

    #[test]
    fn batches_are_deterministic_and_cover_each_epoch() {
        let tokens: Vec<u32> = (0..1000).collect();
        let b = Batches::new(&tokens, 9, 0.1, 7).unwrap();
        assert_eq!(b.len(Split::Train) + b.len(Split::Val), 100);
        assert_eq!(b.len(Split::Val), 10);
        let again = Batches::new(&tokens, 9, 0.1, 7).unwrap();
        assert_eq!(
            b.train_batch(5, 4).unwrap(),
            again.train_batch(5, 4).unwrap()
        );
        let mut firsts: Vec<u32> = (0..90)
            .flat_map(|i| b.train_batch(i, 1).unwrap())
            .step_by(10)
            .collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(
            firsts.len(),
            90,
            "one epoch visits every training sequence once"
        );
        let val: Vec<u32> = b
            .val_batches(3)
            .flat_map(|r| r.unwrap().0)
            .step_by(10)
            .collect();
        assert!(
            val.iter().all(|v| !firsts.contains(v)),
            "validation never trains"
        );
        assert!(Batches::new(&tokens[..15], 9, 0.1, 7).is_err());
    }
}
