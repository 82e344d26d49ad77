//! The [`reference`](crate::reference) ops on backend primitives: the default methods of
//! [`ValueBackend`](crate::ValueBackend), and what fast kernels fall back to for inputs they
//! do not handle (other dtypes, empty batches, ids that are not ascending).

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

use crate::{RowAdagrad, RowAdamW, ValueBackend, reference};

fn float<B: Backend, const D: usize>(tensor: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(tensor))
}

fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

pub(crate) fn bag_sum<B: Backend>(
    values: FloatTensor<B>,
    indices: IntTensor<B>,
    weights: FloatTensor<B>,
) -> FloatTensor<B> {
    primitive(reference::bag_sum::<B>(
        float(values),
        Tensor::from_primitive(indices),
        float(weights),
    ))
}

pub(crate) fn bag_dot<B: Backend>(
    values: FloatTensor<B>,
    indices: IntTensor<B>,
    x: FloatTensor<B>,
) -> FloatTensor<B> {
    primitive(reference::bag_dot::<B>(
        float(values),
        Tensor::from_primitive(indices),
        float(x),
    ))
}

pub(crate) fn bag_rows<B: Backend>(
    indices: IntTensor<B>,
    weights: FloatTensor<B>,
    x: FloatTensor<B>,
) -> (IntTensor<B>, FloatTensor<B>) {
    let (ids, rows) =
        reference::bag_rows::<B>(Tensor::from_primitive(indices), float(weights), float(x));
    (ids.into_primitive(), primitive(rows))
}

pub(crate) fn group_by_key<B: Backend>(keys: IntTensor<B>) -> [IntTensor<B>; 3] {
    let keys = Tensor::<B, 1, Int>::from_primitive(keys);
    let device = keys.device();
    let keys = keys
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("converted to i64");
    let mut order: Vec<i64> = (0..keys.len() as i64).collect();
    order.sort_by_key(|&p| keys[p as usize]);
    let (mut ids, mut starts) = (Vec::new(), Vec::new());
    for (s, &p) in order.iter().enumerate() {
        if ids.last() != Some(&keys[p as usize]) {
            ids.push(keys[p as usize]);
            starts.push(s as i64);
        }
    }
    starts.push(order.len() as i64);
    [ids, order, starts].map(|values| {
        let n = values.len();
        Tensor::<B, 1, Int>::from_data(TensorData::new(values, [n]), &device).into_primitive()
    })
}

/// [`ValueBackend::merge_rows`]: `bag_rows` of the concatenated parts with unit weights.
pub(crate) fn merge_rows<B: ValueBackend>(
    parts: Vec<(IntTensor<B>, FloatTensor<B>)>,
) -> (IntTensor<B>, FloatTensor<B>) {
    let (ids, rows): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    let ids = Tensor::<B, 1, Int>::cat(ids.into_iter().map(Tensor::from_primitive).collect(), 0);
    let rows = Tensor::<B, 2>::cat(rows.into_iter().map(float).collect(), 0);
    let m = ids.dims()[0];
    let weights = Tensor::<B, 2>::ones([m, 1], &rows.device());
    B::bag_rows(
        ids.reshape([m, 1]).into_primitive(),
        primitive(weights),
        primitive(rows),
    )
}

pub(crate) fn rows_adamw<B: Backend>(
    [weight, m, v]: [FloatTensor<B>; 3],
    ids: IntTensor<B>,
    grads: FloatTensor<B>,
    step: &RowAdamW,
) -> [FloatTensor<B>; 3] {
    reference::rows_adamw::<B>(
        [float(weight), float(m), float(v)],
        Tensor::from_primitive(ids),
        float(grads),
        step,
    )
    .map(primitive)
}

pub(crate) fn rows_sgd<B: Backend>(
    weight: FloatTensor<B>,
    ids: IntTensor<B>,
    grads: FloatTensor<B>,
    lr: f64,
) -> FloatTensor<B> {
    primitive(reference::rows_sgd::<B>(
        float(weight),
        Tensor::from_primitive(ids),
        float(grads),
        lr,
    ))
}

pub(crate) fn rows_adagrad<B: Backend>(
    weight: FloatTensor<B>,
    acc: FloatTensor<B>,
    ids: IntTensor<B>,
    grads: FloatTensor<B>,
    step: &RowAdagrad,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (weight, acc) = reference::rows_adagrad::<B>(
        float(weight),
        float(acc),
        Tensor::from_primitive(ids),
        float(grads),
        step,
    );
    (primitive(weight), primitive(acc))
}

pub(crate) fn scatter_rows<B: Backend>(
    n_rows: usize,
    ids: IntTensor<B>,
    rows: FloatTensor<B>,
) -> FloatTensor<B> {
    primitive(reference::scatter_rows::<B>(
        n_rows,
        Tensor::from_primitive(ids),
        float(rows),
    ))
}
