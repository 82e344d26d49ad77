//! Which parameters a [`Stepper`](super::Stepper) trains: all of them (training, full
//! finetuning), the memory values alone (every row a step reads, or the top t by TF-IDF), or
//! low-rank adapters beside a frozen model.

use burn::module::Module;
use burn::optim::AdamW;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use memory_layers_values::{RowGrads, ValueBackend};
use memory_layers_zoo::{Lora, Transformer};

use crate::finetune::Background;

/// What a step trains.
pub(crate) enum Tuning<B: AutodiffBackend> {
    /// Every parameter.
    All,
    /// The memory pool's rows; with `sparse`, only each step's top t of them.
    Values {
        /// The ranking of sparse memory finetuning (`None`: every row read).
        sparse: Option<Sparse>,
    },
    /// Low-rank adapters; every parameter of the model frozen.
    Lora {
        /// The adapters.
        lora: Lora<B>,
        /// Their AdamW.
        optim: OptimizerAdaptor<AdamW, Lora<B>, B>,
    },
}

/// Sparse memory finetuning's choice of rows.
pub(crate) struct Sparse {
    /// Background access counts.
    pub(crate) background: Background,
    /// Rows updated per step.
    pub(crate) top_t: usize,
}

impl<B: AutodiffBackend> Tuning<B> {
    /// `model` with everything this tuning does not train frozen (not requiring gradients,
    /// so that no optimizer touches it).
    pub(crate) fn freeze(&self, model: Transformer<B>) -> Transformer<B> {
        match self {
            Self::All => model,
            Self::Lora { .. } => model.no_grad(),
            Self::Values { .. } => {
                let mut model = model.no_grad();
                if let Some(pool) = &mut model.pool {
                    pool.weight = pool.weight.clone().set_require_grad(true);
                }
                model
            }
        }
    }

    /// Whether this tuning keeps only some rows of a step's value gradient.
    pub(crate) fn sparse(&self) -> Option<&Sparse> {
        match self {
            Self::Values { sparse } => sparse.as_ref(),
            _ => None,
        }
    }
}

/// The rows of `grads` (distinct, ascending ids) whose ids are in `keep` (ascending); `None`
/// when there are none.
pub(crate) fn keep_rows<B: ValueBackend>(grads: RowGrads<B>, keep: &[u32]) -> Option<RowGrads<B>> {
    let ids: Vec<i64> = grads
        .ids
        .to_data()
        .convert::<i64>()
        .into_vec()
        .expect("converted on the host");
    let mut wanted = keep.iter().peekable();
    let positions: Vec<i64> = ids
        .iter()
        .enumerate()
        .filter(|&(_, &id)| {
            while wanted.next_if(|&&k| i64::from(k) < id).is_some() {}
            wanted.peek().is_some_and(|&&k| i64::from(k) == id)
        })
        .map(|(position, _)| position as i64)
        .collect();
    if positions.is_empty() {
        return None;
    }
    let device = grads.rows.device();
    let positions = Tensor::<B, 1, Int>::from_data(
        TensorData::new(positions.clone(), [positions.len()]),
        &device,
    );
    Some(RowGrads {
        ids: grads.ids.select(0, positions.clone()),
        rows: grads.rows.select(0, positions),
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use memory_layers_zoo::{ModelKind, Size};

    use super::*;
    use crate::config::ValueOptimizer;
    use crate::finetune::{reads, retrieved};
    use crate::loss::lm_loss;
    use crate::{Stepper, TrainConfig};

    type B = Autodiff<Flex>;

    fn rows(model: &Transformer<B>) -> Vec<Vec<f32>> {
        let pool = model.pool.as_ref().expect("a pool").weight.val();
        let width = pool.dims()[1];
        let values: Vec<f32> = pool.into_data().convert::<f32>().into_vec().unwrap();
        values.chunks(width).map(<[f32]>::to_vec).collect()
    }

    #[test]
    fn a_sparse_step_writes_exactly_the_top_t_rows_by_tf_idf() {
        let device = Default::default();
        let mut config = TrainConfig::new(ModelKind::MemoryPlus, Size::Tiny);
        let keys = &mut config.model.product_keys;
        *keys = keys.clone().with_n_keys(8);
        (config.optim.batch_size, config.optim.seq_len) = (2, 16);
        config.optim.value_optimizer = ValueOptimizer::Sgd;
        config.optim.value_lr = 0.5;
        // Materialised: a clone of a lazy parameter would draw its own values.
        let model = config.model.init::<B>(&device).unwrap();
        let model = model.clone().load_record(model.into_record());
        let tokens: Vec<u32> = (0..2 * 17).map(|i| (i * 37 + 11) % 256).collect();
        // Background: the first half of the pool read by every document, the rest by none.
        let values = 64;
        let background = Background {
            batches: 10,
            sequences: 1,
            seq_len: 16,
            values,
            df: (0..values).map(|r| if r < 32 { 10 } else { 0 }).collect(),
        };
        let (_, out) = lm_loss(&model.clone().no_grad(), &tokens, 2, &device, None).unwrap();
        let read = reads(retrieved(&out.memory));
        for top_t in [1, 4, 12] {
            let expected = background.top(&read, top_t);
            // By hand: the rows read most, the never-read half first.
            let total: u32 = read.iter().map(|r| r.1).sum();
            let score = |(row, count): (u32, u32)| {
                let df = if row < 32 { 10.0 } else { 0.0 };
                f64::from(count) / f64::from(total) * (11.0 / (df + 1.0f64)).ln()
            };
            let mut brute: Vec<(u32, u32)> = read.clone();
            brute.sort_by(|a, b| score(*b).total_cmp(&score(*a)).then(a.0.cmp(&b.0)));
            let mut by_hand: Vec<u32> = brute.iter().take(top_t).map(|r| r.0).collect();
            by_hand.sort_unstable();
            assert_eq!(expected, by_hand);

            let tuning = Tuning::Values {
                sparse: Some(Sparse {
                    background: background.clone(),
                    top_t,
                }),
            };
            let mut stepper = Stepper::tuned(model.clone(), &config.optim, tuning);
            let before = rows(&stepper.model);
            stepper
                .step(std::slice::from_ref(&tokens), 1.0, None, &device)
                .unwrap();
            let after = rows(&stepper.model);
            let written: Vec<u32> = (0..values as u32)
                .filter(|&r| before[r as usize] != after[r as usize])
                .collect();
            assert_eq!(written, expected, "t = {top_t}");
        }
    }

    #[test]
    fn keep_rows_selects_by_id() {
        let device = Default::default();
        let grads = RowGrads::<Flex> {
            ids: Tensor::from_data(TensorData::new(vec![1i64, 3, 4, 9], [4]), &device),
            rows: Tensor::from_data(
                TensorData::new(vec![1.0f32, 1.5, 3.0, 3.5, 4.0, 4.5, 9.0, 9.5], [4, 2]),
                &device,
            ),
        };
        let kept = keep_rows(grads.clone(), &[0, 3, 9, 12]).unwrap();
        let ids: Vec<i64> = kept.ids.into_data().convert::<i64>().into_vec().unwrap();
        let rows: Vec<f32> = kept.rows.into_data().convert::<f32>().into_vec().unwrap();
        assert_eq!(ids, vec![3, 9]);
        assert_eq!(rows, vec![3.0, 3.5, 9.0, 9.5]);
        assert!(keep_rows(grads, &[2, 5]).is_none());
    }
}
