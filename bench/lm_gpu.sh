#!/usr/bin/env bash
# The NLP library's GPU checks in one go (about 8 minutes on one H100):
#   1. koba lm bench: GPT-2 small (124M, seq 1024, batch 16, bf16), ours vs Hugging Face, eager and compiled;
#   2. the full-size reproductions (b2t shape alone spike wso expand), each under its own time limit.
# Results (JSON + PNG) go under $OUT (default ./out_lm_gpu). Run from the repository root:
#   bash bench/lm_gpu.sh
# KOBA_LM_TINY=1 runs the same steps on the CPU: tiny bench (eager variants; compiling on a CPU takes minutes) and
# test-size reproductions (KOBA_LM_REPROS, default expand). KOBA_LM_REPROS="b2t wso" picks reproductions.
# KOBA_PY picks the Python (default .venv/bin/python; it needs a CUDA build of torch on the GPU machine).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out_lm_gpu}"
PY="${KOBA_PY:-.venv/bin/python}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [[ -n "${KOBA_LM_TINY:-}" ]]; then
  DEVICE=cpu; BENCH=(--size tiny --steps 2 --device cpu --variants ours,hf); REPRO=(--size test); LIMIT=600
  REPROS="${KOBA_LM_REPROS:-expand}"
else
  DEVICE=cuda; BENCH=(--size gpt2 --steps 20 --device cuda); REPRO=(); LIMIT="${REPRO_LIMIT:-45}"
  REPROS="${KOBA_LM_REPROS:-b2t shape alone spike wso expand}"
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "lm_gpu.sh: $PY has no CUDA torch; set KOBA_PY" >&2; exit 2; }
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv >> "$OUT/env.txt" 2>/dev/null || true

status=0
echo "== bench" >&2
timeout "${BENCH_LIMIT:-270}" "$PY" -m koba_ros.nlp bench "${BENCH[@]}" --json --out "$OUT/bench.json" > "$OUT/bench.stdout" \
  2> "$OUT/bench.stderr" || { echo "bench failed (rc $?), see bench.stderr" >&2; status=1; }
cat "$OUT/bench.json" 2>/dev/null; echo
for name in $REPROS; do
  echo "== repro $name" >&2
  timeout "$LIMIT" "$PY" -m koba_ros.nlp repro "$name" --device "$DEVICE" "${REPRO[@]}" --json \
    --out "$OUT/repro" > "$OUT/repro_$name.stdout" 2> "$OUT/repro_$name.stderr" \
    || { echo "repro $name failed or timed out (rc $?)" >&2; status=1; }
  tail -c 600 "$OUT/repro_$name.stdout"; echo
done
exit $status
