"""`koba lm bench`: training throughput (tokens/s) and model-FLOPs utilisation, ours vs Hugging Face GPT-2.

Every variant trains the same GPT-2 shape on the same random tokens in the same process: forward, backward and an
AdamW step under bf16 autocast (GPU). MFU uses the PaLM (Chowdhery et al. 2022, App. B) count of training FLOPs per
token, 6·N + 12·L·d·T (N parameters but the position table, L layers, d width, T context), against the device's
dense bf16 peak.
"""
from __future__ import annotations

import gc
import importlib.util
import time

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM

SHAPES = {
    "gpt2": dict(vocab_size=50304, d_model=768, n_layers=12, n_heads=12, seq=1024, batch=16),
    "tiny": dict(vocab_size=512, d_model=64, n_layers=2, n_heads=2, seq=64, batch=4),
}
VARIANTS = ("ours", "ours_compiled", "hf", "hf_compiled")
# Candidate speed-ups, measured against the four above in the same run (not in the default list: each compiles for
# minutes on a GPU). max_autotune: inductor benchmarks Triton/cuBLAS GEMM configurations and tunes the fused
# kernels' launch parameters (mode max-autotune-no-cudagraphs); cudnn: the causal attention through cuDNN's fused
# attention instead of FlashAttention-2 (H100 has a Hopper-specific cuDNN kernel); cudagraphs: the compiled forward
# and backward replayed as CUDA graphs (mode reduce-overhead: no per-kernel launch cost, the optimizer step stays
# outside); coordinate_descent: inductor also tunes each fused Triton kernel's block sizes by coordinate descent;
# compiled_optimizer: AdamW's step compiled by inductor instead of the fused CUDA kernel; bf16_master: bf16 weights
# and activations, AdamW on fp32 master weights in one pass (master_weights.py) instead of autocast's fp32 weights
# (hf_bf16_master: the same recipe for the baseline, so a gain from the precision recipe is not taken for ours);
# ours_bf16_master_chunked_ce: bf16_master, with the head and the loss computed a quarter of the tokens at a time
# (chunked_cross_entropy.py: the [B*T, V] logits and their gradient never exist whole); ours_bf16_master_cudagraphs:
# bf16_master with the forward and backward replayed as CUDA graphs (session 7's bf16_master profile had the GPU
# idle 7 % of the step, twice autocast's, where graphs gave nothing); ours_bf16_master_chunked_ce_cudagraphs: both
# (if each closes part of the 2.2 % MFU gap, together they may close it).
# Llama-style blocks at the same size (session 20), against transformers' LlamaForCausalLM of the same shape: RMSNorm,
# a SwiGLU FFN of 8/3 d (the same parameters as GPT-2's 4 d GELU FFN), grouped-query attention with a third of the
# heads for keys and values, RoPE (no position table), no biases, tied embeddings. Their ratio is reported apart
# (`llama_ours_over_best_hf`): the aim is about GPT-2.
LLAMA_VARIANTS = ("ours_llama", "ours_llama_compiled", "ours_llama_bf16_master", "hf_llama", "hf_llama_compiled",
                  "hf_llama_bf16_master")
EXTRA_VARIANTS = ("ours_max_autotune", "ours_cudnn", "ours_max_autotune_cudnn", "ours_cudagraphs",
                  "ours_coordinate_descent", "ours_compiled_optimizer", "ours_bf16_master", "hf_bf16_master",
                  "ours_bf16_master_chunked_ce", "ours_bf16_master_cudagraphs",
                  "ours_bf16_master_chunked_ce_cudagraphs", "ours_bf16_master_bias", *LLAMA_VARIANTS)
# ours_bf16_master_bias: ours with GPT-2's biases (every linear layer's and norm's), the same 124.48M parameters as
# GPT2LMHeadModel; the others leave biases out (124.37M), which a review found undisclosed next to the 1.32x ratio.
AUTOTUNE = "max-autotune-no-cudagraphs"
COMPILE_MODES = {"ours_compiled": "default", "hf_compiled": "default", "ours_max_autotune": AUTOTUNE,
                 "ours_cudnn": "default", "ours_max_autotune_cudnn": AUTOTUNE, "ours_cudagraphs": "reduce-overhead",
                 "ours_coordinate_descent": "default", "ours_compiled_optimizer": "default",
                 "ours_bf16_master": "default", "ours_bf16_master_bias": "default",
                 "hf_bf16_master": "default", "ours_bf16_master_chunked_ce": "default",
                 "ours_bf16_master_cudagraphs": "reduce-overhead",
                 "ours_bf16_master_chunked_ce_cudagraphs": "reduce-overhead",
                 "ours_llama_compiled": "default", "ours_llama_bf16_master": "default", "hf_llama_compiled": "default",
                 "hf_llama_bf16_master": "default"}
