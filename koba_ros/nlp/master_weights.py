"""AdamW over fp32 master weights for a model that computes in bf16: one fused update per step.

Mixed precision with master weights (Micikevicius et al. 2018, "Mixed Precision Training", §3.1): the model computes
in low precision, while the optimizer keeps an fp32 copy of every weight, because an update lr·Δ is often below
bf16's resolution of the weight and would be lost. The update is AdamW (Loshchilov & Hutter 2019, Algorithm 2):

    θ ← θ·(1 − lr·λ)                                   decoupled weight decay (λ per parameter group)
    m ← β1·m + (1 − β1)·g,    v ← β2·v + (1 − β2)·g²
    θ ← θ − lr · m̂ / (√v̂ + ε),  m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)
    w ← bf16(θ)                                        the weights the model computes with

Why: under autocast the model keeps fp32 weights, so every step casts each weight to bf16 for the forward pass and
each bf16 weight gradient back to fp32, and the residual stream stays fp32; a profile of the GPT-2 bench on an H100
(docs/nlp.md, session 7) put those memory-bound kernels and AdamW at about 12.5 of 35 ms. Here the weights are bf16
views into one flat buffer and the fp32 master, both moments and the rounding back to bf16 are one elementwise pass
over flat tensors (compiled into one kernel on a GPU), reading the bf16 gradients once. Measured there: 1.07x the
tokens/s of the same model under autocast with fused AdamW.
"""
from __future__ import annotations

import torch

from koba_ros.errors import KobaError


def _adamw_update(flat, flat_grad, master, exp_avg, exp_avg_sq, step, lr, beta1: float, beta2: float, eps: float,
                  decay: tuple) -> None:
    g = flat_grad.float()
    step += 1
    for start, stop, weight_decay in decay:  # groups are contiguous slices of the flat tensors
        if weight_decay:
            master[start:stop].mul_(1 - lr * weight_decay)
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    denom = (exp_avg_sq / (1 - beta2 ** step)).sqrt() + eps
    master.sub_(lr * (exp_avg / (1 - beta1 ** step)) / denom)
    flat.copy_(master)


