//! Grouping by key on the device: the distinct rows a batch of lookups touched, and which
//! lookups touched each, in lookup order.
//!
//! A least-significant-digit radix sort (four passes of 8 bits over `u32` keys) carries each
//! lookup's position with its key. A pass counts the digits of every chunk of 256 keys, takes
//! an exclusive scan of the counts in digit-major order, and moves each chunk's keys in order
//! to where the scan says, so equal keys keep their order: the sort is stable and
//! deterministic with no atomics. Segment heads of the sorted keys then give the distinct keys
//! and where each starts. How many there are is the one value read back: the caller allocates
//! the rows.

use burn::tensor::DType;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeRuntime, IntElement};

use super::{empty, grid};
use kernels::*;

/// Keys per chunk in the sort's passes and the scans: each chunk is one thread's work.
const CHUNK: usize = 256;
/// Digits per radix pass.
const RADIX: usize = 256;

mod kernels {
    use cubecl::prelude::*;

    /// The start and end of chunk `b` of `n` items.
    #[cube]
    fn chunk_range(b: usize, chunk: u32, n: usize) -> (usize, usize) {
        let start = b * chunk as usize;
        let mut end = start + chunk as usize;
        if end > n {
            end = n;
        }
        (start, end)
    }

    /// `counts[d · chunks + b]` = how many keys of chunk `b` have digit `d` at `shift`.
    #[cube(launch)]
    pub(super) fn digit_counts_kernel<I: Int>(
        keys: &Tensor<I>,
        counts: &mut Tensor<u32>,
        shift: u32,
        chunk: u32,
    ) {
        let chunks = counts.shape(0) / 256;
        let b = ABSOLUTE_POS;
        if b >= chunks {
            terminate!();
        }
        for d in 0..256usize {
            counts[d * chunks + b] = 0u32;
        }
        let (start, end) = chunk_range(b, chunk, keys.shape(0));
        for i in start..end {
            let d = usize::cast_from((u32::cast_from(keys[i]) >> shift) & 255u32);
            counts[d * chunks + b] += 1u32;
        }
    }

    /// Moves chunk `b`'s keys and positions, in order, to the slots `offsets` (the exclusive
    /// scan of the digit counts) gives their digit.
    #[cube(launch)]
    pub(super) fn digit_scatter_kernel<I: Int>(
        keys: &Tensor<I>,
        positions: &Tensor<I>,
        offsets: &mut Tensor<u32>,
        keys_out: &mut Tensor<I>,
        positions_out: &mut Tensor<I>,
        shift: u32,
        chunk: u32,
    ) {
        let chunks = offsets.shape(0) / 256;
        let b = ABSOLUTE_POS;
        if b >= chunks {
            terminate!();
        }
        let (start, end) = chunk_range(b, chunk, keys.shape(0));
        for i in start..end {
            let key = keys[i];
            let at = usize::cast_from((u32::cast_from(key) >> shift) & 255u32) * chunks + b;
            let to = usize::cast_from(offsets[at]);
            offsets[at] = offsets[at] + 1u32;
            keys_out[to] = key;
            positions_out[to] = positions[i];
        }
    }

    /// `sums[b]` = the sum of chunk `b` of `values`.
    #[cube(launch)]
    pub(super) fn chunk_sums_kernel(values: &Tensor<u32>, sums: &mut Tensor<u32>, chunk: u32) {
        let b = ABSOLUTE_POS;
        if b >= sums.shape(0) {
            terminate!();
        }
        let (start, end) = chunk_range(b, chunk, values.shape(0));
        let mut acc = 0u32;
        for i in start..end {
            acc += values[i];
        }
        sums[b] = acc;
    }

    /// The exclusive scan of `values` into `out`, chunk `b` starting from `offsets[b]`; the
    /// last chunk writes the grand total to `total[0]`.
    #[cube(launch)]
    pub(super) fn chunk_scan_kernel(
        values: &Tensor<u32>,
        offsets: &Tensor<u32>,
        out: &mut Tensor<u32>,
        total: &mut Tensor<u32>,
        chunk: u32,
    ) {
        let chunks = offsets.shape(0);
        let b = ABSOLUTE_POS;
        if b >= chunks {
            terminate!();
        }
        let (start, end) = chunk_range(b, chunk, values.shape(0));
        let mut acc = offsets[b];
        for i in start..end {
            out[i] = acc;
            acc += values[i];
        }
        if b + 1 == chunks {
            total[0] = acc;
        }
    }

    /// `heads[s]` = 1 where sorted key `s` differs from the one before it, else 0.
    #[cube(launch)]
    pub(super) fn segment_heads_kernel<I: Int>(keys: &Tensor<I>, heads: &mut Tensor<u32>) {
        let s = ABSOLUTE_POS;
        if s >= keys.shape(0) {
            terminate!();
        }
        let mut head = 1u32;
        // Nested, not `&&`: a kernel's `&&` evaluates both sides, and `keys[s - 1]` at s = 0
        // would read outside the buffer.
        #[allow(clippy::collapsible_if)]
        if s > 0 {
            if keys[s] == keys[s - 1] {
                head = 0u32;
            }
        }
        heads[s] = head;
    }

