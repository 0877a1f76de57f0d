#!/usr/bin/env bash
# The NLP library's GPU checks in one device call (at most TOTAL_LIMIT seconds, default 480 = 8 minutes):
#   1. the full-size reproductions that did not reproduce last time, with the corrected settings (docs/nlp.md,
#      "Why three effects did not reproduce"): shape (also evaluated at inference offset 0), spike (lr 1e-2 and
#      3e-2, 8 layers, 1000 steps), b2t (1000 steps at batch 16 on all the docstrings); estimated about 6 minutes
#      on an H100/H200 from last session's timings (not run yet);
#   2. with KOBA_LM_BENCH=1, first koba lm bench: GPT-2 small (124M, seq 1024, batch 16, bf16), ours vs Hugging
#      Face compiled, and the candidate speed-ups (max-autotune, cuDNN attention; koba_ros/nlp/bench.py) in the
#      same process; KOBA_LM_BENCH_VARIANTS picks them (default below; add ours,hf for the eager rows measured in
#      session 1). Off by default. For the bench alone: KOBA_LM_BENCH=1 KOBA_LM_REPROS=" " BENCH_LIMIT=470.
#      Session 8's candidate, the chunked linear + cross-entropy (koba_ros/nlp/chunked_cross_entropy.py) on top of
#      bf16_master, against its baselines in the same run (docs/nlp.md, "Session 8"):
#        KOBA_LM_BENCH_VARIANTS=hf_compiled,hf_bf16_master,ours_bf16_master,ours_bf16_master_chunked_ce
#      and session 11's, CUDA graphs on top of bf16_master: add ours_bf16_master_cudagraphs ("Session 11").
# Every step gets min(REPRO_LIMIT, time left) seconds, so the script always ends inside TOTAL_LIMIT.
# Results (JSON + PNG) go under $OUT (default ./out_lm_gpu). Run from the repository root:
#   bash bench/lm_gpu.sh
# KOBA_LM_REPROS="b2t wso" picks reproductions (default: shape spike b2t; also alone wso expand family; family at
# full size needs REPRO_LIMIT=400, an estimate). KOBA_PY picks the Python (default
# .venv/bin/python; it needs a CUDA build of torch on the GPU machine).
# KOBA_LM_PARALLEL=1 runs the reproductions concurrently (REPRO_LIMIT each, from the start), then the bench alone.
# KOBA_LM_SWEEPS="spike --size full --set n_layers=24; spike --size full --set batch=8" (parallel mode only) also runs
# bench/lm_repro_sweep.py with each ';'-separated argument list, alongside the repros (same limit; no spaces inside a
# value); each writes $OUT/sweep_N/ and sweep_N.stdout. KOBA_LM_PROFILE_STEPS=3 adds the bench's kernel-time
# breakdown per variant (koba_ros/nlp/kernel_profile.py).
# KOBA_LM_TAR=FILE packs everything under $OUT into one .tgz at the end (the device tool returns only a few files
# per call: session 7 lost the repro results of its first call).
# KOBA_LM_TINY=1 runs the same steps on the CPU: tiny bench (eager variants; compiling on a CPU takes minutes) and
# test-size reproductions (default expand).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out_lm_gpu}"
PY="${KOBA_PY:-.venv/bin/python}"
TOTAL="${TOTAL_LIMIT:-480}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [[ -n "${KOBA_LM_TINY:-}" ]]; then
  DEVICE=cpu; BENCH=(--size tiny --steps 2 --device cpu --variants ours,hf); REPRO=(--size test); LIMIT=600
  REPROS="${KOBA_LM_REPROS:-expand}"; RUN_BENCH="${KOBA_LM_BENCH:-1}"
