// The kernel tests of one CubeCL backend, included by cube.rs (wgpu) and cube_cuda.rs
// (CUDA) with the backend as `G`.

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};
use memory_layers_values::{RowAdagrad, RowAdamW, ValueBackend, ValueError, ValueTable, reference};
use proptest::prelude::*;

use memory_layers_test_support::pseudo_random as data;
use memory_layers_test_support::{check_close, host, host_ints};

fn float<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn ints<B: Backend, const D: usize>(values: Vec<i64>, shape: [usize; D]) -> Tensor<B, D, Int> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn prim<const D: usize>(
    t: Tensor<G, D>,
) -> <G as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive {
    t.into_primitive().tensor()
}

fn back<const D: usize>(
    t: <G as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive,
) -> Tensor<G, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// The tolerance of every kernel-vs-reference comparison (relative, see `check_close`).
const TOL: f32 = 1e-5;

/// Lookup, dot products and sparse rows of one random case, kernel vs reference.
fn lookup_case(rows: usize, d: usize, t: usize, k: usize, seed: u64) -> Result<(), String> {
    let values = data(rows * d, seed);
    let ids: Vec<i64> = data(t * k, !seed)
        .iter()
        .map(|v| ((v + 0.5) * rows as f32) as i64 % rows as i64)
        .collect();
    let (weights, x) = (data(t * k, seed ^ 7), data(t * d, seed ^ 9));

    let out = back::<2>(G::bag_sum(
        prim(float::<G, 2>(values.clone(), [rows, d])),
        ints::<G, 2>(ids.clone(), [t, k]).into_primitive(),
        prim(float::<G, 2>(weights.clone(), [t, k])),
    ));
    let expected = reference::bag_sum::<Flex>(
        float(values.clone(), [rows, d]),
        ints(ids.clone(), [t, k]),
        float(weights.clone(), [t, k]),
    );
    check_close(&host(out), &host(expected), TOL, "bag_sum")?;

    let out = back::<2>(G::bag_dot(
        prim(float::<G, 2>(values.clone(), [rows, d])),
        ints::<G, 2>(ids.clone(), [t, k]).into_primitive(),
        prim(float::<G, 2>(x.clone(), [t, d])),
    ));
    let expected = reference::bag_dot::<Flex>(
        float(values, [rows, d]),
        ints(ids.clone(), [t, k]),
        float(x.clone(), [t, d]),
    );
    check_close(&host(out), &host(expected), TOL, "bag_dot")?;

    rows_case(ids, &weights, &x, [t, k, d])
}

