use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::ops::IntTensor;
use burn::tensor::{Int, Tensor, TensorPrimitive};

use crate::{RowGradSink, RowGrads, ValueBackend, ValueError};

/// Configuration of a [`ValueTable`]: `rows × dim` values, or a column slice of them.
#[derive(Config, Debug)]
pub struct ValueTableConfig {
    /// Number of rows `N` (`n_keys²` behind product keys).
    pub rows: usize,
    /// Width of the whole logical table (`v_dim`).
    pub dim: usize,
    /// First column held by this table, when it is a shard of a wider logical table.
    #[config(default = 0)]
    pub column_offset: usize,
    /// Columns held by this table; `None` holds every column from `column_offset` on.
    #[config(default = "None")]
    pub column_width: Option<usize>,
}

/// The columns `offset..offset + width` of a logical table `total` columns wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSlice {
    /// First column.
    pub offset: usize,
    /// Number of columns.
    pub width: usize,
    /// Width of the logical table.
    pub total: usize,
}

impl ColumnSlice {
    /// Whether this slice is the whole table.
    pub fn is_whole(&self) -> bool {
        self.width == self.total
    }
}

impl ValueTableConfig {
    /// The column slice this config describes, after checking it.
    pub fn columns(&self) -> Result<ColumnSlice, ValueError> {
        let invalid = |field, value: usize, rule| ValueError::InvalidConfig {
            field,
            value: value.to_string(),
            rule,
        };
        if self.rows == 0 {
            return Err(invalid("rows", self.rows, "must be at least 1"));
        }
        if self.dim == 0 {
            return Err(invalid("dim", self.dim, "must be at least 1"));
        }
        if self.column_offset >= self.dim {
            return Err(invalid(
                "column_offset",
                self.column_offset,
                "must be less than dim",
            ));
        }
        let width = self.column_width.unwrap_or(self.dim - self.column_offset);
        if width == 0 || self.column_offset + width > self.dim {
            return Err(invalid(
                "column_width",
                width,
                "must be at least 1 and end within dim",
            ));
        }
        Ok(ColumnSlice {
            offset: self.column_offset,
            width,
            total: self.dim,
        })
    }

    /// Initialises the table with `Normal(0, dim^-½)` values (`dim` of the logical table).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<ValueTable<B>, ValueError> {
        let columns = self.columns()?;
        let std = (self.dim as f64).powf(-0.5);
        let weight =
            Initializer::Normal { mean: 0.0, std }.init([self.rows, columns.width], device);
        Ok(ValueTable {
            weight,
            column_offset: columns.offset,
            total_dim: columns.total,
            sparse: None,
            pending: PendingRange::default(),
        })
    }
}

/// A trainable table of value rows, possibly a column shard of a wider logical table.
///
/// Memory layers read it through [`ValueTable::lookup`]; several layers may share one table
/// (the paper's shared value pool): the table is then owned by the caller and passed to each
/// layer, and its gradient is the sum of every layer's contribution.
///
/// By default the gradient reaches `weight` through the autodiff graph as a dense tensor, for
/// Burn's optimizers. With [`set_sparse_grads`](Self::set_sparse_grads) it is delivered as
/// [`RowGrads`] instead, for the row-wise optimizers ([`RowOptimizer`](crate::RowOptimizer)).
#[derive(Module, Debug)]
pub struct ValueTable<B: Backend> {
    /// The values held here, `[rows, width]`.
    pub weight: Param<Tensor<B, 2>>,
    pub(crate) column_offset: usize,
    pub(crate) total_dim: usize,
    #[module(skip)]
    pub(crate) sparse: Option<RowGradSink>,
    #[module(skip)]
    pending: PendingRange,
}

/// The index extremes `[min, max]` of lookups whose range check waits for
/// [`ValueTable::check_pending`] (backends that [defer](ValueBackend::defers_range_checks) it).
/// Clones share them, `valid()` copies too: the int primitive is one type with and without
/// autodiff. Type-erased (an `IntTensor<B>`) so that the module skips it.
#[derive(Clone, Default)]
struct PendingRange(Arc<Mutex<Option<Box<dyn Any + Send>>>>);

impl fmt::Debug for PendingRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingRange")
    }
}

