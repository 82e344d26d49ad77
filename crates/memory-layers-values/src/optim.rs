//! Row-wise optimizers for value tables: a step costs time proportional to the rows the batch
//! touched, not to the table, which is what lets a table grow without slowing training.

use burn::module::Param;
use burn::record::Record;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};

use crate::{RowGrads, ValueBackend, ValueError, ValueTable};

/// One lazy-AdamW step on a table's touched rows, with Burn's AdamW formula
/// (`w ← w·(1 − lr·λ) − lr·m̂ / (√v̂ + ε)`).
///
/// Unlike dense AdamW, rows the batch did not touch keep their moments and get no weight decay
/// in that step; the bias correction uses the table's step count. When every row is touched
/// at every step the two are the same.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowAdamW {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// ε added to √v̂.
    pub eps: f64,
    /// Decoupled weight decay λ.
    pub weight_decay: f64,
    /// The table's step count, from 1 (for the bias correction).
    pub step: u64,
}

impl RowAdamW {
    /// `[1 − β₁ᵗ, 1 − β₂ᵗ]`.
    pub fn bias_corrections(&self) -> [f64; 2] {
        let t = self.step.min(i32::MAX as u64) as i32;
        [1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t)]
    }
}

/// One row-wise Adagrad step: each row keeps one accumulator, the running sum of its mean
/// squared gradient, and moves by `lr · g / (√acc + ε)` (as large recommender embedding tables
/// are trained). No weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowAdagrad {
    /// Learning rate.
    pub lr: f64,
    /// ε added to √acc.
    pub eps: f64,
}

/// The update rule of a [`RowOptimizer`], without the learning rate (that comes per step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowRule {
    /// Lazy AdamW ([`RowAdamW`]).
    AdamW {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// ε.
        eps: f64,
        /// Decoupled weight decay.
        weight_decay: f64,
    },
    /// Row-wise Adagrad ([`RowAdagrad`]).
    Adagrad {
        /// ε.
        eps: f64,
    },
    /// Plain SGD on the rows, no state (sparse memory finetuning's update).
    Sgd,
}

/// A row-wise optimizer's state for one table, as checkpoints store it.
#[derive(Record, Debug, Clone)]
pub struct RowOptimizerRecord<B: Backend> {
    /// AdamW first moments `[N, width]`.
    pub m: Option<Tensor<B, 2>>,
    /// AdamW second moments `[N, width]`.
    pub v: Option<Tensor<B, 2>>,
    /// Adagrad accumulators `[N]`.
    pub acc: Option<Tensor<B, 1>>,
    /// Steps taken.
    pub steps: usize,
}

/// Updates one [`ValueTable`] from its [`RowGrads`] with a [`RowRule`].
#[derive(Debug, Clone)]
pub struct RowOptimizer<B: Backend> {
    rule: RowRule,
    state: RowOptimizerRecord<B>,
}

impl<B: ValueBackend> RowOptimizer<B> {
    /// Zero state for `table`.
    pub fn new(rule: RowRule, table: &ValueTable<B>) -> Self {
        let [rows, width] = table.weight.dims();
        let device = table.weight.device();
        let zeros = || Some(Tensor::zeros([rows, width], &device));
        let state = match rule {
            RowRule::AdamW { .. } => RowOptimizerRecord {
                m: zeros(),
                v: zeros(),
                acc: None,
                steps: 0,
            },
            RowRule::Adagrad { .. } => RowOptimizerRecord {
                m: None,
                v: None,
                acc: Some(Tensor::zeros([rows], &device)),
                steps: 0,
            },
            RowRule::Sgd => RowOptimizerRecord {
                m: None,
                v: None,
                acc: None,
                steps: 0,
            },
        };
        Self { rule, state }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.state.steps
    }

    /// This optimizer with its state moved to `device` (with its table, e.g. a peer's GPU).
    pub fn to_device(mut self, device: &B::Device) -> Self {
        let s = &mut self.state;
        s.m = s.m.take().map(|t| t.to_device(device));
        s.v = s.v.take().map(|t| t.to_device(device));
        s.acc = s.acc.take().map(|t| t.to_device(device));
        self
    }

