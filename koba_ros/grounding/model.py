"""The learned grounding model, after Hatori et al. (ICRA 2018, arXiv 1710.06280).

Hatori et al. encode the instruction, encode every detected object (CNN features of its crop), and
score each object by how well it matches the instruction; a separate output predicts the destination
box. Here, per instruction with token states h_1..h_T (from either text encoder) and objects o_1..o_N:

    u_t   = BiGRU(W h_t)                                   contextualised tokens
    q_k   = sum_t softmax_t(u_t . a_k) u_t                 k in {target, landmark, relation, destination}
    e_i   = MLP_obj(x_i)                                   x_i: colour, size, box, place in box, appearance
    s_i   = MLP_match([q_target * e_i, e_i])               how well object i fits the description
    l_j   = softmax_j MLP_match'([q_landmark * e_j, e_j])  which object a relation refers to ("the duck")
    s_i  += sum_j l_j MLP_rel([q_relation, pair_ij])       "left of", "next to" (pair_ij: image offsets)
    s_none = MLP_none(q_target)                            the words fit nothing here
    p(target) = softmax([s_1..s_N, s_none] / T_t)          T_t: temperature fitted after training
    p(box)    = softmax(MLP_dest(q_destination) / T_d)     four boxes + "not said"

Trained jointly (text encoder too, when it is trainable) with cross-entropy against the set of objects
the words fit (uniform over them, so an ambiguous instruction is meant to spread its mass), the box, and
the relation's landmark. Temperatures are fitted on held-out scenes (Guo et al. 2017 temperature scaling)
so the dialogue can ask when the top probability is low.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from koba_ros.grounding.features import BASE_DIM, PAIR_DIM

QUERIES = ("target", "landmark", "relation", "destination")
DEST_CLASSES = 5  # four boxes + not said
REL_HIDDEN = 32


def mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))


class GroundingNet(nn.Module):
    def __init__(self, text_dim: int, appearance_dim: int, hidden: int = 96, text_encoder: nn.Module | None = None):
        super().__init__()
        self.text_encoder = text_encoder          # trainable encoder (byte transformer) or None (frozen MiniLM)
        self.text_in = nn.Linear(text_dim, hidden)
        self.gru = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.attn = nn.Parameter(torch.randn(len(QUERIES), hidden) * 0.1)
        self.obj = mlp(BASE_DIM + appearance_dim, hidden, hidden)
        self.match = mlp(2 * hidden, hidden, 1)
        self.landmark = mlp(2 * hidden, hidden, 1)
        # rel MLP over [q_relation, pair_ij], its first layer split so the text part is computed once per batch
        self.rel_text = nn.Linear(hidden, REL_HIDDEN)
        self.rel_pair = nn.Linear(PAIR_DIM, REL_HIDDEN, bias=False)
        self.rel_out = nn.Linear(REL_HIDDEN, 1)
        self.none = mlp(hidden, hidden, 1)
        self.dest = mlp(hidden, hidden, DEST_CLASSES)
        self.register_buffer("obj_mean", torch.zeros(BASE_DIM + appearance_dim))
        self.register_buffer("obj_std", torch.ones(BASE_DIM + appearance_dim))

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, len(QUERIES), H] attention-pooled query vectors."""
        u, _ = self.gru(self.text_in(states))
        scores = torch.einsum("bth,kh->bkt", u, self.attn) / u.shape[-1] ** 0.5
        scores = scores.masked_fill(~mask[:, None, :], -1e9)
        return torch.einsum("bkt,bth->bkh", scores.softmax(-1), u)

    def forward(self, states, mask, objects, pairs, obj_mask):
        """Logits: target [B, N+1] (last = none of them), destination [B, 5], landmark [B, N]."""
        q = self.pool(states, mask)
        qt, ql, qr, qd = q.unbind(1)
        e = self.obj((objects - self.obj_mean) / self.obj_std)                     # [B, N, H]
        s = self.match(torch.cat([qt[:, None] * e, e], -1)).squeeze(-1)         # [B, N]
        lm = self.landmark(torch.cat([ql[:, None] * e, e], -1)).squeeze(-1)
        lm = lm.masked_fill(~obj_mask, -1e9)
        rel_hidden = torch.relu(self.rel_text(qr)[:, None, None] + self.rel_pair(pairs))
        rel = self.rel_out(rel_hidden).squeeze(-1)                               # [B, N(i), N(j)]
        s = s + torch.einsum("bij,bj->bi", rel, lm.softmax(-1))
        s = s.masked_fill(~obj_mask, -1e9)
        target = torch.cat([s, self.none(qt)], -1)
        return target, self.dest(qd), lm


def soft_cross_entropy(logits: torch.Tensor, target_dist: torch.Tensor) -> torch.Tensor:
    return -(target_dist * F.log_softmax(logits, -1)).sum(-1).mean()
