#!/usr/bin/env bash
# Parallel memory on MPI, on this machine (mpirun --oversubscribe): the group operations on
# 2 and 4 processes, training on 2 and 4 processes against one (Memory+ with sparse and dense
# AdamW, PEER), and a rank killed mid-run ending every rank within 60 s. Needs Open MPI (or
# MPICH) and libclang: `apt-get install libopenmpi-dev openmpi-bin libclang-dev`.
#
#   tools/mpi/check.sh             # the checks (CI)
#   tools/mpi/check.sh --traffic   # and the bytes per step table of docs/parallel-memory.md
set -euo pipefail
cd "$(dirname "$0")/../.."

# Open MPI refuses to start as root unless told (containers, CI).
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
launch() { mpirun --oversubscribe -np "$@"; }
work=target/mpi-check
rm -rf "$work" && mkdir -p "$work"

echo "-- group operations (memory-layers-parallel tests/mpi.rs) on 1, 2 and 4 processes"
groups=$(cargo test --release -p memory-layers-parallel --features mpi --test mpi --no-run \
    --message-format=json | grep -o '"executable":"[^"]*/mpi-[^"]*"' | cut -d'"' -f4)
"$groups"
launch 2 "$groups"
launch 4 "$groups"

echo "-- training: N processes against one"
cargo build --release -p memory-layers-cli --features mpi --bin memory-layers
bin=target/release/memory-layers
data=$work/data.txt
(zcat crates/memory-layers-data/data/shakespeare.txt.gz || true) | head -c 100000 > "$data"
[ -s "$data" ] || { echo "no training text in $data"; exit 1; }
# Each step's loss and norm of run $1.
run_losses() { grep -o '"\(loss\|grad_norm\)":[^,]*' "$work/$1/metrics.jsonl" | cut -d: -f2; }
# Trains run $1 for 3 steps with the command "${@:2}"; prints each step's loss and norm.
losses() {
    "${@:2}" --size tiny --steps 3 --seed 5 --no-facts --data "$data" --set run.log_every=1 \
        --set run.eval_every=0 --set run.qa_limit=1 --set run.recall_limit=1 \
        --overwrite --out "$work/$1" > "$work/$1.log" 2>&1 || { cat "$work/$1.log" >&2; exit 1; }
    run_losses "$1"
}
# Losses $1 against $2 within 1e-4 relative, as the thread-based tests (the sums run in another
# order): prints $3 when they agree; else prints $4 and both columns, and stops.
same() {
    if paste <(echo "$1") <(echo "$2") | awk '{ d = $1 - $2; if (d < 0) d = -d;
        if (d > 1e-4 * ($2 < 0 ? -$2 : $2)) bad = 1 } END { exit bad }'; then
        echo "$3"
    else
        echo "$4"
        paste <(echo "$1") <(echo "$2")
        exit 1
    fi
}
for case in "memory-plus sparse-adamw 2 2" "memory-plus sparse-adamw 4 2" \
    "memory-plus sparse-adamw 4 4" "memory-plus dense-adamw 4 2" "peer sparse-adamw 4 2"; do
    read -r model optimizer np p <<< "$case"
    flags=(train --model "$model" --value-optimizer "$optimizer")
    one=$(losses "$model-$optimizer-1" "$bin" "${flags[@]}")
    many=$(losses "$model-$optimizer-$np-$p" launch "$np" "$bin" "${flags[@]}" --mpi \
        --memory-parallel "$p")
    same "$many" "$one" "$model, $optimizer: $np processes, memory groups of $p = 1 process" \
        "$model, $optimizer: $np processes differ from 1:"
done

echo "-- layouts that do not fit the job are errors on every rank before training"
for bad in "--memory-parallel 3|must divide" "--devices 4|the launcher started 2 processes"; do
    flags=${bad%|*}
    start=$SECONDS
    # shellcheck disable=SC2086 # the flags are two words
    if timeout 120 mpirun --oversubscribe -np 2 "$bin" train --mpi $flags --size tiny \
        --steps 2 --no-facts --data "$data" --out "$work/bad" > "$work/bad.log" 2>&1; then
        echo "$flags on 2 processes trained"
        exit 1
    fi
    grep -q "${bad#*|}" "$work/bad.log" || { cat "$work/bad.log"; exit 1; }
    [ ! -e "$work/bad" ] || { echo "$flags: a run directory was made"; exit 1; }
    echo "$flags on 2 processes: refused in $((SECONDS - start))s"
