"""Where a train step's CPU time goes, by kind of work, from `perf script --inline` output.

    CARGO_TARGET_DIR=target/profile CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
        cargo build --release -p memory-layers-cli
    target/profile/release/memory-layers train --out /tmp/profile-run --steps 600 &
    sleep 5   # past the data preparation, inside the steps
    perf record -F 299 --call-graph dwarf,16384 -p $! -o perf.data -- sleep 6
    perf script -i perf.data -F tid,ip,sym --inline | python3 tools/bench/profile_step.py

Every sample (every thread, waiting included) goes to the first kind of work found walking
its stack from the leaf: inlined frames count, so the rayon tasks of a kernel land with the
kernel although their threads' stacks never reach the caller. Shares are of all samples.
"""

import collections
import re
import sys

# (kind, pattern on a frame), in the order a stack is tested against them.
KINDS = [
    ("scheduling (threads waiting, waking)",
     r"finish_task_switch|__schedule|sched_yield|futex|try_to_wake_up|wake_up|raw_spin"),
    ("GEMM", r"gemm"),
    ("retrieval: top-k selection",
     r"best_pairs|top_positions|smallest_sorted|product_topk|lane_floor|\bordered\b|rank_key|SelectRows"),
    ("retrieval: scores, norms", r"pair_scores|rms_normalize|memory_layers_keys"),
    ("value rows: lookup, gradients, row optimizer",
     r"memory_layers_values|bag_rows|prefetch_row|add_scaled|^dot$|RowOptimizer"),
    ("attention kernel",
     r"causal_softmax|causal_probs|softmax_backward|lane_fold|lane_sum|memory_layers_zoo::causal|interleave"),
    ("our element-wise kernels (gate, RoPE, loss)", r"memory_layers_zoo::(gate|rope|nll)|silu_gate"),
    ("zero-fill, allocation",
     r"memset|alloc_zeroed|malloc|calloc|_int_free|cfree|unlink_chunk|page_fault|clear_page|mmap|munmap"),
    ("copies, layout",
     r"to_contiguous|StridedIter|memcpy|memmove|copy_from_slice|cubecl_common::bytes|copy_nonoverlapping|to_vec"),
    ("Burn element-wise, reductions",
     r"burn_flex::ops|burn_flex::simd|scalar_op|binary_op|unary_op|sigmoid|reduce|macerator|^exp$|__expf|__logf"),
    ("dense AdamW", r"burn::optim|burn_optim|adam"),
    ("autodiff bookkeeping", r"burn_autodiff|hashbrown|GraphLocator|Gradients"),
]
COMPILED = [(kind, re.compile(pattern)) for kind, pattern in KINDS]


def without_generics(frame):
    """The frame's name with `<...>` removed (inlined frames carry long generic lists)."""
    out, depth = [], 0
    for ch in frame.replace(" (inlined)", ""):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def samples(lines):
    """Each sample's frames, leaf first."""
    frames = None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames is not None:
                yield frames
            frames = None
        elif not line.startswith("\t"):
            frames = []
        elif frames is not None:
            parts = line.strip().split(" ", 1)
            if len(parts) > 1:
                frames.append(parts[1])
    if frames is not None:
        yield frames


def kind(frames):
    for frame in frames:
        name = without_generics(frame)
        # A rayon task's closure is named by its generic parameters only.
        if name.startswith(("do_call", "call_once", "call")) and "memory_layers" in frame:
            name = frame
        for label, pattern in COMPILED:
            if pattern.search(name):
                return label
    return "other"


def main():
    counts = collections.Counter(kind(frames) for frames in samples(sys.stdin))
    total = sum(counts.values())
    if total == 0:
        sys.exit("no samples on standard input: pipe `perf script -F tid,ip,sym --inline` in")
    print(f"{total} samples")
    for label, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {label}")


if __name__ == "__main__":
    main()
