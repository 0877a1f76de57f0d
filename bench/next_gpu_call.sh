#!/usr/bin/env bash
# Issue #8's prepared device calls for one 15-minute lease of the H200 (/work/.library/device/README.md): the lease
# counts each machine start (assume about 3 min) and no machine starts with under 4 min left, so each call is kept
# to TOTAL_LIMIT seconds (default 240): a failed first call plus a fresh start and one rerun still fit,
# 2 x (180 + 240 + about 20 s of transfers) <= 900. From the repository root on the GPU machine:
#   bash bench/next_gpu_call.sh                    part 1 (run it first; timeout_s 250):
#     1. preflight: python3's torch, transformers and CUDA into env.txt; stop at once (exit 2) if the library does
#        not import there, so no lease time goes to a doomed run;
#     2. koba lm bench, GPT-2 small: hf_bf16_master (the fair baseline for ours_bf16_master, never run on a GPU),
#        ours_bf16_master_bias (session 24: GPT-2's biases, the same 124.48M parameters as GPT2LMHeadModel; the
#        1.32x was measured without them), then ours_bf16_master (session 7's 509k, for continuity); the fair pair
#        first, as the bench rewrites its JSON after every variant; no kernel profile (145 s at most);
#     3. ALONE at full size, its same-budget table now fairly initialised (session 23; 73 s on the H100 then).
#   NEXT_GPU_PART=2 bash bench/next_gpu_call.sh    part 2, right after part 1 (timeout_s 250): at once on the GPU,
#     as session 7's second call ran them (losses, not times, so they may share it; a repro cut by its limit keeps
#     nothing, so each is skipped unless what it needs is left: wso 200 s, spike 190 s, expand 130 s; each then gets
#     all that is left of the call, 220 s when part 2 runs alone): wso at full size scored on unseen code only
#     (session 23; 192 s on the H100), spike at full size with Adam beta2 0.999, expand with session 25's fix.
#   NEXT_GPU_PART=3 TOTAL_LIMIT=... bash ...       leftovers, only if the lease has time for a third call: the
#     bench's candidates (chunked cross-entropy, CUDA graphs) against ours_bf16_master, the gpu tests (sessions
#     12-22, chunked cross-entropy), sampling with the KV cache, document_mask's cost, Llama-style blocks.
# If part 1 must be rerun on a fresh machine, part 2 no longer fits the lease and waits for the next one.
# Everything is written to a work folder outside $OUT (NEXT_GPU_WORK, default a new /tmp/next_gpu_partN.*); $OUT
# (default ./out_next_gpu) gets only results.tgz (the whole folder, rewritten after every step) and at most 6 key
# small files, flat, since the device tool returns at most 8 files from $OUT.
# A .whl folder in the repository root (device README) is installed into /tmp/site first: python3 there has its own
# packages (torch 2.11, transformers 5.17 as last seen), so only what it lacks needs carrying.
# NEXT_GPU_DRY=1 prints the plan and runs nothing; each step's limit is added to the clock, so skips show.
set -uo pipefail
cd "$(dirname "$0")/.."
PART="${NEXT_GPU_PART:-1}"
[[ "$PART" =~ ^[123]$ ]] || { echo "next_gpu_call.sh: NEXT_GPU_PART must be 1, 2 or 3, got '$PART'" >&2; exit 2; }
OUT="${OUT:-$PWD/out_next_gpu}"
PY="${KOBA_PY:-python3}"
TOTAL="${TOTAL_LIMIT:-240}"
[[ "$TOTAL" =~ ^[0-9]+$ ]] || { echo "next_gpu_call.sh: TOTAL_LIMIT must be whole seconds, got '$TOTAL'" >&2; exit 2; }
RESERVE=5   # seconds kept for the last packing
DRY="${NEXT_GPU_DRY:-}"
SIMULATED=0  # the dry run's clock: the limits of the steps it did not run
if [[ -n "$DRY" ]]; then
  WORK='$WORK'  # printed as is: the dry run makes no folder
elif [[ -n "${NEXT_GPU_WORK:-}" ]]; then
  WORK="$NEXT_GPU_WORK"
  [[ -e "$WORK" && -n "$(ls -A "$WORK" 2>/dev/null)" ]] && {
    echo "next_gpu_call.sh: NEXT_GPU_WORK $WORK is not empty" >&2; exit 2; }
  mkdir -p "$WORK"
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/next_gpu_part$PART.XXXXXX")"
fi
[[ -n "$DRY" ]] || mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=2 KOBA_PY="$PY" PYTHONUNBUFFERED=1