    /// Applies one step at learning rate `lr` to the rows in `grads` (distinct ids, as
    /// [`RowGrads::coalesce`] leaves them). The table's buffers are updated in place where the
    /// backend can (nothing else holds them).
    pub fn step(&mut self, lr: f64, table: &mut ValueTable<B>, grads: RowGrads<B>) {
        self.state.steps += 1;
        let (ids, g) = (grads.ids.into_primitive(), float(grads.rows));
        let state = &mut self.state;
        let placeholder = Param::from_tensor(Tensor::empty([0, 0], &table.weight.device()));
        let weight = std::mem::replace(&mut table.weight, placeholder);
        table.weight = match (self.rule, &mut state.m, &mut state.v, &mut state.acc) {
            (
                RowRule::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                },
                Some(m),
                Some(v),
                _,
            ) => {
                let step = RowAdamW {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    step: state.steps as u64,
                };
                let (m0, v0) = (take(m), take(v));
                update(weight, |w| {
                    let [w, m1, v1] = B::rows_adamw([w, float(m0), float(v0)], ids, g, &step);
                    (*m, *v) = (tensor(m1), tensor(v1));
                    w
                })
            }
            (RowRule::Adagrad { eps }, _, _, Some(acc)) => {
                let acc0 = take(acc);
                update(weight, |w| {
                    let (w, acc1) =
                        B::rows_adagrad(w, float(acc0), ids, g, &RowAdagrad { lr, eps });
                    *acc = tensor(acc1);
                    w
                })
            }
            (RowRule::Sgd, ..) => update(weight, |w| B::rows_sgd(w, ids, g, lr)),
            _ => unreachable!("the state is built for the rule in new()"),
        };
    }

    /// This state restricted to the columns `offset..offset + width` (for a column shard of
    /// the table). Lazy AdamW's state is per element; row-wise Adagrad's is per whole row and
    /// cannot be split.
    pub fn columns(mut self, offset: usize, width: usize) -> Result<Self, ValueError> {
        if let RowRule::Adagrad { .. } = self.rule {
            return Err(ValueError::RowOptimizer(
                "row-wise Adagrad keeps one accumulator per whole row: its state cannot be split \
                 by columns"
                    .into(),
            ));
        }
        let slice = |t: Option<Tensor<B, 2>>| -> Result<Option<Tensor<B, 2>>, ValueError> {
            t.map(|t| {
                let [rows, cols] = t.dims();
                if offset + width > cols {
                    return Err(ValueError::RowOptimizer(format!(
                        "columns {offset}..{} are outside the state's {cols}",
                        offset + width
                    )));
                }
                Ok(t.slice([0..rows, offset..offset + width]))
            })
            .transpose()
        };
        self.state.m = slice(self.state.m.take())?;
        self.state.v = slice(self.state.v.take())?;
        Ok(self)
    }

    /// The state, for a checkpoint.
    pub fn to_record(&self) -> RowOptimizerRecord<B> {
        self.state.clone()
    }

    /// Replaces the state with a checkpoint's, after checking it fits this rule and table.
    pub fn load_record(mut self, record: RowOptimizerRecord<B>) -> Result<Self, ValueError> {
        let shape2 = |t: &Option<Tensor<B, 2>>| t.as_ref().map(|t| t.dims().to_vec());
        let shape1 = |t: &Option<Tensor<B, 1>>| t.as_ref().map(|t| t.dims().to_vec());
        let fits = shape2(&record.m) == shape2(&self.state.m)
            && shape2(&record.v) == shape2(&self.state.v)
            && shape1(&record.acc) == shape1(&self.state.acc);
        if !fits {
            return Err(ValueError::RowOptimizer(format!(
                "checkpoint state (m {:?}, v {:?}, acc {:?}) does not fit {:?} on this table",
                shape2(&record.m),
                shape2(&record.v),
                shape1(&record.acc),
                self.rule
            )));
        }
        self.state = record;
        Ok(self)
    }
}

/// Runs `f` on the parameter's value outside the autodiff graph and keeps its `require_grad`.
fn update<B: Backend>(
    param: Param<Tensor<B, 2>>,
    f: impl FnOnce(B::FloatTensorPrimitive) -> B::FloatTensorPrimitive,
) -> Param<Tensor<B, 2>> {
    param.map(|w| {
        let require_grad = w.is_require_grad();
        tensor(f(float(w.detach()))).set_require_grad(require_grad)
    })
}

/// Moves a state tensor out, leaving an empty placeholder (so the table-sized buffer has one
/// owner and the kernel can update it in place).
fn take<B: Backend, const D: usize>(slot: &mut Tensor<B, D>) -> Tensor<B, D> {
    let device = slot.device();
    std::mem::replace(slot, Tensor::empty([0; D], &device))
}

fn float<B: Backend, const D: usize>(t: Tensor<B, D>) -> B::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(t: B::FloatTensorPrimitive) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}
