//! Sparse value gradients: the rows a batch touched and their gradient, instead of a dense
//! `[N, d]` tensor that is zero almost everywhere.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorPrimitive};

use crate::{ValueBackend, ValueError};

/// The gradient of a value table on the rows `ids` only: `rows[u]` is the gradient of row
/// `ids[u]`; every other row's gradient is zero.
#[derive(Debug, Clone)]
pub struct RowGrads<B: Backend> {
    /// Row ids, `[U]`; distinct and ascending once [coalesced](RowGrads::coalesce).
    pub ids: Tensor<B, 1, Int>,
    /// Gradient rows, `[U, width]`.
    pub rows: Tensor<B, 2>,
}

impl<B: ValueBackend> RowGrads<B> {
    /// Sums `parts` (e.g. one per layer sharing a table) into one gradient whose ids are
    /// distinct and ascending, adding the rows of equal ids in part order
    /// ([`ValueBackend::merge_rows`]). `None` when `parts` is empty.
    pub fn coalesce(mut parts: Vec<Self>) -> Option<Self> {
        if parts.len() == 1 {
            // One backward's rows come from one `bag_rows`: already distinct and ascending.
            return parts.pop();
        }
        if parts.is_empty() {
            return None;
        }
        let parts = parts
            .into_iter()
            .map(|g| (g.ids.into_primitive(), g.rows.into_primitive().tensor()))
            .collect();
        let (ids, rows) = B::merge_rows(parts);
        Some(Self {
            ids: Tensor::from_primitive(ids),
            rows: Tensor::from_primitive(TensorPrimitive::Float(rows)),
        })
    }

    /// Sum of the squared gradient entries (for global-norm clipping).
    pub fn squared_norm(&self) -> Tensor<B, 1> {
        self.rows.clone().square().sum()
    }
}

/// Where a table's lookups deliver their value gradients as [`RowGrads`] during the backward
/// pass, instead of the autodiff graph. Clones share one sink; the trainer drains it after
/// each backward with [`ValueTable::take_row_grads`](crate::ValueTable::take_row_grads).
///
/// The entries are type-erased so that a module can hold the sink without a backend
/// parameter; taking them back checks the backend type.
#[derive(Clone, Default)]
pub struct RowGradSink(Arc<Mutex<Vec<Box<dyn Any + Send>>>>);

impl RowGradSink {
    /// Adds one lookup's gradient (distinct, ascending ids, as `bag_rows` gives them).
    pub fn push<B: Backend>(&self, grads: RowGrads<B>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(grads));
    }

    /// Removes and returns every gradient delivered since the last call.
    pub fn take<B: Backend>(&self) -> Result<Vec<RowGrads<B>>, ValueError> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_iter()
            .map(|entry| {
                entry
                    .downcast::<RowGrads<B>>()
                    .map(|g| *g)
                    .map_err(|_| ValueError::SinkBackend {
                        expected: std::any::type_name::<B>(),
                    })
            })
            .collect()
    }
}

impl fmt::Debug for RowGradSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pending = self.0.lock().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("RowGradSink")
            .field("pending", &pending)
            .finish()
    }
}