    /// For each segment head `s` (segment `u = segment[s]`): `ids[u]` = its key and
    /// `starts[u] = s`; `starts[U]` = the number of keys.
    #[cube(launch)]
    pub(super) fn segment_starts_kernel<I: Int>(
        keys: &Tensor<I>,
        heads: &Tensor<u32>,
        segment: &Tensor<u32>,
        ids: &mut Tensor<I>,
        starts: &mut Tensor<I>,
    ) {
        let n = keys.shape(0);
        let s = ABSOLUTE_POS;
        if s >= n {
            terminate!();
        }
        if heads[s] == 1u32 {
            let u = usize::cast_from(segment[s]);
            ids[u] = keys[s];
            starts[u] = I::cast_from(s);
        }
        if s + 1 == n {
            starts[ids.shape(0)] = I::cast_from(n);
        }
    }
}

/// Groups the positions `0..P` of `keys [P]` (ints in `0..2^32`, `P ≥ 1`) by key, stably:
/// `[ids [U], order [P], starts [U + 1]]`, the distinct keys ascending, the positions in key
/// order, and segment `u` of `order` at `starts[u]..starts[u + 1]`. `positions [P]` holds
/// `0..P`; both are in the backend's int type `I`.
pub(super) fn group_by_key<R: CubeRuntime, I: IntElement>(
    keys: CubeTensor<R>,
    positions: CubeTensor<R>,
) -> [CubeTensor<R>; 3] {
    let int = I::dtype();
    let p = keys.meta.shape.num_elements();
    let chunks = p.div_ceil(CHUNK);
    let (mut keys, mut positions) = (into_contiguous(keys), into_contiguous(positions));
    for shift in [0u32, 8, 16, 24] {
        let counts = empty(&keys, vec![RADIX * chunks], DType::U32);
        let (count, dim) = grid(&keys, chunks);
        digit_counts_kernel::launch::<I, R>(
            &keys.client,
            count,
            dim,
            keys.clone().into_tensor_arg(),
            counts.clone().into_tensor_arg(),
            shift,
            CHUNK as u32,
        );
        let (offsets, _) = exclusive_scan(counts);
        let (keys_out, positions_out) = (empty(&keys, vec![p], int), empty(&keys, vec![p], int));
        let (count, dim) = grid(&keys, chunks);
        digit_scatter_kernel::launch::<I, R>(
            &keys_out.client,
            count,
            dim,
            keys.into_tensor_arg(),
            positions.into_tensor_arg(),
            offsets.into_tensor_arg(),
            keys_out.clone().into_tensor_arg(),
            positions_out.clone().into_tensor_arg(),
            shift,
            CHUNK as u32,
        );
        (keys, positions) = (keys_out, positions_out);
    }
    let heads = empty(&keys, vec![p], DType::U32);
    let (count, dim) = grid(&keys, p);
    segment_heads_kernel::launch::<I, R>(
        &keys.client,
        count,
        dim,
        keys.clone().into_tensor_arg(),
        heads.clone().into_tensor_arg(),
    );
    let (segment, total) = exclusive_scan(heads.clone());
    let u = read_u32(&total) as usize;
    let (ids, starts) = (empty(&keys, vec![u], int), empty(&keys, vec![u + 1], int));
    let (count, dim) = grid(&keys, p);
    segment_starts_kernel::launch::<I, R>(
        &ids.client,
        count,
        dim,
        keys.into_tensor_arg(),
        heads.into_tensor_arg(),
        segment.into_tensor_arg(),
        ids.clone().into_tensor_arg(),
        starts.clone().into_tensor_arg(),
    );
    [ids, positions, starts]
}

/// The exclusive scan of `values [n]` (`u32`, `n ≥ 1`) and its total `[1]`: a chunk per
/// thread, from the scan of the chunks' sums (recursively).
fn exclusive_scan<R: CubeRuntime>(values: CubeTensor<R>) -> (CubeTensor<R>, CubeTensor<R>) {
    let n = values.meta.shape.num_elements();
    let chunks = n.div_ceil(CHUNK);
    let offsets = if chunks == 1 {
        let zero = values.client.create_from_slice(&0u32.to_le_bytes());
        CubeTensor::new_contiguous(
            values.client.clone(),
            values.device.clone(),
            vec![1].into(),
            zero,
            DType::U32,
        )
    } else {
        let sums = empty(&values, vec![chunks], DType::U32);
        let (count, dim) = grid(&values, chunks);
        chunk_sums_kernel::launch::<R>(
            &values.client,
            count,
            dim,
            values.clone().into_tensor_arg(),
            sums.clone().into_tensor_arg(),
            CHUNK as u32,
        );
        exclusive_scan(sums).0
    };
    let (out, total) = (
        empty(&values, vec![n], DType::U32),
        empty(&values, vec![1], DType::U32),
    );
    let (count, dim) = grid(&values, chunks);
    chunk_scan_kernel::launch::<R>(
        &out.client,
        count,
        dim,
        values.into_tensor_arg(),
        offsets.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        total.clone().into_tensor_arg(),
        CHUNK as u32,
    );
    (out, total)
}

/// The one `u32` in `tensor [1]`: a read from the device (it waits for the queued kernels).
fn read_u32<R: CubeRuntime>(tensor: &CubeTensor<R>) -> u32 {
    let bytes = tensor
        .client
        .read_one(tensor.handle.clone())
        .expect("a 4-byte read from the device");
    u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"))
}
