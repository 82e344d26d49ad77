//! The backend kernels equal the plain-tensor reference on random inputs: duplicates (few
//! rows), one pair per bag, empty batches; the in-place row updates equal the tensor-op ones.

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};
use memory_layers_values::{RowAdagrad, RowAdamW, ValueBackend, reference};
use proptest::prelude::*;

type B = Flex;

use memory_layers_test_support::pseudo_random as data;
use memory_layers_test_support::{check_close, host, host_ints};

fn float(values: Vec<f32>, shape: [usize; 2]) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// Same shape, and values within `check_close`'s relative tolerance of 1e-5.
fn close(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Result<(), String> {
    if a.dims() != b.dims() {
        return Err(format!("shapes {:?} vs {:?}", a.dims(), b.dims()));
    }
    check_close(&host(a), &host(b), 1e-5, "values")
}

fn prim(t: Tensor<B, 2>) -> <B as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn back<const D: usize>(
    t: <B as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive,
) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn kernels_equal_reference(rows in 1usize..40, d in 1usize..70, t in 0usize..50, k in 0usize..9, seed in any::<u64>()) {
        let values = float(data(rows * d, seed), [rows, d]);
        let ids: Vec<i64> = data(t * k, !seed).iter().map(|v| ((v + 0.5) * rows as f32) as i64 % rows as i64).collect();
        let indices = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [t, k]), &Default::default());
        let weights = float(data(t * k, seed ^ 7), [t, k]);
        let x = float(data(t * d, seed ^ 9), [t, d]);

        let fast = back(B::bag_sum(prim(values.clone()), indices.clone().into_primitive(), prim(weights.clone())));
        prop_assert_eq!(close(fast, reference::bag_sum(values.clone(), indices.clone(), weights.clone())), Ok(()));
        let fast = back(B::bag_dot(prim(values.clone()), indices.clone().into_primitive(), prim(x.clone())));
        prop_assert_eq!(close(fast, reference::bag_dot(values.clone(), indices.clone(), x.clone())), Ok(()));
        let (ids, sums) = B::bag_rows(indices.clone().into_primitive(), prim(weights.clone()), prim(x.clone()));
        let (ref_ids, ref_sums) = reference::bag_rows(indices, weights, x);
        prop_assert_eq!(host_ints::<B, 1>(Tensor::from_primitive(ids)), host_ints(ref_ids));
        prop_assert_eq!(close(back(sums), ref_sums), Ok(()));
    }

    /// Summing several layers' sparse rows (a k-way merge on Flex) equals `bag_rows` of their
    /// concatenation with unit weights, bit for bit: the same ids, the same additions in order.
    #[test]
    fn merged_rows_equal_rows_of_the_concatenation(rows in 1usize..30, d in 1usize..20, parts in 1usize..5, seed in any::<u64>()) {
        let device = Default::default();
        let parts: Vec<(Vec<i64>, Vec<f32>)> = (0..parts as u64)
            .map(|p| {
                let keep = data(rows, seed ^ p);
                let ids: Vec<i64> = (0..rows as i64).filter(|&i| keep[i as usize] > 0.0).collect();
                let values = data(ids.len() * d, seed ^ (p + 100));
                (ids, values)
            })
            .collect();
        let tensors = |(ids, values): &(Vec<i64>, Vec<f32>)| {
            let u = ids.len();
            (
                Tensor::<B, 1, Int>::from_data(TensorData::new(ids.clone(), [u]), &device).into_primitive(),
                prim(float(values.clone(), [u, d])),
            )
        };
        let (ids, sums) = B::merge_rows(parts.iter().map(tensors).collect());
        let all_ids: Vec<i64> = parts.iter().flat_map(|(ids, _)| ids.clone()).collect();
        let all_rows: Vec<f32> = parts.iter().flat_map(|(_, rows)| rows.clone()).collect();
        let m = all_ids.len();
        let (ref_ids, ref_sums) = B::bag_rows(
            Tensor::<B, 2, Int>::from_data(TensorData::new(all_ids, [m, 1]), &device).into_primitive(),
            prim(float(vec![1.0; m], [m, 1])),
            prim(float(all_rows, [m, d])),
        );
        prop_assert_eq!(host_ints::<B, 1>(Tensor::from_primitive(ids)), host_ints::<B, 1>(Tensor::from_primitive(ref_ids)));
        prop_assert_eq!(host(back::<2>(sums)), host(back::<2>(ref_sums)));
    }

    #[test]
    fn row_updates_equal_reference(rows in 1usize..40, d in 1usize..20, touched in 0usize..40, steps in 1u64..4, seed in any::<u64>()) {
        // Distinct ascending ids: every other row, at most `touched` of them.
        let ids: Vec<i64> = (0..rows as i64).step_by(2).take(touched).collect();
        let u = ids.len();
        let ids = || Tensor::<B, 1, Int>::from_data(TensorData::new(ids.clone(), [u]), &Default::default());
        let table = || float(data(rows * d, seed), [rows, d]);
        let grads = || float(data(u * d, seed ^ 3), [u, d]);
        let m = || float(data(rows * d, seed ^ 5), [rows, d]);
        let v = || float(data(rows * d, seed ^ 6), [rows, d]).abs();
        let adamw = RowAdamW { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, step: steps };
        let fast = B::rows_adamw([prim(table()), prim(m()), prim(v())], ids().into_primitive(), prim(grads()), &adamw);
        let slow = reference::rows_adamw([table(), m(), v()], ids(), grads(), &adamw);
        for (fast, slow) in fast.into_iter().zip(slow) {
            prop_assert_eq!(close(back(fast), slow), Ok(()));
        }
        let acc = || Tensor::<B, 1>::from_data(TensorData::new(data(rows, seed ^ 8).iter().map(|x| x.abs()).collect::<Vec<_>>(), [rows]), &Default::default());
        let adagrad = RowAdagrad { lr: 0.05, eps: 1e-8 };
        let (w, a) = B::rows_adagrad(prim(table()), acc().into_primitive().tensor(), ids().into_primitive(), prim(grads()), &adagrad);
        let (ref_w, ref_a) = reference::rows_adagrad(table(), acc(), ids(), grads(), &adagrad);
        prop_assert_eq!(close(back(w), ref_w), Ok(()));
        prop_assert_eq!(close(back::<1>(a).reshape([1, rows]), ref_a.reshape([1, rows])), Ok(()));
    }
}