/// The sparse value gradient of lookups `ids [T, K]` (the device's grouping by row), kernel vs
/// reference: the same rows, the same sums.
fn rows_case(ids: Vec<i64>, weights: &[f32], x: &[f32], [t, k, d]: [usize; 3]) -> Result<(), String> {
    let (u, sums) = G::bag_rows(
        ints::<G, 2>(ids.clone(), [t, k]).into_primitive(),
        prim(float::<G, 2>(weights.to_vec(), [t, k])),
        prim(float::<G, 2>(x.to_vec(), [t, d])),
    );
    let (ref_u, ref_sums) = reference::bag_rows::<Flex>(
        ints(ids, [t, k]),
        float(weights.to_vec(), [t, k]),
        float(x.to_vec(), [t, d]),
    );
    let (u, ref_u) = (
        host_ints(Tensor::<G, 1, Int>::from_primitive(u)),
        host_ints(ref_u),
    );
    if u != ref_u {
        let at = u.iter().zip(&ref_u).take_while(|(a, b)| a == b).count();
        return Err(format!(
            "bag_rows ids: {} vs {} expected, first difference at {at}",
            u.len(),
            ref_u.len()
        ));
    }
    check_close(&host(back::<2>(sums)), &host(ref_sums), TOL, "bag_rows")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Few rows (many duplicates), one pair per bag, empty batches.
    #[test]
    fn cube_lookups_equal_reference(rows in 1usize..40, d in 1usize..40, t in 0usize..30, k in 0usize..9, seed in any::<u64>()) {
        prop_assert_eq!(lookup_case(rows, d, t, k, seed), Ok(()));
    }

    #[test]
    fn cube_row_updates_equal_reference(rows in 1usize..30, d in 1usize..20, touched in 0usize..30, seed in any::<u64>()) {
        let ids: Vec<i64> = (0..rows as i64).step_by(2).take(touched).collect();
        let u = ids.len();
        let (w, m, v, g) = (data(rows * d, seed), data(rows * d, seed ^ 5), data(rows * d, seed ^ 6), data(u * d, seed ^ 3));
        let v: Vec<f32> = v.iter().map(|x| x.abs()).collect();
        let step = RowAdamW { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, step: 3 };
        // The caller keeps a handle on the table: the update must not show through it.
        let kept = float::<G, 2>(w.clone(), [rows, d]);
        let fast = G::rows_adamw(
            [prim(kept.clone()), prim(float::<G, 2>(m.clone(), [rows, d])), prim(float::<G, 2>(v.clone(), [rows, d]))],
            ints::<G, 1>(ids.clone(), [u]).into_primitive(),
            prim(float::<G, 2>(g.clone(), [u, d])),
            &step,
        );
        let slow = reference::rows_adamw::<Flex>(
            [float(w.clone(), [rows, d]), float(m, [rows, d]), float(v, [rows, d])],
            ints(ids.clone(), [u]),
            float(g.clone(), [u, d]),
            &step,
        );
        for ((fast, slow), what) in fast.into_iter().zip(slow).zip(["weight", "m", "v"]) {
            prop_assert_eq!(check_close(&host(back::<2>(fast)), &host(slow), TOL, what), Ok(()));
        }
        prop_assert_eq!(host(kept), w.clone());

        let acc: Vec<f32> = data(rows, seed ^ 8).iter().map(|x| x.abs()).collect();
        let adagrad = RowAdagrad { lr: 0.05, eps: 1e-8 };
        let (fw, fa) = G::rows_adagrad(
            prim(float::<G, 2>(w.clone(), [rows, d])),
            prim(float::<G, 1>(acc.clone(), [rows])),
            ints::<G, 1>(ids.clone(), [u]).into_primitive(),
            prim(float::<G, 2>(g.clone(), [u, d])),
            &adagrad,
        );
        let (sw, sa) = reference::rows_adagrad::<Flex>(
            float(w.clone(), [rows, d]),
            float(acc, [rows]),
            ints(ids.clone(), [u]),
            float(g.clone(), [u, d]),
            &adagrad,
        );
        prop_assert_eq!(check_close(&host(back::<2>(fw)), &host(sw), TOL, "adagrad weight"), Ok(()));
        prop_assert_eq!(check_close(&host(back::<1>(fa)), &host(sa), TOL, "adagrad acc"), Ok(()));

        let kept = float::<G, 2>(w.clone(), [rows, d]);
        let fast = G::rows_sgd(
            prim(kept.clone()),
            ints::<G, 1>(ids.clone(), [u]).into_primitive(),
            prim(float::<G, 2>(g.clone(), [u, d])),
            2.5,
        );
        let slow = reference::rows_sgd::<Flex>(float(w.clone(), [rows, d]), ints(ids, [u]), float(g, [u, d]), 2.5);
        prop_assert_eq!(check_close(&host(back::<2>(fast)), &host(slow), TOL, "sgd weight"), Ok(()));
        prop_assert_eq!(host(kept), w);
    }
}

/// Grouping by row on the device past one chunk of every pass: 70,000 lookups (many chunks,
/// a scan of scans) into 3,000,000 rows (keys with three significant radix digits), half of
/// them into 50 hot rows.
#[test]
fn cube_bag_rows_groups_many_lookups_over_wide_rows() {
    let (t, k, d) = (7_000, 10, 3);
    let ids: Vec<i64> = data(t * k, 5)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let wide = ((v + 0.5) * 3_000_000.0) as i64;
            if i % 2 == 0 { wide % 50 * 60_013 } else { wide }
        })
        .collect();
    rows_case(ids, &data(t * k, 6), &data(t * d, 7), [t, k, d]).unwrap();
}

