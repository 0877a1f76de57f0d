"""Where a training step's time goes: kernel time per category (GEMM, attention, fused Triton kernels, optimizer,
embedding, other) from torch.profiler, against the step's wall time.

Used by `koba lm bench --profile-steps N` to decide which speed-up is worth building: a step whose GEMMs already
take most of the wall time leaves little to gain elsewhere, while a large "other" or a gap between busy device time
and wall time (launch overhead) points at fusion or CUDA graphs. On a CPU the same breakdown is over the aten ops'
self CPU time (no kernels exist there), so the CPU test exercises the whole path.
"""
from __future__ import annotations

import re
import time

import torch

# First match wins; names are lower-cased. cuBLAS/CUTLASS GEMM kernels go by many names (sm90_xmma_gemm_*,
# nvjet_*, cutlass_*); on a CPU the aten matmul ops stand in for them.
CATEGORIES = (
    ("attention", r"flash|fmha|attention|sdpa|cudnn_generated_fort_native_sdpa"),
    ("gemm", r"gemm|nvjet|cutlass|xmma|cublas|^aten::(mm|addmm|bmm|matmul|linear)$"),
    ("optimizer", r"adam|multi_tensor|foreach"),
    ("embedding", r"embedding|index_put|indexselect|index_select|scatter|radix|sort"),
    ("fused_triton", r"^triton"),
)


def category(name: str) -> str:
    lowered = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, lowered):
            return label
    return "other"


def breakdown(kernels: list[tuple[str, float]], steps: int, step_ms: float, top: int = 8) -> dict:
    """kernels: (name, microseconds) for every kernel (or leaf op) of `steps` profiled steps."""
    per_category: dict[str, float] = {}
    per_name: dict[str, float] = {}
    for name, us in kernels:
        per_category[category(name)] = per_category.get(category(name), 0.0) + us
        per_name[name] = per_name.get(name, 0.0) + us
    busy_ms = sum(per_category.values()) / 1000 / steps
    return {
        "steps": steps,
        "step_ms": round(step_ms, 3),
        "busy_ms": round(busy_ms, 3),                     # summed kernel time per step
        "idle_fraction": round(max(0.0, 1 - busy_ms / step_ms), 4) if step_ms > 0 else None,
        "ms_per_step": {k: round(v / 1000 / steps, 3) for k, v in sorted(per_category.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms": {name[:80]: round(us / 1000 / steps, 3)
                           for name, us in sorted(per_name.items(), key=lambda kv: -kv[1])[:top]},
    }


def profile_steps(step, steps: int, cuda: bool) -> dict:
    """Run `step()` `steps` times under torch.profiler and return `breakdown` of its kernels (CPU: aten ops)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
        step_ms = (time.perf_counter() - start) * 1000 / steps
    if cuda:
        kernels = [(e.name, e.time_range.elapsed_us()) for e in prof.events() if e.device_type == DeviceType.CUDA]
    else:  # self time (without the op's children), so nothing is counted twice
        kernels = [(e.name, e.self_cpu_time_total) for e in prof.events() if e.name.startswith("aten::")]
    return breakdown(kernels, steps, step_ms)