class MasterWeightAdamW:
    """AdamW on an fp32 master copy of the parameters; the model's parameters become `dtype` views into one flat
    buffer. `params`: tensors, or groups [{"params": [...], "weight_decay": λ}, ...] as for torch.optim.AdamW.
    Tied parameters (the same tensor twice) are updated once.

    As torch.optim.AdamW skips a parameter whose grad is None, a step leaves alone (no decay, no momentum) a
    parameter that received no gradient since zero_grad or that was frozen (requires_grad False) after the
    optimizer was built. One difference stays: the bias correction uses the optimizer's step count, where torch
    counts each parameter's own steps, so a parameter skipped for some steps and then given gradients again is
    updated as if it had been stepped every time."""

    STATE_KEYS = ("master", "exp_avg", "exp_avg_sq", "step_count")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                 dtype: torch.dtype = torch.bfloat16, compile: bool = False):
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.params, self.decay, seen = [], [], set()
        for group in groups:
            start = sum(p.numel() for p in self.params)
            for p in group["params"]:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    self.params.append(p)
            stop = sum(p.numel() for p in self.params)
            self.decay.append((start, stop, float(group.get("weight_decay", weight_decay))))
        self.decay = tuple(self.decay)
        if not self.params:
            raise KobaError("master-weight AdamW: no parameters that require gradients")
        self.master = torch.cat([p.detach().reshape(-1).float() for p in self.params])  # exact: before rounding
        self.flat = self.master.to(dtype)
        # The model now computes with views of self.flat, and autograd accumulates its gradients into views of
        # self.flat_grad (in place, since a gradient exists), so the update reads 5 flat tensors: no gathering of
        # ~150 gradients, and a compiled update whose guards check 5 tensors, not 150, on every call.
        self.flat_grad = torch.zeros_like(self.flat)
        offset, self._grad_views = 0, []
        for p in self.params:
            p.data = self.flat[offset:offset + p.numel()].view_as(p)
            self._grad_views.append(self.flat_grad[offset:offset + p.numel()].view_as(p))
            p.grad = self._grad_views[-1]
            offset += p.numel()
        self._grad_ptrs = [v.data_ptr() for v in self._grad_views]
        # Which parameters autograd gave a gradient since zero_grad: the views always exist (never None), and a
        # zero gradient is still a gradient, so only the accumulation itself tells. The hooks hold this list, not
        # the optimizer, so a parameter does not keep a discarded optimizer's buffers alive.
        received = self._received = [False] * len(self.params)
        for i, p in enumerate(self.params):
            p.register_post_accumulate_grad_hook(lambda _, i=i: received.__setitem__(i, True))
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.master), torch.zeros_like(self.master)
        # Tensors, so a new learning rate or step never recompiles the update.
        self.step_count = torch.zeros((), device=self.master.device)
        self.lr = torch.tensor(float(lr), device=self.master.device)
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self._update = torch.compile(_adamw_update, fullgraph=True) if compile else _adamw_update

    def set_lr(self, lr: float) -> None:
        self.lr.fill_(lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zeroes the flat gradient; the gradients stay views of it (`set_to_none` is accepted and ignored)."""
        self.flat_grad.zero_()
        self._received[:] = [False] * len(self.params)
        for p, view, ptr in zip(self.params, self._grad_views, self._grad_ptrs, strict=True):
            if p.grad is None or p.grad.data_ptr() != ptr:  # replaced or set to None from outside: re-attach
                p.grad = view

    @torch.no_grad()
    def step(self) -> None:
        skipped, offset = [], 0
        for i, (p, view, ptr) in enumerate(zip(self.params, self._grad_views, self._grad_ptrs, strict=True)):
            replaced = p.grad is not None and p.grad.data_ptr() != ptr
            if replaced:  # replaced from outside, not accumulated into ours
                view.copy_(p.grad)
            # unmarked by the hook and all zero: no gradient came (one written into p.grad in place, no backward,
            # is not all zero and steps, as torch's would)
            if not p.requires_grad or p.grad is None or not (replaced or self._received[i] or bool(view.any())):
                skipped.append(slice(offset, offset + p.numel()))
            offset += p.numel()
        # The fused update runs over every parameter; the skipped ones (rare) get their state back after it.
        kept = [(part, [t[part].clone() for t in (self.master, self.exp_avg, self.exp_avg_sq)]) for part in skipped]
        self._update(self.flat, self.flat_grad, self.master, self.exp_avg, self.exp_avg_sq, self.step_count,
                     self.lr, *self.betas, self.eps, self.decay)
        for part, saved in kept:
            for t, old in zip((self.master, self.exp_avg, self.exp_avg_sq), saved, strict=True):
                t[part] = old
            self.flat[part] = self.master[part]

    # --- checkpoints: the model's weights are saved from the fp32 master, not from their bf16 rounding ---------
    def full_precision_state(self, model: torch.nn.Module) -> dict:
        """The model's state dict with every optimised parameter at its fp32 master value."""
        offset, master_of = 0, {}
        for p in self.params:
            master_of[id(p)] = self.master[offset:offset + p.numel()].view(p.shape)
            offset += p.numel()
        state = model.state_dict(keep_vars=True)
        return {k: master_of.get(id(v), v).detach().clone() for k, v in state.items()}

    def state_dict(self) -> dict:
        return {"state": {"flat": {k: getattr(self, k).detach().clone() for k in self.STATE_KEYS}},
                "param_groups": [{"kind": "master_weight_adamw", "numel": self.master.numel()}]}

    @staticmethod
    def owns(state: dict) -> bool:
        """Whether an optimizer state (e.g. from a checkpoint) was written by this class."""
        return (state.get("param_groups") or [{}])[0].get("kind") == "master_weight_adamw"

    def load_state_dict(self, state: dict) -> None:
        flat = state.get("state", {}).get("flat", {})
        if not self.owns(state) or set(flat) != set(self.STATE_KEYS) \
                or int(state["param_groups"][0].get("numel", -1)) != self.master.numel():
            raise KobaError("checkpoint: the optimizer state is not this model's master-weight AdamW state "
                            "(saved with another precision or another model)")
        for key in self.STATE_KEYS:
            getattr(self, key).copy_(flat[key])
        self.flat.copy_(self.master)


# --- the same optimizer state in torch.optim.AdamW's per-parameter layout --------------------------------------------
# Under FSDP the recipe is FSDP's own mixed precision (fp32 shards are the master, bf16 all-gathered weights compute,
# torch.optim.AdamW steps the shards), whose checkpoint holds torch's per-parameter layout. These two functions convert
# between that and the flat layout above, so a bf16_master run resumes under either. `layout`: (name, shape) of each
# parameter in the flat tensors' order (MasterWeightAdamW.params).

def flat_to_param_state(state: dict, layout: list[tuple[str, torch.Size]]) -> dict[str, dict]:
    """{name: {"step", "exp_avg", "exp_avg_sq"}} from a MasterWeightAdamW state dict."""
    flat = state["state"]["flat"]
    if sum(shape.numel() for _, shape in layout) != flat["exp_avg"].numel():
        raise KobaError("checkpoint: the master-weight optimizer state does not fit this model's parameters")
    per_param, offset = {}, 0
    for name, shape in layout:
        stop = offset + shape.numel()
        per_param[name] = {"step": flat["step_count"].detach().float().clone(),
                           "exp_avg": flat["exp_avg"][offset:stop].view(shape).clone(),
                           "exp_avg_sq": flat["exp_avg_sq"][offset:stop].view(shape).clone()}
        offset = stop
    return per_param


def param_state_to_flat(per_param: dict[str, dict], layout: list[tuple[str, torch.Size]],
                        master: torch.Tensor) -> dict:
    """A MasterWeightAdamW state dict from torch.optim.AdamW's per-parameter state; `master` is the fp32 weights
    (the checkpoint's model state, which holds them at full precision)."""
    missing = [name for name, _ in layout if set(per_param.get(name, {})) < {"step", "exp_avg", "exp_avg_sq"}]
    if missing:
        raise KobaError(f"checkpoint: the optimizer state has no AdamW moments for {missing[0]} "
                        f"({len(missing)} parameters missing)")
    steps = {float(per_param[name]["step"]) for name, _ in layout}
    if len(steps) != 1:  # one step counter for the flat tensors: parameters stepped unequally cannot be merged
        raise KobaError(f"checkpoint: its parameters were stepped {sorted(steps)} times, not equally")

    def cat(key):
        return torch.cat([per_param[name][key].detach().reshape(-1).float() for name, _ in layout]).to(master.device)

    flat = {"master": master, "exp_avg": cat("exp_avg"), "exp_avg_sq": cat("exp_avg_sq"),
            "step_count": torch.tensor(steps.pop(), device=master.device)}
    return {"state": {"flat": flat}, "param_groups": [{"kind": "master_weight_adamw", "numel": master.numel()}]}