impl PendingRange {
    /// Widens the kept extremes by `extremes [min, max]`; device ops only, nothing is read.
    fn widen<B: Backend>(&self, extremes: Tensor<B, 1, Int>) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let widened = match kept.take().map(Self::unbox::<B>) {
            None => extremes,
            Some(old) => Tensor::cat(
                vec![
                    old.clone()
                        .slice(0..1)
                        .min_pair(extremes.clone().slice(0..1)),
                    old.slice(1..2).max_pair(extremes.slice(1..2)),
                ],
                0,
            ),
        };
        *kept = Some(Box::new(widened.into_primitive()));
    }

    fn take<B: Backend>(&self) -> Option<Tensor<B, 1, Int>> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        kept.map(Self::unbox::<B>)
    }

    fn unbox<B: Backend>(kept: Box<dyn Any + Send>) -> Tensor<B, 1, Int> {
        let primitive = kept
            .downcast::<IntTensor<B>>()
            .expect("extremes kept by this table's backend");
        Tensor::from_primitive(*primitive)
    }
}

impl<B: Backend> ValueTable<B> {
    /// Wraps existing values `[rows, width]` as the columns `column_offset..` of a logical
    /// table `total_dim` wide.
    pub fn from_tensor(
        values: Tensor<B, 2>,
        column_offset: usize,
        total_dim: usize,
    ) -> Result<Self, ValueError> {
        let [rows, width] = values.dims();
        ValueTableConfig::new(rows, total_dim)
            .with_column_offset(column_offset)
            .with_column_width(Some(width))
            .columns()?;
        Ok(Self {
            weight: Param::from_tensor(values),
            column_offset,
            total_dim,
            sparse: None,
            pending: PendingRange::default(),
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The columns of the logical table held here.
    pub fn columns(&self) -> ColumnSlice {
        ColumnSlice {
            offset: self.column_offset,
            width: self.weight.dims()[1],
            total: self.total_dim,
        }
    }

    /// With `true`, delivers this table's value gradients as sparse rows (drained by
    /// [`take_row_grads`](Self::take_row_grads)) instead of through the autodiff graph; with
    /// `false`, as a dense gradient again. Clones made afterwards share the sink.
    pub fn set_sparse_grads(&mut self, sparse: bool) {
        self.sparse = sparse.then(RowGradSink::default);
    }

    /// The sink of sparse gradients, when [`set_sparse_grads`](Self::set_sparse_grads) is on.
    pub fn sparse_sink(&self) -> Option<&RowGradSink> {
        self.sparse.as_ref()
    }
}

impl<B: ValueBackend> ValueTable<B> {
    /// Weighted lookup `out[t] = Σ_j weights[t,j] · V[indices[t,j]]` over this table's columns.
    ///
    /// `indices` and `weights` are `[T, K]`; the output is `[T, width]`. Differentiable in the
    /// values and the weights. An index outside `0..rows` is an error (on device backends,
    /// from [`check_pending`](Self::check_pending)).
    pub fn lookup(
        &self,
        indices: Tensor<B, 2, Int>,
        weights: Tensor<B, 2>,
    ) -> Result<Tensor<B, 2>, ValueError> {
        let [t, k] = indices.dims();
        expect_shape("lookup weights", &weights.dims(), [t, k])?;
        let width = self.columns().width;
        if t * k == 0 {
            return Ok(Tensor::zeros([t, width], &weights.device()));
        }
        let indices = self.checked_indices(indices)?;
        let (values, indices, weights) = (
            self.weight.val().into_primitive().tensor(),
            indices.into_primitive(),
            weights.into_primitive().tensor(),
        );
        Ok(float(match &self.sparse {
            Some(sink) => B::bag_sum_sparse(values, indices, weights, sink),
            None => B::bag_sum(values, indices, weights),
        }))
    }

    /// Dot products `out[t,j] = ⟨V[indices[t,j]], x[t]⟩` with this table's rows (PEER's keys).
    ///
    /// `indices` is `[T, K]`, `x` is `[T, width]`; the output is `[T, K]`. Differentiable in
    /// the values and `x`. An index outside `0..rows` is an error (on device backends, from
    /// [`check_pending`](Self::check_pending)).
    pub fn dot(
        &self,
        indices: Tensor<B, 2, Int>,
        x: Tensor<B, 2>,
    ) -> Result<Tensor<B, 2>, ValueError> {
        let [t, k] = indices.dims();
        expect_shape("dot input", &x.dims(), [t, self.columns().width])?;
        if t * k == 0 {
            return Ok(Tensor::zeros([t, k], &x.device()));
        }
        let indices = self.checked_indices(indices)?;
        let (values, indices, x) = (
            self.weight.val().into_primitive().tensor(),
            indices.into_primitive(),
            x.into_primitive().tensor(),
        );
        Ok(float(match &self.sparse {
            Some(sink) => B::bag_dot_sparse(values, indices, x, sink),
            None => B::bag_dot(values, indices, x),
        }))
    }

    /// The sparse value gradient delivered since the last call (every lookup and dot of every
    /// layer that read this table, summed per row), or `None` when there is none or the table
    /// does not use sparse gradients.
    pub fn take_row_grads(&self) -> Result<Option<RowGrads<B>>, ValueError> {
        match &self.sparse {
            Some(sink) => Ok(RowGrads::coalesce(sink.take()?)),
            None => Ok(None),
        }
    }

    /// `indices`, checked against `0..rows`. Where reading them back is free (the CPU) the
    /// check happens now; on backends that [defer](ValueBackend::defers_range_checks) it, the
    /// indices are clamped into range and their extremes kept on the device for
    /// [`check_pending`](Self::check_pending), so that a step reads them once instead of once
    /// per lookup. [`lookup`](Self::lookup) and [`dot`](Self::dot) call it; stores built on a
    /// table do too.
    pub fn checked_indices(
        &self,
        indices: Tensor<B, 2, Int>,
    ) -> Result<Tensor<B, 2, Int>, ValueError> {
        let extremes = Tensor::cat(vec![indices.clone().min(), indices.clone().max()], 0);
        if B::defers_range_checks() {
            self.pending.widen(extremes);
            Ok(indices.clamp(0, self.rows() as i64 - 1))
        } else {
            self.check_extremes(extremes)?;
            Ok(indices)
        }
    }

    /// Fails if a lookup since the last call had an index outside `0..rows` (a deferred check:
    /// its output used the nearest row). One read of two ints from the device; nothing to read
    /// where checks are immediate. The trainer calls it once per step and per validation batch.
    pub fn check_pending(&self) -> Result<(), ValueError> {
        match self.pending.take::<B>() {
            Some(extremes) => self.check_extremes(extremes),
            None => Ok(()),
        }
    }

    /// Rejects extremes `[min, max]` outside `0..rows` (one read).
    fn check_extremes(&self, extremes: Tensor<B, 1, Int>) -> Result<(), ValueError> {
        let rows = self.rows();
        let extremes = extremes
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("converted to i64");
        match extremes[..] {
            [min, _] if min < 0 => Err(ValueError::IndexOutOfRange { index: min, rows }),
            [_, max] if max >= rows as i64 => Err(ValueError::IndexOutOfRange { index: max, rows }),
            _ => Ok(()),
        }
    }
}

fn expect_shape<const D: usize>(
    what: &'static str,
    actual: &[usize; D],
    expected: [usize; D],
) -> Result<(), ValueError> {
    if *actual == expected {
        Ok(())
    } else {
        Err(ValueError::ShapeMismatch {
            what,
            expected: expected.to_vec(),
            actual: actual.to_vec(),
        })
    }
}

fn float<B: Backend>(primitive: B::FloatTensorPrimitive) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// Where a memory layer reads its values from: a whole [`ValueTable`], or a table sharded on
/// columns over devices (`memory_layers_parallel::ShardedValues`). Layers are written against this
/// trait only.
pub trait ValueStore<B: Backend> {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Width of a lookup's output.
    fn width(&self) -> usize;
    /// Weighted lookup: `indices`, `weights` `[T, K]` → `[T, width]`.
    fn lookup(
        &self,
        indices: Tensor<B, 2, Int>,
        weights: Tensor<B, 2>,
    ) -> Result<Tensor<B, 2>, ValueError>;
}

impl<B: ValueBackend> ValueStore<B> for ValueTable<B> {
    fn rows(&self) -> usize {
        ValueTable::rows(self)
    }

    fn width(&self) -> usize {
        self.columns().width
    }

    fn lookup(
        &self,
        indices: Tensor<B, 2, Int>,
        weights: Tensor<B, 2>,
    ) -> Result<Tensor<B, 2>, ValueError> {
        ValueTable::lookup(self, indices, weights)
    }
}
