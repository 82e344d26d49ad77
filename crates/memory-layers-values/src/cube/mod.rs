//! CubeCL kernels of the value primitives: one source for CUDA and wgpu (`CubeBackend`).
//!
//! One thread per output element; index tensors are read as the backend's int type. The
//! sparse value gradient groups the lookups by row on the device (a stable radix sort, see
//! [`group`]; Burn 0.21's `sort` reads the data back on CubeCL backends), then sums each row's
//! segment in lookup order, so it is deterministic without atomics: the number of distinct
//! rows is the one value it reads back. The dense value
//! gradient adds every contribution with float atomics where the device has them (in no fixed
//! order), else scatters those sparse rows. Row updates write the table and optimizer state
//! in place when their buffers have one owner.

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Int, Tensor, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::calculate_cube_count_elemwise;
use cubecl::features::AtomicUsage;
use cubecl::ir::FloatKind;
use cubecl::prelude::{CubeCount, CubeDim, StorageType, Type};

use crate::{RowAdagrad, RowAdamW, ValueBackend, fallback};
use group::group_by_key;
use kernels::*;

mod group;

mod kernels;

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// Launch geometry for `units` threads.
fn grid<R: CubeRuntime>(tensor: &CubeTensor<R>, units: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&tensor.client, units);
    (
        calculate_cube_count_elemwise(&tensor.client, units, dim),
        dim,
    )
}

/// An uninitialised contiguous tensor like `like` with `shape` and `dtype`.
fn empty<R: CubeRuntime>(like: &CubeTensor<R>, shape: Vec<usize>, dtype: DType) -> CubeTensor<R> {
    let bytes = shape.iter().product::<usize>() * dtype.size();
    let buffer = like.client.empty(bytes.max(1));
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape.into(),
        buffer,
        dtype,
    )
}

/// A contiguous tensor this kernel may write: the same buffer when nothing else holds it.
fn writable<R: CubeRuntime>(tensor: CubeTensor<R>) -> CubeTensor<R> {
    let tensor = into_contiguous(tensor);
    if tensor.can_mut() {
        tensor
    } else {
        tensor.copy()
    }
}

/// Whether every float tensor is in the backend's float type (else: the reference).
fn native<R: CubeRuntime, F: FloatElement>(tensors: &[&CubeTensor<R>]) -> bool {
    tensors.iter().all(|t| t.dtype == F::dtype())
}

