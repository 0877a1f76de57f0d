"""Linear head + cross-entropy chunk by chunk over the tokens: the [N, V] logits never exist at once.

For one token with hidden state h (d), head W (V x d), logits z = W h and target y, the loss and its gradients are

    loss = logsumexp(z) − z_y
    ∂loss/∂z = softmax(z) − onehot(y)                      the softmax cross-entropy gradient identity
    ∂loss/∂h = Wᵀ (softmax(z) − onehot(y)),   ∂loss/∂W = (softmax(z) − onehot(y)) hᵀ

and the mean over the n_valid tokens whose target is not ignore_index divides each by n_valid. So a chunk of c
tokens can compute its logits, their log-sum-exp, its loss and both gradients, and then drop its [c, V] logits: the
gradient w.r.t. the hidden states is final for those rows, and W's gradient is a sum over chunks. Both are computed
already in the forward pass and saved ([N, d] and [V, d], small next to [N, V]); backward only scales them by the
incoming gradient. A plain head + F.cross_entropy instead keeps an [N, V] tensor from forward to backward (eager:
the fp32 log-softmax; compiled: the bf16 logits) and writes an [N, V] gradient: for the GPT-2 bench (N = 16 x 1024,
V = 50304) 1.6 GB each in bf16.
This is the idea of fused linear cross-entropy kernels (e.g. Liger Kernel, Hsu et al. 2024), written here with torch
GEMMs per chunk rather than a custom kernel.

Precision: the logits GEMM runs in the inputs' dtype (bf16 under autocast or bf16 weights), the log-sum-exp, softmax
and loss in fp32, the gradient is rounded to the inputs' dtype before its two GEMMs (as F.cross_entropy on
`logits.float()` does), and W's gradient is summed over chunks in fp32. fp16 is the exception: its gradients are
computed in forward, before the loss scale exists, and (softmax − onehot) / n rounded to fp16 there would flush the
small ones to zero whatever the scale; so under fp16 the two gradient GEMMs run in fp32, both gradients are kept in
fp32 (twice the saved memory) and backward multiplies by the incoming (scaled) gradient before rounding to fp16.

All targets ignored: F.cross_entropy(reduction="mean") returns NaN (0 / 0) with zero gradients. Here the loss is 0
with the same zero gradients: a batch with nothing to predict carries no signal, and should not look like a diverged
run (the trainer stops on a NaN loss).
"""
from __future__ import annotations

import torch

from koba_ros.errors import KobaError


def _chunk_loss(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int, softcap: float = 0.0):
    """fp32 logits of one chunk (GEMM in the inputs' dtype; soft-capped to softcap * tanh(z / softcap) if softcap
    > 0), their log-sum-exp, the safe target index per row (0 where ignored), the valid-row mask, and the chunk's
    summed loss."""
    logits = (h @ weight.t()).float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    lse = torch.logsumexp(logits, dim=-1)
    valid = targets != ignore_index
    safe_targets = torch.where(valid, targets, 0)
    target_logits = logits.gather(1, safe_targets[:, None]).squeeze(1)
    loss_sum = torch.where(valid, lse - target_logits, 0.0).sum()
    return logits, lse, safe_targets, valid, loss_sum


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """mean cross-entropy(hidden @ weightᵀ, targets); both gradients computed in forward, chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, ignore_index: int, softcap: float):
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n_valid = (targets != ignore_index).sum()
        inv_n = 1.0 / n_valid.clamp(min=1).float()  # all ignored: loss and gradients 0, not 0 / 0
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        # fp16: the loss scale S only arrives in backward, and (softmax - onehot) / n rounded to fp16 before it would
        # flush every gradient under 2^-24 to zero whatever S is. So under fp16 the pieces stay fp32 (GEMMs in fp32)
        # and backward scales them before the one cast. bf16 has fp32's range: nothing flushes, no scale is used.
        piece_dtype = torch.float32 if hidden.dtype == torch.float16 else hidden.dtype
        grad_hidden = torch.empty(hidden.shape, dtype=piece_dtype, device=hidden.device) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        vocab = torch.arange(weight.shape[0], device=weight.device)
        piece_weight = weight.to(piece_dtype) if need_hidden else None  # once, not per chunk ([V, d] under fp16)
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            logits, lse, safe_targets, valid, loss_sum = _chunk_loss(h, weight, t, ignore_index, softcap)
            loss = loss + loss_sum
            # Soft-capped logits c = s tanh(z / s): the gradient w.r.t. the GEMM's z is the one w.r.t. c times
            # dc/dz = 1 - (c / s)^2, taken before the logits are overwritten below.
            slope = 1.0 - (logits / softcap).square() if softcap else None
            # (softmax − onehot) / n_valid on valid rows, 0 on ignored ones; in place: the logits are not needed again.
            # The onehot is a bool comparison, not a scatter: inductor then fuses it all into one kernel that writes
            # only the low-precision gradient (a scatter made it write and re-read an fp32 [chunk, V] buffer first),
            # and eager mode holds 1 byte per logit for it.
            onehot = vocab[None, :] == safe_targets[:, None]
            grad = logits.sub_(lse[:, None]).exp_().add_(onehot, alpha=-1).mul_((valid.float() * inv_n)[:, None])
            grad = (grad if slope is None else grad.mul_(slope)).to(piece_dtype)
            if need_hidden:
                grad_hidden[start:start + chunk] = grad @ piece_weight
            if need_weight and grad.dtype == grad_weight.dtype:
                grad_weight.addmm_(grad.t(), h.to(piece_dtype))  # summed inside the GEMM: no [V, d] temporary
            elif need_weight:
                grad_weight.add_(grad.t() @ h)  # bf16 product, summed in fp32 (torch has no mixed-dtype addmm_)
        ctx.save_for_backward(grad_hidden, None if grad_weight is None else grad_weight.to(piece_dtype))
        ctx.dtypes = hidden.dtype, weight.dtype
        return loss * inv_n

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        # Scaled first, cast after: under fp16 the saved pieces are fp32, so the loss scale reaches them unrounded.
        return (None if grad_hidden is None else (grad_hidden * grad_output).to(hidden_dtype),
                None if grad_weight is None else (grad_weight * grad_output).to(weight_dtype), None, None, None, None)


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                          ignore_index: int = -100, softcap: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of hidden [N, d] @ weight [V, d]ᵀ (soft-capped if softcap > 0, as Gemma 2's final
    logits) against targets [N] (ignore_index skipped), `chunk` rows at a time. Under autocast both inputs are
    cast to its dtype first, as F.linear would be. Targets must lie in [0, V) or be ignore_index (not checked: a
    check would wait for the device every step)."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1] \
            or targets.shape != hidden.shape[:1]:
        raise KobaError(f"chunked cross-entropy: needs hidden [N, d], weight [V, d], targets [N]; got "
                        f"{tuple(hidden.shape)}, {tuple(weight.shape)}, {tuple(targets.shape)}")
    if not isinstance(chunk, int) or chunk <= 0:
        raise KobaError(f"chunked cross-entropy: chunk must be a positive integer, got {chunk!r}")
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    with torch.autocast(device_type, enabled=False):
        if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
            return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk, ignore_index, softcap)
        # No gradient wanted (evaluation): the loss alone, still one chunk of logits at a time.
        n_valid = (targets != ignore_index).sum().clamp(min=1)
        total = sum(_chunk_loss(hidden[s:s + chunk], weight, targets[s:s + chunk], ignore_index, softcap)[-1]
                    for s in range(0, hidden.shape[0], chunk))
        return total / n_valid
