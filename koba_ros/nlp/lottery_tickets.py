"""Multi-ticket ensembles (Kobayashi, Kiyono, Suzuki & Inui 2022, "Diverse Lottery Tickets Boost Ensemble from a
Single Pretrained Model", BigScience workshop): fine-tune different sparse sub-networks ("winning tickets") of one
pretrained model and average their predictions. Members fine-tuned densely from one pretrained model start from the
same point and end up alike; members that may only use different sub-networks are pushed to different views.

A ticket is found by iterative magnitude pruning with rewinding to the pretrained weights (Frankle & Carbin 2019, as
Chen et al. 2020 apply it to BERT): fine-tune theta_0 (.) m, remove the `rate` of all prunable weights with the
smallest |theta| among those still alive (global over every prunable matrix), rewind the survivors to theta_0 and
repeat until `sparsity` (the paper: 10 % per round up to 30 %). The member is then theta_0 (.) m fine-tuned once
more. Different fine-tuning seeds alone give tickets that share most of their pruned weights, so during the search
each member adds an L1 penalty on its own random selection R_k of the weights (a share `l1_share` of each matrix):

    L_k(theta) = L_task(theta (.) m) + lambda * sum_{j in R_k} |theta_j|

which pulls exactly those weights toward zero, so they are the ones magnitude pruning removes, and different members
prune different weights. The ensemble's prediction is the mean of the members' class probabilities.

The helpers take weights as {name: parameter} so that any model can supply its own prunable set (here:
`prunable_weights`, every weight matrix inside a transformer's blocks; embeddings and the task head stay dense, as in
Chen et al.'s BERT tickets).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

Masks = dict[str, torch.Tensor]


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight matrices inside `model`'s transformer blocks (attention and feed-forward projections), named from
    "blocks." on, so that a transformer and a model wrapping it ("encoder.blocks.0...") name them alike."""
    return {name[name.index("blocks."):]: p for name, p in model.named_parameters()
            if ".blocks." in f".{name}" and p.dim() == 2}


def full_masks(weights: dict[str, torch.Tensor]) -> Masks:
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


def sparsity_of(masks: Masks) -> float:
    """The share of prunable weights that are pruned."""
    return 1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


@torch.no_grad()
def magnitude_masks(weights: dict[str, torch.Tensor], masks: Masks, sparsity: float) -> Masks:
    """Global magnitude pruning: new masks that keep every already-pruned weight pruned and remove the smallest |w|
    among the survivors until `sparsity` of all prunable weights are pruned (ties broken by position)."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity}")
    names = list(weights)
    alive = torch.cat([masks[n].flatten() for n in names])
    target = round(sparsity * alive.numel())
    if target < int((~alive).sum()):
        raise ValueError(f"masks already prune {sparsity_of(masks):.3f} > sparsity {sparsity}")
    scores = torch.cat([weights[n].detach().abs().flatten().float() for n in names])
    scores[~alive] = -1.0  # already pruned: always among the smallest
    keep = torch.ones_like(alive)
    keep[torch.argsort(scores, stable=True)[:target]] = False
    out, start = {}, 0
    for n in names:
        size = masks[n].numel()
        out[n] = keep[start:start + size].view_as(masks[n])
        start += size
    return out


@torch.no_grad()
def apply_masks(weights: dict[str, torch.Tensor], masks: Masks) -> None:
    """Zero the pruned weights in place (after every optimiser step, so they stay pruned)."""
    for name, w in weights.items():
        w.mul_(masks[name])


def random_masks(masks: Masks, sparsity: float, seed: int) -> Masks:
    """A random sub-network with `sparsity` of the prunable weights pruned (the control for a ticket's search):
    global magnitude pruning of uniform random scores. Salted, so that it draws other numbers than
    random_selections(seed): a control arm and a ticket search given the same member seed stay independent."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + 1) % 2**64)  # torch wraps seeds there; big ones overflowed
    return magnitude_masks({name: torch.rand(m.shape, generator=g) for name, m in masks.items()}, masks, sparsity)


def random_selections(weights: dict[str, torch.Tensor], share: float, seed: int) -> Masks:
    """R_k: a random `share` of each weight matrix, the weights member k's L1 penalty pulls toward zero."""
    g = torch.Generator().manual_seed(seed % 2**64)
    return {name: torch.rand(w.shape, generator=g) < share for name, w in weights.items()}


def random_l1(weights: dict[str, torch.Tensor], selections: Masks) -> torch.Tensor:
    """sum_{j in R_k} |theta_j| (the module docstring's diversity term, before its factor lambda)."""
    return sum((w * selections[name]).abs().sum() for name, w in weights.items())


FineTune = Callable[[Masks, Callable[[nn.Module], torch.Tensor] | None, int], nn.Module]


def find_ticket(fine_tune: FineTune, masks: Masks, sparsity: float = 0.3, rate: float = 0.1, l1: float = 0.0,
                l1_share: float = 0.5, seed: int = 0) -> Masks:
    """Iterative magnitude pruning with rewinding, the module docstring's search. fine_tune(masks, penalty, seed)
    must fine-tune a fresh copy of the pretrained model with its prunable weights kept at theta_0 (.) masks, adding
    penalty(model) to its loss when given, and return it; `masks` names the prunable weights (all True: dense)."""
    rounds = round(sparsity / rate)
    if rounds < 1 or abs(rounds * rate - sparsity) > 1e-9:
        raise ValueError(f"sparsity {sparsity} is not a whole number of rounds of {rate}")
    selections = random_selections(masks, l1_share, seed)  # the masks have the prunable weights' names and shapes

    def penalty(model):
        return l1 * random_l1(prunable_weights(model), selections)

    for r in range(1, rounds + 1):
        model = fine_tune(masks, penalty if l1 > 0 else None, seed + 1000 * r)
        masks = magnitude_masks(prunable_weights(model), masks, r * rate)
    return masks


@torch.no_grad()
def ensemble_probabilities(models: list[nn.Module], inputs: torch.Tensor) -> torch.Tensor:
    """The mean of the members' softmax outputs [N, classes]."""
    return torch.stack([F.softmax(m(inputs), dim=-1) for m in models]).mean(0)