impl<R, F, I, BT> ValueBackend for Cube<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    fn defers_range_checks() -> bool {
        true
    }

    fn bag_sum(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [t, k] = indices.shape().dims::<2>();
        let d = values.shape().dims::<2>()[1];
        if t * k == 0 || !native::<R, F>(&[&values, &weights]) {
            return fallback::bag_sum::<Self>(values, indices, weights);
        }
        let (values, indices, weights) = (
            into_contiguous(values),
            into_contiguous(indices),
            into_contiguous(weights),
        );
        let out = empty(&values, vec![t, d], F::dtype());
        let (count, dim) = grid(&out, t * d);
        bag_sum_kernel::launch::<F, I, R>(
            &out.client,
            count,
            dim,
            values.into_tensor_arg(),
            indices.into_tensor_arg(),
            weights.into_tensor_arg(),
            out.clone().into_tensor_arg(),
        );
        out
    }

    fn bag_dot(
        values: FloatTensor<Self>,
        indices: IntTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [t, k] = indices.shape().dims::<2>();
        if t * k == 0 || !native::<R, F>(&[&values, &x]) {
            return fallback::bag_dot::<Self>(values, indices, x);
        }
        let (values, indices, x) = (
            into_contiguous(values),
            into_contiguous(indices),
            into_contiguous(x),
        );
        let out = empty(&values, vec![t, k], F::dtype());
        let (count, dim) = grid(&out, t * k);
        bag_dot_kernel::launch::<F, I, R>(
            &out.client,
            count,
            dim,
            values.into_tensor_arg(),
            indices.into_tensor_arg(),
            x.into_tensor_arg(),
            out.clone().into_tensor_arg(),
        );
        out
    }

    fn bag_rows(
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> (IntTensor<Self>, FloatTensor<Self>) {
        let [t, k] = indices.shape().dims::<2>();
        let d = x.shape().dims::<2>()[1];
        if t * k == 0 || !native::<R, F>(&[&weights, &x]) {
            return fallback::bag_rows::<Self>(indices, weights, x);
        }
        let keys = Tensor::<Self, 2, Int>::from_primitive(indices)
            .reshape([t * k])
            .into_primitive();
        let [ids, order, starts] = Self::group_by_key(keys);
        let u = ids.shape().num_elements();
        let (weights, x) = (into_contiguous(weights), into_contiguous(x));
        let out = empty(&x, vec![u, d], F::dtype());
        let (count, dim) = grid(&out, u * d);
        segment_sum_kernel::launch::<F, I, R>(
            &out.client,
            count,
            dim,
            order.into_tensor_arg(),
            starts.into_tensor_arg(),
            weights.into_tensor_arg(),
            x.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            k as u32,
        );
        (ids, out)
    }

    fn group_by_key(keys: IntTensor<Self>) -> [IntTensor<Self>; 3] {
        let p = keys.shape().num_elements();
        // The radix sort reads keys in the backend's int type, as 32-bit (tables below 2^32 rows).
        if p == 0 || keys.dtype != I::dtype() {
            return fallback::group_by_key::<Self>(keys);
        }
        let positions = Tensor::<Self, 1, Int>::arange(0..p as i64, &keys.device).into_primitive();
        group_by_key::<R, I>(keys, positions)
    }

    fn bag_scatter(
        n_rows: usize,
        indices: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [t, k] = indices.shape().dims::<2>();
        let d = x.shape().dims::<2>()[1];
        let atomics = x
            .client
            .properties()
            .atomic_type_usage(Type::new(StorageType::Atomic(FloatKind::F32.into())))
            .contains(AtomicUsage::Add);
        if !atomics || t * k == 0 || F::dtype() != DType::F32 || !native::<R, F>(&[&weights, &x]) {
            let (ids, rows) = Self::bag_rows(indices, weights, x);
            return fallback::scatter_rows::<Self>(n_rows, ids, rows);
        }
        let device = x.device.clone();
        let out = Tensor::<Self, 2>::zeros([n_rows, d], &device)
            .into_primitive()
            .tensor();
        let (indices, weights, x) = (
            into_contiguous(indices),
            into_contiguous(weights),
            into_contiguous(x),
        );
        let (count, dim) = grid(&out, t * k * d);
        scatter_add_kernel::launch::<F, I, R>(
            &out.client,
            count,
            dim,
            indices.into_tensor_arg(),
            weights.into_tensor_arg(),
            x.into_tensor_arg(),
            out.clone().into_tensor_arg(),
        );
        out
    }

    fn rows_adamw(
        [weight, m, v]: [FloatTensor<Self>; 3],
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdamW,
    ) -> [FloatTensor<Self>; 3] {
        let [u, d] = grads.shape().dims::<2>();
        if u * d == 0 || !native::<R, F>(&[&weight, &m, &v, &grads]) {
            return fallback::rows_adamw::<Self>([weight, m, v], ids, grads, step);
        }
        let (weight, m, v) = (writable(weight), writable(m), writable(v));
        let (ids, grads) = (into_contiguous(ids), into_contiguous(grads));
        let [c1, c2] = step.bias_corrections();
        let (count, dim) = grid(&grads, u * d);
        let f = |x: f64| F::from_elem(x);
        rows_adamw_kernel::launch::<F, I, R>(
            &grads.client,
            count,
            dim,
            weight.clone().into_tensor_arg(),
            m.clone().into_tensor_arg(),
            v.clone().into_tensor_arg(),
            ids.into_tensor_arg(),
            grads.clone().into_tensor_arg(),
            f(step.beta1),
            f(step.beta2),
            f(step.eps),
            f(step.lr),
            f(1.0 - step.lr * step.weight_decay),
            f(c1),
            f(c2),
        );
        [weight, m, v]
    }

    fn rows_sgd(
        weight: FloatTensor<Self>,
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        lr: f64,
    ) -> FloatTensor<Self> {
        let [u, d] = grads.shape().dims::<2>();
        if u * d == 0 || !native::<R, F>(&[&weight, &grads]) {
            return fallback::rows_sgd::<Self>(weight, ids, grads, lr);
        }
        let weight = writable(weight);
        let (ids, grads) = (into_contiguous(ids), into_contiguous(grads));
        let (count, dim) = grid(&grads, u * d);
        rows_sgd_kernel::launch::<F, I, R>(
            &grads.client,
            count,
            dim,
            weight.clone().into_tensor_arg(),
            ids.into_tensor_arg(),
            grads.clone().into_tensor_arg(),
            F::from_elem(lr),
        );
        weight
    }

    fn rows_adagrad(
        weight: FloatTensor<Self>,
        acc: FloatTensor<Self>,
        ids: IntTensor<Self>,
        grads: FloatTensor<Self>,
        step: &RowAdagrad,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let u = grads.shape().dims::<2>()[0];
        if u == 0 || !native::<R, F>(&[&weight, &acc, &grads]) {
            return fallback::rows_adagrad::<Self>(weight, acc, ids, grads, step);
        }
        let (weight, acc) = (writable(weight), writable(acc));
        let (ids, grads) = (into_contiguous(ids), into_contiguous(grads));
        let (count, dim) = grid(&grads, u);
        rows_adagrad_kernel::launch::<F, I, R>(
            &grads.client,
            count,
            dim,
            weight.clone().into_tensor_arg(),
            acc.clone().into_tensor_arg(),
            ids.into_tensor_arg(),
            grads.clone().into_tensor_arg(),
            F::from_elem(step.lr),
            F::from_elem(step.eps),
        );
        (weight, acc)
    }
}
