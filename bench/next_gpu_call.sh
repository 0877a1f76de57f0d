#!/usr/bin/env bash
# Issue #8's prepared device call, in priority order, inside TOTAL_LIMIT seconds (default 560: a device command may
# run 600). From the repository root on the GPU machine:
#   OUT=/some/folder bash bench/next_gpu_call.sh          (the device tool sets OUT; default ./out_next_gpu)
# Steps (docs/nlp.md "Session 11" to "Session 13"); each gets min(its limit, time left), so the call ends in time:
#   1. the chunked cross-entropy's gpu test (150 s at most);
#   2. koba lm bench, GPT-2 small: hf_compiled, hf_bf16_master (the fair baseline for ours_bf16_master, never run
#      on a GPU), ours_bf16_master, ours_bf16_master_bias (session 24: with GPT-2's biases, the same 124.48M
#      parameters as GPT2LMHeadModel; the 1.32x was measured without them), and the candidates ours_bf16_master_chunked_ce and ours_bf16_master_cudagraphs,
#      and both together (last: the bench writes its JSON after every variant, so a cut keeps the others), with a
#      2-step kernel profile each (340 s at most; session 7 measured 182 s for four variants);
#   3. session 12-13 gpu tests: KV-cache decoding under bf16, activation checkpointing's peak memory, document_mask
#      under bf16, and (session 19) Llama-style blocks with the grouped KV cache (150 s);
#   4. bench/lm_sample.py --device cuda: sampling with and without the KV cache (90 s);
#   4b. bench/lm_document_mask.py --device cuda: training steps with and without document_mask (60 s);
#   4c. if 110 s or more are left (session 23): ALONE at full size, its same-budget table now fairly initialised
#      (session 7's 4.921 was measured with a table that started at std 0.001; 73 s on the H100 then);
#   4d. if 250 s or more are left (session 23): wso at full size, its fine-tuning now scored on unseen code only
#      (session 7's WSO win was scored on text a quarter of whose lines pre-training had read);
#   5. if 150 s or more are left (session 20): Llama-style blocks at GPT-2 small's size, ours against transformers'
#      LlamaForCausalLM, compiled and bf16_master (140 s at most; the JSON is rewritten after every variant);
#   6. if 250 s or more are left: spike at full size with Adam beta2 0.999 (low priority).
# Everything lands under $OUT, also packed as $OUT/results.tgz (the device tool may not return every file).
# NEXT_GPU_DRY=1 prints the steps with their time limits and runs nothing (the check this machine can do).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out_next_gpu}"
PY="${KOBA_PY:-python3}"
TOTAL="${TOTAL_LIMIT:-560}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=2 KOBA_PY="$PY"

left() {  # seconds a step may take: min(its limit, what is left of TOTAL), at least 1
  local remaining=$((TOTAL - SECONDS))
  (( remaining < 1 )) && remaining=1
  echo $(( $1 < remaining ? $1 : remaining ))
}

step() {  # step NAME LIMIT LOG COMMAND...: run COMMAND under the step's time limit, output to $OUT/LOG
  local name=$1 limit; limit=$(left "$2"); local log=$3; shift 3
  echo "== $name (t=${SECONDS}s, limit ${limit}s) -> $log" >&2
  if [[ -n "${NEXT_GPU_DRY:-}" ]]; then
    echo "   $*" >&2
    return 0
  fi
  timeout "$limit" "$@" > "$OUT/$log" 2>&1
  echo "   exit $?" >&2
}

if [[ -z "${NEXT_GPU_DRY:-}" ]]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "next_gpu_call.sh: $PY has no CUDA torch; set KOBA_PY" >&2; exit 2; }
fi
step "chunked cross-entropy gpu test" 150 pytest_chunked_gpu.txt \
  "$PY" -m pytest -q -p no:cacheprovider -m gpu test/test_nlp_chunked_ce.py
step "GPT-2 bench" 340 bench.txt env OUT="$OUT/bench" KOBA_LM_REPROS=" " KOBA_LM_BENCH=1 BENCH_LIMIT=330 \
  TOTAL_LIMIT="$(left 340)" KOBA_LM_PROFILE_STEPS=2 \
  KOBA_LM_BENCH_VARIANTS=hf_compiled,hf_bf16_master,ours_bf16_master,ours_bf16_master_bias,ours_bf16_master_chunked_ce,ours_bf16_master_cudagraphs,ours_bf16_master_chunked_ce_cudagraphs \
  bash bench/lm_gpu.sh
step "session 12-22 gpu tests" 150 pytest_session12_gpu.txt \
  "$PY" -m pytest -q -s -p no:cacheprovider -m gpu test/test_nlp_gpu.py -k "kv_cache or activation_checkpointing or document_mask or fp16 or session21 or session22 or llama_style"
step "sampling with and without the KV cache" 90 lm_sample_cuda.json "$PY" bench/lm_sample.py --device cuda
step "document_mask's cost (flash vs an explicit mask)" 60 lm_document_mask_cuda.json \
  "$PY" bench/lm_document_mask.py --device cuda --steps 20
if (( TOTAL - SECONDS >= 110 )); then  # session 23: the same-budget table no longer starts tiny (init.py)
  step "ALONE full size, fair same-budget table" 100 alone_full.txt "$PY" -m koba_ros.nlp repro alone --device cuda \
    --json --out "$OUT/alone"
else
  echo "== ALONE skipped: $((TOTAL - SECONDS)) s left" >&2
fi
if (( TOTAL - SECONDS >= 250 )); then  # session 23: fine-tuning is now scored on code pre-training never read
  step "wso full size, unseen fine-tuning text" 240 wso_full.txt "$PY" -m koba_ros.nlp repro wso --device cuda \
    --json --out "$OUT/wso"
else
  echo "== wso skipped: $((TOTAL - SECONDS)) s left" >&2
fi
if (( TOTAL - SECONDS >= 150 )); then
  step "Llama-style blocks, GPT-2 small size" 140 llama_bench.txt "$PY" -m koba_ros.nlp bench --size gpt2 \
    --device cuda --variants hf_llama_compiled,ours_llama_compiled,ours_llama_bf16_master,hf_llama_bf16_master \
    --json --out "$OUT/llama_bench.json"
else
  echo "== Llama-style bench skipped: $((TOTAL - SECONDS)) s left" >&2
fi
if (( TOTAL - SECONDS >= 250 )); then
  step "spike, full size, beta2 0.999" 250 spike.txt env OUT="$OUT/spike" KOBA_LM_PARALLEL=1 KOBA_LM_REPROS=" " \
    KOBA_LM_SWEEPS="spike --size full --set beta2=0.999" REPRO_LIMIT=240 TOTAL_LIMIT="$(left 250)" bash bench/lm_gpu.sh
else
  echo "== spike skipped: $((TOTAL - SECONDS)) s left" >&2
fi
[[ -n "${NEXT_GPU_DRY:-}" ]] || tar czf "$OUT/results.tgz" --exclude results.tgz -C "$OUT" .
echo "== done at t=${SECONDS}s" >&2