say() { if [[ -n "$DRY" ]]; then echo "$*" >&2; else echo "$*" | tee -a "$WORK/steps.log" >&2; fi; }
shown() {  # a command as the dry run prints it: an inline script shows as <script>
  local arg out=()
  for arg in "$@"; do [[ "$arg" == *$'\n'* ]] && arg="<script>"; out+=("$arg"); done
  echo "${out[*]}"
}
now() { echo $(( SECONDS + SIMULATED )); }
left() {  # seconds a step may take: min(its limit, what is left of TOTAL less the reserve), at least 1
  local remaining=$(( TOTAL - RESERVE - $(now) ))
  (( remaining < 1 )) && remaining=1
  echo $(( $1 < remaining ? $1 : remaining ))
}

KEYS=()  # key files, relative to $WORK, copied flat into $OUT beside results.tgz (6 at most)
pack() {  # results.tgz from the whole work folder, then the key files; big files stay out (16 MiB per file)
  [[ -n "$DRY" ]] && return 0
  local tgz="$WORK.tgz"
  tar czf "$tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='*.bin' -C "$WORK" . 2>/dev/null
  if (( $(stat -c %s "$tgz") > 15 * 1024 * 1024 )); then  # too big to come back: the small text files only
    (cd "$WORK" && find . -type f \( -name '*.json' -o -name '*.txt' -o -name '*.log' \) -size -2M -print0 \
      | tar czf "$tgz" --null -T -)
  fi
  cp "$tgz" "$OUT/results.tgz.part" && mv -f "$OUT/results.tgz.part" "$OUT/results.tgz"
  local key
  for key in "${KEYS[@]:0:6}"; do
    [[ -f "$WORK/$key" ]] && (( $(stat -c %s "$WORK/$key") <= 4 * 1024 * 1024 )) && cp "$WORK/$key" "$OUT/"
  done
  return 0
}

step() {  # step NAME LIMIT LOG COMMAND...: COMMAND under min(LIMIT, time left), its output in $WORK/LOG
  local name=$1 limit; limit=$(left "$2"); local log=$3; shift 3
  say "== $name (t=$(now)s, limit ${limit}s) -> $log"
  if [[ -n "$DRY" ]]; then
    say "   $(shown "$@")"
    SIMULATED=$(( SIMULATED + limit ))
    return 0
  fi
  timeout -k 5 "$limit" "$@" > "$WORK/$log" 2>&1
  local rc=$?
  say "   exit $rc$( (( rc == 124 || rc == 137 )) && echo ' (cut at its limit)')"
  pack
  return $rc
}

PIDS=()
GROUP_LIMIT=0
step_bg() {  # like step, but in the background until wait_steps; the group's clock advances by its longest limit
  local name=$1 limit; limit=$(left "$2"); local log=$3; shift 3
  say "== $name (t=$(now)s, in parallel, limit ${limit}s) -> $log"
  (( limit > GROUP_LIMIT )) && GROUP_LIMIT=$limit
  if [[ -n "$DRY" ]]; then
    say "   $(shown "$@")"
    return 0
  fi
  timeout -k 5 "$limit" "$@" > "$WORK/$log" 2>&1 &
  PIDS+=("$!:$name")
}
wait_steps() {
  local entry
  if [[ -n "$DRY" ]]; then
    SIMULATED=$(( SIMULATED + GROUP_LIMIT ))
  else
    for entry in "${PIDS[@]}"; do
      wait "${entry%%:*}"
      local rc=$?
      say "   ${entry#*:}: exit $rc$( (( rc == 124 || rc == 137 )) && echo ' (cut at its limit)')"
    done
  fi
  PIDS=(); GROUP_LIMIT=0
  say "== parallel steps done (t=$(now)s)"
  pack
}

if_left() {  # if_left SECONDS WHAT: true if the step can still get SECONDS, else says it is skipped
  local remaining=$(( TOTAL - RESERVE - $(now) ))
  (( remaining >= $1 )) && return 0
  say "== $2 skipped: ${remaining} s left, needs $1"
  return 1
}

say "next_gpu_call.sh part $PART: TOTAL ${TOTAL}s, work folder $WORK, OUT $OUT${DRY:+ (dry run: nothing runs)}"
if [[ -z "$DRY" && -d .whl ]] && compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH" || { say "next_gpu_call.sh: installing .whl failed"; exit 2; }
fi

# The machine's python3 is not our venv: record what it has, and stop if the library cannot run there at all.
# Versions are read from the package metadata (importing transformers would cost seconds); a preflight cut by its
# limit (a cold start) is not a verdict, so only its own failure stops the call.
PREFLIGHT='
import importlib.metadata as md, importlib.util, platform, sys
import torch
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
for name in ("transformers", "huggingface_hub", "tokenizers", "numpy", "safetensors", "tiktoken", "PyYAML",
             "matplotlib", "pytest"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "MISSING")