done

echo "-- a run checkpointed on 4 processes resumes on 2 and ends as 1 process does"
whole=$(losses resume-1 "$bin" train --model memory-plus)
losses resume-4-2 launch 4 "$bin" train --model memory-plus --mpi --memory-parallel 2 \
    --set optim.steps=2 > /dev/null
launch 2 "$bin" train --mpi --resume --steps 3 --memory-parallel 2 --out "$work/resume-4-2" \
    > "$work/resume-2.log" 2>&1 || { cat "$work/resume-2.log"; exit 1; }
resumed=$(run_losses resume-4-2)
same "$resumed" "$whole" "2 steps on 4 processes, then step 3 on 2 = 3 steps on 1 process" \
    "the resumed run differs:"

echo "-- a rank killed mid-run ends the others"
# The launcher itself under a limit: a hang is what this checks for.
timeout -s KILL 120 mpirun --oversubscribe -np 2 "$bin" train --mpi --memory-parallel 2 \
    --model memory-plus --size tiny --steps 100000 --no-facts --data "$data" \
    --out "$work/killed" > "$work/killed.log" 2>&1 &
job=$!
for _ in $(seq 120); do
    [ -e "$work/killed/metrics.jsonl" ] && break
    sleep 0.5
done
# The ranks' command lines start with the binary (mpirun's with "mpirun").
ranks=$(pgrep -f "^$bin train --mpi" || true)
[ "$(echo "$ranks" | wc -w)" -eq 2 ] || { echo "expected 2 ranks, found: $ranks"; exit 1; }
kill -9 "$(echo "$ranks" | tail -1)"
start=$SECONDS
status=0
wait "$job" || status=$?
elapsed=$((SECONDS - start))
left=$(pgrep -f "^$bin train --mpi" || true)
echo "mpirun exited with status $status ${elapsed}s after the kill; ranks left: ${left:-none}"
[ "$status" -ne 0 ] && [ "$elapsed" -lt 60 ] && [ -z "$left" ] || exit 1

[ "${1:-}" = --traffic ] || exit 0
echo "-- bytes per step each rank hands to MPI: groups on their own communicators vs world all-reduces"
# Rank 0's traffic.json after 4 steps minus after 2 steps, halved: one step, without the
# setup, checkpoint and final evaluation that both runs share.
per_step() {
    local name=$1
    shift
    for steps in 2 4; do
        launch "$@" --steps "$steps" --seed 5 --no-facts --data "$data" --set run.eval_every=0 \
            --set run.qa_limit=1 --set run.recall_limit=1 --overwrite \
            --out "$work/$name-$steps" > "$work/$name-$steps.log" 2>&1 \
            || { cat "$work/$name-$steps.log"; exit 1; }
    done
    python3 - "$work/$name-2/traffic.json" "$work/$name-4/traffic.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ops = {k: (b.get(k, 0) - a.get(k, 0)) // 2 for k in sorted(set(a) | set(b))}
print(" ".join(f"{k} {v / 1e6:.3f} MB" for k, v in ops.items() if v), f"| total {sum(ops.values()) / 1e6:.3f} MB")
PY
}
for size in tiny small; do
    for layout in "4 2" "4 4"; do
        read -r np p <<< "$layout"
        for groups in native world; do
            flag=()
            [ "$groups" = world ] && flag=(--mpi-world-groups)
            printf '%-5s N=%s P=%s %-6s ' "$size" "$np" "$p" "$groups"
            per_step "$size-$np-$p-$groups" "$np" "$bin" train --mpi --model memory-plus \
                --size "$size" --memory-parallel "$p" --set optim.batch_size=8 "${flag[@]}"
        done
    done
done
