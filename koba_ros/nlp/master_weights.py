"""AdamW over fp32 master weights for a model whose parameters are bf16: one fused update per step.

Mixed precision with master weights (Micikevicius et al. 2018, "Mixed Precision Training", §3.1): the model computes
in low precision, while the optimizer keeps an fp32 copy of every weight, because an update lr·Δ is often below
bf16's resolution of the weight and would be lost. The update is AdamW (Loshchilov & Hutter 2019, Algorithm 2):

    θ ← θ·(1 − lr·λ)                                   decoupled weight decay
    m ← β1·m + (1 − β1)·g,    v ← β2·v + (1 − β2)·g²
    θ ← θ − lr · m̂ / (√v̂ + ε),  m̂ = m / (1 − β1^t),  v̂ = v / (1 − β2^t)
    w ← bf16(θ)                                        the weights the model computes with

Why: under autocast the model keeps fp32 weights, so every step casts each weight to bf16 for the forward pass and
each bf16 weight gradient back to fp32, and the residual stream stays fp32; a profile of the GPT-2 bench on an H100
(docs/nlp.md, session 7) put those memory-bound kernels and AdamW at about 12.5 of 35 ms. Here the weights are bf16
views into one flat buffer and the fp32 master, both moments and the rounding back to bf16 are one elementwise pass
over flat tensors (compiled into one kernel on a GPU), reading the bf16 gradients once.
"""
from __future__ import annotations

import torch


def _adamw_update(flat, grads, master, exp_avg, exp_avg_sq, step, lr, beta1: float, beta2: float, eps: float,
                  weight_decay: float) -> None:
    g = torch.cat([x.reshape(-1) for x in grads]).float()
    step += 1
    master.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    denom = (exp_avg_sq / (1 - beta2 ** step)).sqrt() + eps
    master.sub_(lr * (exp_avg / (1 - beta1 ** step)) / denom)
    flat.copy_(master)


class MasterWeightAdamW:
    """AdamW on an fp32 master copy of `params` (any float dtype; bf16 is the point). The parameters become views
    into one flat buffer of their dtype; tied parameters (the same tensor twice) are updated once."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                 compile: bool = False):
        self.params = list(dict.fromkeys(p for p in params if p.requires_grad))  # unique, in order
        if not self.params or len({p.dtype for p in self.params}) != 1:
            raise ValueError("MasterWeightAdamW: needs parameters that require gradients, all of one dtype")
        self.master = torch.cat([p.detach().reshape(-1).float() for p in self.params])
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        offset = 0
        for p in self.params:  # the model now computes with views of self.flat
            p.data = self.flat[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.master), torch.zeros_like(self.master)
        # Tensors, so a new learning rate or step never recompiles the update.
        self.step_count = torch.zeros((), device=self.master.device)
        self.lr = torch.tensor(float(lr), device=self.master.device)
        self.betas, self.eps, self.weight_decay = (float(betas[0]), float(betas[1])), float(eps), float(weight_decay)
        self._update = torch.compile(_adamw_update, fullgraph=True) if compile else _adamw_update

    def set_lr(self, lr: float) -> None:
        self.lr.fill_(lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self._update(self.flat, grads, self.master, self.exp_avg, self.exp_avg_sq, self.step_count, self.lr,
                     *self.betas, self.eps, self.weight_decay)