LOSS_CHUNKS_PER_STEP = 4  # chunked_ce variants: GPT-2 bench 16384 tokens -> 4096-row chunks, GEMMs still large


def attention_context(variant: str):
    """The SDPA backends a variant may use (cudnn variants: cuDNN attention only)."""
    import contextlib

    if "cudnn" not in variant:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.CUDNN_ATTENTION])


def flops_per_token(n_params: int, shape: dict, position_table: bool = True) -> float:
    """PaLM's 6·N + 12·L·d·T with N the parameters that enter a matrix product: both models' learned position table
    ([T, d], a lookup) is left out, as in nanoGPT's MFU estimate (counting it, before session 11, added 0.55 %).
    RoPE models have no table (`position_table=False`). Grouped-query attention changes N only: the scores and the
    weighted sum still run over every query head, so the attention term stays 12·L·d·T."""
    matmul_params = n_params - (shape["seq"] * shape["d_model"] if position_table else 0)
    return 6.0 * matmul_params + 12.0 * shape["n_layers"] * shape["d_model"] * shape["seq"]


def llama_shape(shape: dict) -> dict:
    """The Llama-style variants' extra dimensions: SwiGLU hidden size 8/3 d (a multiple of 64, so 2048 at d 768) and
    a third of the heads (at least one) for keys and values."""
    return {"d_ff": 64 * max(1, round(8 * shape["d_model"] / 3 / 64)), "n_kv_heads": max(1, shape["n_heads"] // 3)}


def build(variant: str, shape: dict, device):
    """(model, loss function (ids) -> loss) for a variant."""
    llama = llama_shape(shape) if "llama" in variant else None
    blocks = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", **llama) if llama else dict(positions="learned")
    config = TransformerConfig(vocab_size=shape["vocab_size"], d_model=shape["d_model"], n_layers=shape["n_layers"],
                               n_heads=shape["n_heads"], max_len=shape["seq"], norm="pre", tie_embeddings=True,
                               bias=variant.endswith("_bias"), pad_id=0, **blocks,
                               loss_chunk=(shape["batch"] * shape["seq"] // LOSS_CHUNKS_PER_STEP
                                           if "chunked_ce" in variant else 0))
    if variant.startswith("ours"):
        model = TransformerLM(config).to(device)

        def loss_fn(m, ids):
            return m(ids[:, :-1], ids[:, 1:])[1]
    elif llama:  # transformers' LlamaForCausalLM of exactly our Llama-style config (hf_llama.py's mapping)
        from transformers import LlamaForCausalLM

        from koba_ros.nlp.hf_llama import llama_config

        model = LlamaForCausalLM(llama_config(config)).to(device)

        def loss_fn(m, ids):
            return m(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss
    else:
        try:
            from transformers import GPT2Config, GPT2LMHeadModel
        except ImportError as exc:
            raise KobaError("the Hugging Face baseline needs the transformers package") from exc
        config = GPT2Config(vocab_size=shape["vocab_size"], n_positions=shape["seq"], n_embd=shape["d_model"],
                            n_layer=shape["n_layers"], n_head=shape["n_heads"], resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, bos_token_id=shape["vocab_size"] - 1,
                            eos_token_id=shape["vocab_size"] - 1)
        model = GPT2LMHeadModel(config).to(device)

        def loss_fn(m, ids):
            return m(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss
    return model, loss_fn


def compile_context(variant: str):
    """Inductor settings a variant compiles under (they apply while its graphs compile, i.e. in the warm-up)."""
    import contextlib

    if variant != "ours_coordinate_descent":
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(coordinate_descent_tuning=True)


def variant_optimizer(variant: str, model, cuda: bool):
    """(optimizer, step function) for a variant: fused AdamW unless the variant is about the optimizer."""
    if "bf16_master" in variant:
        from koba_ros.nlp.master_weights import MasterWeightAdamW

        opt = MasterWeightAdamW(model.parameters(), lr=1e-4, dtype=torch.bfloat16, compile=cuda)
        return opt, opt.step
    if variant == "ours_compiled_optimizer":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
        return opt, torch.compile(opt.step)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    return opt, opt.step


def time_variant(variant: str, shape: dict, device, steps: int, warmup: int, profile_steps: int = 0) -> dict:
    torch.manual_seed(0)
    model, loss_fn = build(variant, shape, device)
    n_params = sum(p.numel() for p in model.parameters())
    mode = COMPILE_MODES.get(variant)
    forward = torch.compile(model, mode=mode) if mode else model
    cuda = device.type == "cuda"
    opt, optimizer_step = variant_optimizer(variant, model, cuda)
    ids = torch.randint(0, shape["vocab_size"], (shape["batch"], shape["seq"] + 1), device=device)

    def step():
        if mode == "reduce-overhead":  # a new iteration: the graphs' previous outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda), attention_context(variant):
            loss = loss_fn(forward, ids)
        loss.backward()
        optimizer_step()
        opt.zero_grad(set_to_none=True)
        return loss

    with compile_context(variant):
        for _ in range(warmup):  # includes torch.compile's compilation
            step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss_value = loss.item()  # waits for the device
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    tokens_per_s = shape["batch"] * shape["seq"] / seconds
    result = {"parameters": n_params, "step_ms": round(seconds * 1000, 2), "tokens_per_s": round(tokens_per_s),
              "flops_per_token": flops_per_token(n_params, shape, position_table="llama" not in variant),
              "loss": round(loss_value, 4)}
    if profile_steps:  # after the timing, so the profiler's own cost never enters tokens_per_s
        from koba_ros.nlp.kernel_profile import profile_steps as profile

        try:
            result["profile"] = profile(step, profile_steps, cuda)
        except Exception as exc:  # noqa: BLE001 - a profiler failure must not cost the measured throughput
            result["profile"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    if variant.startswith("hf"):
        result["hf_attention"] = getattr(model.config, "_attn_implementation", "?")
    return result


def run_bench(size: str = "gpt2", device: str = "auto", steps: int = 20, variants=VARIANTS,
              peak_tflops: float = 989.0, warmup: int = 3, out: str = "", profile_steps: int = 0) -> dict:
    """Time each variant in turn in this process. With `out`, the JSON is rewritten after every variant
    ("complete": false until the last), so a run cut short by a time limit still leaves what it measured.
    `profile_steps` > 0 adds each variant's kernel-time breakdown (kernel_profile.py), measured after its timing."""
    unknown = [v for v in variants if v not in VARIANTS + EXTRA_VARIANTS]
    if unknown or not variants:
        raise KobaError(f"bench: variants (one or more) must be among {', '.join(VARIANTS + EXTRA_VARIANTS)}"
                        + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    if size not in SHAPES:
        raise KobaError(f"bench: --size must be {'|'.join(SHAPES)}, got {size!r}")
    if steps <= 0:
        raise KobaError(f"bench: --steps must be > 0, got {steps}")
    if profile_steps < 0:
        raise KobaError(f"bench: --profile-steps must be >= 0, got {profile_steps}")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KobaError("bench: --device cuda requested but no CUDA device is available")
    needs_cuda = [v for v in variants if "cudnn" in v or "cudagraphs" in v]
    if dev.type != "cuda" and needs_cuda:
        raise KobaError(f"bench: {', '.join(needs_cuda)} need a CUDA device (cuDNN attention, CUDA graphs)")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    shape = SHAPES[size]
    header = {"size": size, "shape": shape, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda"
              else "cpu", "dtype": "bf16 autocast" if dev.type == "cuda" else "fp32", "steps": steps,
              "peak_tflops": peak_tflops, "torch": torch.__version__}
    if out:  # an unwritable --out fails now, not after minutes of timing
        _write(out, summarize(header, {}, complete=False))
    results = {}
    for variant in variants:
        if variant.startswith("hf") and importlib.util.find_spec("transformers") is None:
            results[variant] = {"skipped": "transformers is not installed"}
            continue
        try:
            results[variant] = time_variant(variant, shape, dev, steps, warmup, profile_steps)
        except RuntimeError as exc:  # a candidate's kernels may not exist for this GPU / torch build: say so, go on
            if variant not in EXTRA_VARIANTS:
                raise
            results[variant] = {"error": str(exc).splitlines()[0][:200]}
        gc.collect()  # the variant's model and optimizer are gone; give their memory back before the next one
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if "tokens_per_s" in results[variant]:
            results[variant]["mfu"] = round(results[variant]["tokens_per_s"] * results[variant]["flops_per_token"]
                                            / (peak_tflops * 1e12), 4)
        if out:
            _write(out, summarize(header, results, complete=len(results) == len(variants)))
    return summarize(header, results, complete=True)


def summarize(header: dict, results: dict, complete: bool) -> dict:
    summary = {**header, "variants": results, "complete": complete}
    for key, family in (("ours_over_best_hf", [v for v in results if v not in LLAMA_VARIANTS]),
                        ("llama_ours_over_best_hf", [v for v in results if v in LLAMA_VARIANTS])):
        best_hf = max((results[v].get("tokens_per_s", 0) for v in family if v.startswith("hf")), default=0)
        best_ours = max((results[v].get("tokens_per_s", 0) for v in family if v.startswith("ours")), default=0)
        if best_hf and best_ours:
            summary[key] = round(best_ours / best_hf, 3)  # GPT-2's aim on an H100: >= 1.3 (and MFU >= 0.45)
    summary["best_mfu"] = max((r.get("mfu", 0.0) for v, r in results.items() if v not in LLAMA_VARIANTS), default=0.0)
    return summary


def _write(path: str, summary: dict) -> None:
    import json
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(summary, indent=1))