/// Grouping by key (MoE routing's), device vs a stable sort on the host: one key, few keys
/// (long segments), and 70,000 keys over a million values.
#[test]
fn cube_group_by_key_equals_a_stable_sort() {
    for (p, range, seed) in [(1, 1, 1), (37, 5, 2), (5_000, 8, 3), (70_000, 1_000_000, 4)] {
        let keys: Vec<i64> = data(p, seed)
            .iter()
            .map(|v| ((v + 0.5) * range as f32) as i64 % range)
            .collect();
        let [ids, order, starts] =
            G::group_by_key(ints::<G, 1>(keys.clone(), [p]).into_primitive());
        let read = |t| host_ints(Tensor::<G, 1, Int>::from_primitive(t));
        let mut expected: Vec<i64> = (0..p as i64).collect();
        expected.sort_by_key(|&i| keys[i as usize]);
        let sorted: Vec<i64> = expected.iter().map(|&i| keys[i as usize]).collect();
        let mut distinct = sorted.clone();
        distinct.dedup();
        let mut heads: Vec<i64> = (0..p)
            .filter(|&s| s == 0 || sorted[s] != sorted[s - 1])
            .map(|s| s as i64)
            .collect();
        heads.push(p as i64);
        assert_eq!(read(order), expected, "order, {p} keys");
        assert_eq!(read(ids), distinct, "ids, {p} keys");
        assert_eq!(read(starts), heads, "starts, {p} keys");
    }
}

/// A device defers the range check: a lookup past the end reads the last row, and the step's
/// one check names the index, once.
#[test]
fn cube_range_check_waits_for_the_step() {
    let table = ValueTable::<G>::from_tensor(float(data(12, 1), [4, 3]), 0, 3).unwrap();
    let weights = || float::<G, 2>(vec![1.0, 0.5], [1, 2]);
    let past_end = table.lookup(ints(vec![1, 7], [1, 2]), weights()).unwrap();
    let last_row = table.lookup(ints(vec![1, 3], [1, 2]), weights()).unwrap();
    assert_eq!(host(past_end), host(last_row));
    assert!(matches!(
        table.check_pending(),
        Err(ValueError::IndexOutOfRange { index: 7, rows: 4 })
    ));
    assert!(table.check_pending().is_ok());
    table.lookup(ints(vec![-2, 0], [1, 2]), weights()).unwrap();
    assert!(matches!(
        table.check_pending(),
        Err(ValueError::IndexOutOfRange { index: -2, rows: 4 })
    ));
}

#[test]
fn cube_edge_cases() {
    // Empty batch, no slot per bag, one slot per bag.
    for (t, k) in [(0, 4), (4, 0), (4, 1)] {
        lookup_case(5, 3, t, k, 11).unwrap();
    }
    // A step that touched no row leaves table and state as they are.
    let w = data(12, 1);
    let step = RowAdamW {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        step: 1,
    };
    let [w1, _, _] = G::rows_adamw(
        [
            prim(float::<G, 2>(w.clone(), [4, 3])),
            prim(float::<G, 2>(vec![0.0; 12], [4, 3])),
            prim(float::<G, 2>(vec![0.0; 12], [4, 3])),
        ],
        ints::<G, 1>(vec![], [0]).into_primitive(),
        prim(float::<G, 2>(vec![], [0, 3])),
        &step,
    );
    assert_eq!(host(back::<2>(w1)), w);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The dense value gradient (float atomics where the device has them) equals the sparse
    /// rows scattered.
    #[test]
    fn cube_dense_scatter_equals_reference(rows in 1usize..30, d in 1usize..20, t in 1usize..20, k in 1usize..6, seed in any::<u64>()) {
        let ids: Vec<i64> = data(t * k, !seed)
            .iter()
            .map(|v| ((v + 0.5) * rows as f32) as i64 % rows as i64)
            .collect();
        let (weights, x) = (data(t * k, seed ^ 7), data(t * d, seed ^ 9));
        let dense = back::<2>(G::bag_scatter(
            rows,
            ints::<G, 2>(ids.clone(), [t, k]).into_primitive(),
            prim(float::<G, 2>(weights.clone(), [t, k])),
            prim(float::<G, 2>(x.clone(), [t, d])),
        ));
        let (u, sums) =
            reference::bag_rows::<Flex>(ints(ids, [t, k]), float(weights, [t, k]), float(x, [t, d]));
        let expected = reference::scatter_rows::<Flex>(rows, u, sums);
        prop_assert_eq!(check_close(&host(dense), &host(expected), TOL, "bag_scatter"), Ok(()));
    }
}