import koba_ros.nlp.bench, koba_ros.nlp.repro
missing = [] if "hf" not in sys.argv[1:] or importlib.util.find_spec("transformers") else ["transformers"]
sys.exit(0 if torch.cuda.is_available() and not missing else 1)
'
KEYS=(env.txt steps.log)
step "preflight: python3's packages and CUDA" 15 env.txt "$PY" -c "$PREFLIGHT" $([[ "$PART" != 2 ]] && echo hf)
rc=$?
if (( rc != 0 && rc != 124 && rc != 137 )); then
  say "next_gpu_call.sh: $PY has no CUDA torch, or transformers or the library is missing there (env.txt);" \
    "set KOBA_PY or carry wheels in .whl"
  pack
  exit 2
fi
[[ -n "$DRY" ]] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$WORK/env.txt" 2>/dev/null

if [[ "$PART" == 1 ]]; then
  KEYS+=(bench.json alone/alone.json)
  step "GPT-2 bench: the fair ratio to hf_bf16_master, and MFU" 145 bench.txt "$PY" -m koba_ros.nlp bench \
    --size gpt2 --steps 20 --device cuda --variants hf_bf16_master,ours_bf16_master_bias,ours_bf16_master \
    --json --out "$WORK/bench.json"
  if if_left 60 "ALONE full size"; then  # session 23: the same-budget table no longer starts tiny (init.py)
    step "ALONE full size, fair same-budget table" 95 alone.txt "$PY" -m koba_ros.nlp repro alone --device cuda \
      --json --out "$WORK/alone"
  fi
elif [[ "$PART" == 2 ]]; then
  KEYS+=(wso/wso.json spike/spike.json expand/expand.json)
  if if_left 200 "wso full size"; then  # session 23: fine-tuning is now scored on code pre-training never read
    step_bg "wso full size, unseen fine-tuning text" 230 wso.txt "$PY" -m koba_ros.nlp repro wso --device cuda \
      --json --out "$WORK/wso"
  fi
  if if_left 190 "spike full size"; then
    step_bg "spike, full size, beta2 0.999" 230 spike.txt "$PY" bench/lm_repro_sweep.py spike --size full \
      --set beta2=0.999 --device cuda --out "$WORK/spike"
  fi
  if if_left 130 "expand full size"; then  # session 25's fix of the new blocks' output projections
    step_bg "expand full size" 230 expand.txt "$PY" -m koba_ros.nlp repro expand --device cuda --json \
      --out "$WORK/expand"
  fi
  wait_steps
else
  KEYS+=(bench_candidates.json pytest_session12_gpu.txt lm_sample_cuda.json llama_bench.json)
  if if_left 100 "bench candidates"; then
    step "GPT-2 bench candidates against ours_bf16_master" 150 bench_candidates.txt "$PY" -m koba_ros.nlp bench \
      --size gpt2 --steps 20 --device cuda --json --out "$WORK/bench_candidates.json" --variants \
      ours_bf16_master,ours_bf16_master_chunked_ce,ours_bf16_master_cudagraphs,ours_bf16_master_chunked_ce_cudagraphs
  fi
  if if_left 60 "session 12-22 gpu tests"; then
    tests="kv_cache or activation_checkpointing or document_mask or fp16 or session21 or session22 or llama_style"
    step "session 12-22 gpu tests" 150 pytest_session12_gpu.txt "$PY" -m pytest -q -s -p no:cacheprovider -m gpu \
      test/test_nlp_gpu.py -k "$tests"
  fi
  if if_left 60 "chunked cross-entropy gpu test"; then
    step "chunked cross-entropy gpu test" 120 pytest_chunked_gpu.txt \
      "$PY" -m pytest -q -p no:cacheprovider -m gpu test/test_nlp_chunked_ce.py
  fi
  if if_left 30 "sampling with and without the KV cache"; then
    step "sampling with and without the KV cache" 90 lm_sample_cuda.json "$PY" bench/lm_sample.py --device cuda
  fi
  if if_left 30 "document_mask's cost"; then
    step "document_mask's cost (flash vs an explicit mask)" 60 lm_document_mask_cuda.json \
      "$PY" bench/lm_document_mask.py --device cuda --steps 20
  fi
  if if_left 140 "Llama-style bench"; then
    step "Llama-style blocks, GPT-2 small size" 140 llama_bench.txt "$PY" -m koba_ros.nlp bench --size gpt2 \
      --device cuda --variants hf_llama_compiled,ours_llama_compiled,ours_llama_bf16_master,hf_llama_bf16_master \
      --json --out "$WORK/llama_bench.json"
  fi
fi
say "== done at t=$(now)s of ${TOTAL}s"
pack
