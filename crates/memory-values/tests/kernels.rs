//! The backend kernels equal the plain-tensor reference on random inputs: duplicates (few
//! rows), one pair per bag, empty batches.

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};
use memory_values::{ValueBackend, reference};
use proptest::prelude::*;

type B = Flex;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn float(values: Vec<f32>, shape: [usize; 2]) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn close(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Result<(), String> {
    if a.dims() != b.dims() {
        return Err(format!("shapes {:?} vs {:?}", a.dims(), b.dims()));
    }
    let (a, b) = (
        a.into_data().to_vec::<f32>().unwrap(),
        b.into_data().to_vec::<f32>().unwrap(),
    );
    match a
        .iter()
        .zip(&b)
        .position(|(x, y)| (x - y).abs() > 1e-5 * (1.0 + y.abs()))
    {
        Some(i) => Err(format!("element {i}: {} vs {}", a[i], b[i])),
        None => Ok(()),
    }
}

fn prim(t: Tensor<B, 2>) -> <B as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn back(t: <B as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive) -> Tensor<B, 2> {
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
        let fast = back(B::bag_scatter(rows, indices.clone().into_primitive(), prim(weights.clone()), prim(x.clone())));
        prop_assert_eq!(close(fast, reference::bag_scatter(rows, indices, weights, x)), Ok(()));
    }
}