else
  VARIANTS="${KOBA_LM_BENCH_VARIANTS:-hf_compiled,ours_compiled,hf_bf16_master,ours_bf16_master}"
  DEVICE=cuda; BENCH=(--size gpt2 --steps 20 --device cuda --variants "$VARIANTS"); REPRO=(); LIMIT="${REPRO_LIMIT:-220}"
  REPROS="${KOBA_LM_REPROS:-shape spike b2t}"; RUN_BENCH="${KOBA_LM_BENCH:-0}"
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "lm_gpu.sh: $PY has no CUDA torch; set KOBA_PY" >&2; exit 2; }
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv >> "$OUT/env.txt" 2>/dev/null || true

left() {  # seconds this step may take: min(limit, what is left of TOTAL), at least 1
  local remaining=$((TOTAL - SECONDS))
  (( remaining < 1 )) && remaining=1
  echo $(( $1 < remaining ? $1 : remaining ))
}

status=0
run_bench() {
  echo "== bench (t=${SECONDS}s)" >&2
  timeout "$(left "${BENCH_LIMIT:-270}")" "$PY" -m koba_ros.nlp bench "${BENCH[@]}" \
    --profile-steps "${KOBA_LM_PROFILE_STEPS:-0}" --json --out "$OUT/bench.json" \
    > "$OUT/bench.stdout" 2> "$OUT/bench.stderr" || { echo "bench failed (rc $?), see bench.stderr" >&2; status=1; }
  cat "$OUT/bench.json" 2>/dev/null; echo
}
run_repro() {  # name, seconds
  timeout "$2" "$PY" -m koba_ros.nlp repro "$1" --device "$DEVICE" "${REPRO[@]}" --json \
    --out "$OUT/repro" > "$OUT/repro_$1.stdout" 2> "$OUT/repro_$1.stderr"
}
if [[ -n "${KOBA_LM_PARALLEL:-}" ]]; then
  # The reproductions at once, then the bench alone on the device: small models leave most of a GPU idle between
  # kernel launches, so several share it well; their numbers are losses and FLOPs, not times. They go first
  # because a repro stopped by its limit keeps nothing, while the bench rewrites its JSON after every variant.
  pids=()
  limit=$(left "$LIMIT")
  for name in $REPROS; do
    echo "== repro $name (parallel, limit ${limit}s)" >&2
    OMP_NUM_THREADS=2 run_repro "$name" "$limit" & pids+=("$!:$name")
  done
  IFS=';' read -ra sweeps <<< "${KOBA_LM_SWEEPS:-}"
  set -f  # a sweep's JSON values ("lrs=[0.01]") are not file patterns
  for i in "${!sweeps[@]}"; do
    [[ -z "${sweeps[$i]// }" ]] && continue
    echo "== sweep_$i: ${sweeps[$i]} (parallel, limit ${limit}s)" >&2
    # shellcheck disable=SC2086  # the entry is an argument list
    OMP_NUM_THREADS=2 timeout "$limit" "$PY" bench/lm_repro_sweep.py ${sweeps[$i]} --device "$DEVICE" \
      --out "$OUT/sweep_$i" > "$OUT/repro_sweep_$i.stdout" 2> "$OUT/repro_sweep_$i.stderr" & pids+=("$!:sweep_$i")
  done
  set +f
  for entry in "${pids[@]}"; do
    wait "${entry%%:*}" || { echo "repro ${entry#*:} failed or timed out" >&2; status=1; }
    tail -c 1500 "$OUT/repro_${entry#*:}.stdout"; echo
  done
  echo "== repros done (t=${SECONDS}s)" >&2
  [[ "$RUN_BENCH" == 1 ]] && run_bench
else
  [[ "$RUN_BENCH" == 1 ]] && run_bench
  for name in $REPROS; do
    echo "== repro $name (t=${SECONDS}s)" >&2
    run_repro "$name" "$(left "$LIMIT")" || { echo "repro $name failed or timed out (rc $?)" >&2; status=1; }
    tail -c 1500 "$OUT/repro_$name.stdout"; echo
  done
fi
echo "== done in ${SECONDS}s" >&2
if [[ -n "${KOBA_LM_TAR:-}" ]]; then
  tar czf "$KOBA_LM_TAR" -C "$OUT" . || status=1
fi
exit $status
