#!/usr/bin/env bash
# The one prepared GPU check: CUDA parity on the committed fixtures, the CubeCL kernel tests on
# CUDA, the benchmark kernels and the train steps (small and 134m, dense vs Memory+), in one
# call of under 8 minutes on the GPU machine. Build on a machine without a GPU, carry the
# binaries over, run, bring the JSON back (docs/performance-notes.md, "The GPU check"):
#
#   tools/gpu-check/gpu-check.sh build           # here: target/gpu-check/ (binaries, stripped)
#   tools/gpu-check/gpu-check.sh run OUT_DIR     # on the GPU machine, from the repository root
#
# GPU_CHECK_BACKEND=wgpu runs the same steps on wgpu (lavapipe on a CPU machine: a dry run
# of the script, far slower; the 134m steps are left out there).
set -uo pipefail
cd "$(dirname "$0")/../.."

backend=${GPU_CHECK_BACKEND:-cuda}
bin=target/gpu-check
# CI's GPU build: one package selection and one feature set (CUDA and wgpu), so that the xtask
# binary and the kernel tests share one build of Burn and CubeCL, and CI's artifacts serve.
packages=(-p xtask -p memory-layers-keys -p memory-layers-values -p memory-layers-parallel
    -p memory-layers-zoo)
features=xtask/cuda,xtask/wgpu
for crate in memory-layers-keys memory-layers-values memory-layers-parallel memory-layers-zoo; do
    features="$features,$crate/cuda,$crate/wgpu"
done

build() {
    set -e
    rm -rf "$bin" && mkdir -p "$bin"
    # Every test of the selection (this builds the xtask binary too); keep the kernel tests'
    # executables, named from cargo's JSON messages: cube-N (wgpu), cube_cuda-N (CUDA).
    cargo test --release "${packages[@]}" --features "$features" --no-run --message-format=json \
        | grep -o '"executable":"[^"]*/cube\(_cuda\)\?-[^"]*"' | cut -d'"' -f4 > "$bin/tests.txt"
    cp target/release/xtask "$bin/xtask"
    n=0
    while read -r exe; do
        name=$(basename "$exe")
        cp "$exe" "$bin/${name%-*}-$n"
        n=$((n + 1))
    done < "$bin/tests.txt"
    rm "$bin/tests.txt"
    strip "$bin"/*
    # The device machine takes 64 MiB of carried files: xz brings ~200 MB to ~45 MB.
    xz -T0 -6 "$bin"/*
    du -ch "$bin"/* | tail -1
    echo "carry: $bin (fixtures/parity is tracked)"
}

# Runs "$@" with a time limit, its output in $out/$name.log; records the exit status.
step() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    printf '%-14s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - start))" "$(grep -v '^[[:space:]]*$' "$out/$name.log" | tail -1)" \
        | tee -a "$out/summary.txt"
}

run() {
    out=${1:?usage: gpu-check.sh run OUT_DIR}
    mkdir -p "$out/bin"
    : > "$out/summary.txt"
    for packed in "$bin"/*.xz; do
        xz -d -c "$packed" > "$out/bin/$(basename "$packed" .xz)"
        chmod +x "$out/bin/$(basename "$packed" .xz)"
    done
    local exe=$out/bin
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
    fi
    step parity 45 "$exe/xtask" parity --backend "$backend" fixtures/parity/*.safetensors
    local kernels=cube_cuda
    [ "$backend" = cuda ] || kernels=cube
    for test in "$exe/$kernels"-*; do
        step "$(basename "$test")" 90 "$test" --test-threads 1
    done
    suite=gpu
    [ "$backend" = cuda ] || suite=kernels
    step bench 240 "$exe/xtask" bench --backend "$backend" --suite "$suite" \
        --json "$out/$backend-bench.json"
    cat "$out/summary.txt"
}

case "${1:-}" in
build) build ;;
run) run "${2:-}" ;;
*) echo "usage: gpu-check.sh build | run OUT_DIR" >&2; exit 2 ;;
esac
