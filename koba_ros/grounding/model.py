"""The learned grounding model, after Hatori et al. (ICRA 2018, arXiv 1710.06280).

Hatori et al. encode the instruction, encode every detected object (CNN features of its crop), and
score each object by how well it matches the instruction; a separate output predicts the destination
box. Here, per instruction with token states h_1..h_T (from either text encoder) and objects o_1..o_N:

    u_t   = BiGRU(W h_t)                                   contextualised tokens
    q_k   = sum_t softmax_t(u_t . a_k) u_t                 k in {target, landmark, relation, destination}
    e_i   = MLP_obj(x_i)                                   x_i: colour, size, box, place in box, appearance
                                                           (+ c_i, CNN features of the object's crop, with the crop
                                                           encoder: crop_encoder.py)
    s_i   = MLP_match([q_target * e_i, e_i])               how well object i fits the description
    l_j   = softmax_j MLP_match'([q_landmark * e_j, e_j])  which object a relation refers to ("the duck")
    s_i  += sum_j l_j MLP_rel([q_relation, pair_ij])       "left of", "next to" (pair_ij: image offsets)
    s_none = MLP_none(q_target)                            the words fit nothing here
           (+ MLP_scene(...) with the scene-aware none, `SceneNone`: the words against the best candidates)
    p(target) = softmax([s_1..s_N, s_none] / T_t)          T_t: temperature fitted after training
    p(box)    = softmax(MLP_dest(q_destination) / T_d)     four boxes + "not said"

With the catalog head (`CatalogMatch`, default for new models) the object words are also matched against
the catalog's own texts, so words listed in sim/objects/catalog.yaml but never seen in training are read:
s_i += g_t kappa_i (target) and the landmark logits get g_l kappa_j in the same way.

Trained jointly (text encoder too, when it is trainable) with cross-entropy against the set of objects
the words fit (uniform over them, so an ambiguous instruction is meant to spread its mass), the box, and
the relation's landmark. Temperatures are fitted on held-out scenes (Guo et al. 2017 temperature scaling)
so the dialogue can ask when the top probability is low.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from koba_ros.grounding.catalog_phrases import CatalogPhrases, catalog_phrases
from koba_ros.grounding.crop_encoder import CROP_DIM, CropEncoder
from koba_ros.grounding.features import BASE_DIM, BOX_COLUMNS, PAIR_DIM
from koba_ros.grounding.instructions import COLOURS  # the catalog's colour words

QUERIES = ("target", "landmark", "relation", "destination")
DEST_CLASSES = 5  # four boxes + not said
REL_HIDDEN = 32


def mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o))


class CatalogMatch(nn.Module):
    """Open-vocabulary object words through the catalog texts (a learned match, not rules).

        r       = sum_t alpha_t h_t                   object phrase: the target (or landmark) query's attention
                                                      alpha over the text encoder's own token states h_t
        r_p     = the same pooling over the tokens of catalog phrase p ("the red can", "the ball you kick")
        sim_p   = exp(s) cos(W r, W r_p)
        m_c     = logsumexp_{p of entry c} sim_p      text -> catalog entry logits
        pi_ic   = softmax_c(V e_i)                    object -> catalog entry, from its visual features alone
        kappa_i = log sum_c pi_ic softmax(m)_c        log p(object i is the kind of thing the words name)

    V is trained with the scene's labels (an auxiliary cross-entropy), m with the entries the words fit; the
    match W is shared by instruction and catalog, so a phrase found verbatim in the catalog matches its entry
    even when training never said it. Which entries: `entry_names` (a byte buffer, saved with the weights).
    """

    def __init__(self, entries: tuple[str, ...], text_dim: int, hidden: int, proj: int = 128):
        super().__init__()
        self.proj = nn.Linear(text_dim, proj)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.classify = nn.Linear(hidden, len(entries))
        self.gain = nn.Parameter(torch.ones(2))      # target, landmark
        self.register_buffer("entry_names", torch.tensor(list(",".join(entries).encode()), dtype=torch.uint8))

    @property
    def entries(self) -> tuple[str, ...]:
        return tuple(bytes(self.entry_names.tolist()).decode().split(","))

    def embed(self, states: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """[B, D] unit vectors of the attention-pooled token states."""
        return F.normalize(self.proj(torch.einsum("bt,btd->bd", attn, states)), dim=-1)

    def entry_logits(self, query: torch.Tensor, phrases: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        """[B, C] from query [B, D] and phrase embeddings [P, D]; member [C, P] says which phrase is whose."""
        sim = self.log_scale.exp() * query @ phrases.T                                  # [B, P]
        return sim[:, None, :].masked_fill(~member[None], -1e9).logsumexp(-1)

    @staticmethod
    def kappa(object_logits: torch.Tensor, text_logits: torch.Tensor) -> torch.Tensor:
        """[B, N] log sum_c pi_ic p_c."""
        return (object_logits.log_softmax(-1) + text_logits.log_softmax(-1)[:, None, :]).logsumexp(-1)


class LocationHead(nn.Module):
    """Where the words say the object is ("the can in the upper left one"), read like the destination:

        q_loc    = sum_t softmax_t(u_t . a_loc) u_t
        p(loc)   = softmax(MLP_loc(q_loc))                 four boxes + not said
        lambda_i = log(p(loc = box_i) + p(loc = not said))  0 when no box is said; low for objects elsewhere

    Trained with the box the generator's location phrase names. Why: the object MLP sees the box one-hot, but
    matching it through q_target * e_i did not carry over to unseen box wordings, while the destination head did.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.attn = nn.Parameter(torch.randn(hidden) * 0.1)
        self.mlp = mlp(hidden, hidden, DEST_CLASSES)
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (u @ self.attn / u.shape[-1] ** 0.5).masked_fill(~mask, -1e9)
        return self.mlp(torch.einsum("bt,bth->bh", scores.softmax(-1), u))

    def log_fit(self, logits: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        """[B, N] lambda from location logits [B, 5] and raw object features (their box one-hot)."""
        p = logits.softmax(-1)
        box = objects[..., BOX_COLUMNS]
        return torch.log((box * p[:, None, :4]).sum(-1) + p[:, None, 4] + 1e-6)




class ColourHead(nn.Module):
    """Which colour the words give the object ("the green duck"), and how well each object has it:

        q_col    = sum_t softmax_t(u_t . a_col) u_t
        p(col)   = softmax(MLP_col(q_col))                 the catalog colours + not said
        rho_ic   = softmax_c(R e_i)                        object i's colour, from its visual features
        gamma_i  = log(sum_c p(col = c) rho_ic + p(col = not said))

    Trained with the colour word the generator put in the object phrase and the scene's catalog colours. Why: the
    catalog match reads the noun ("duck") so strongly that a wrong colour hardly lowers the object's score; gamma
    is a separate, explicit colour agreement that the object score and the scene-aware none both read.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.attn = nn.Parameter(torch.randn(hidden) * 0.1)
        self.mlp = mlp(hidden, hidden, len(COLOURS) + 1)
        self.classify = nn.Linear(hidden, len(COLOURS))
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (u @ self.attn / u.shape[-1] ** 0.5).masked_fill(~mask, -1e9)
        return self.mlp(torch.einsum("bt,bth->bh", scores.softmax(-1), u))

    @staticmethod
    def log_fit(words: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        """[B, N] gamma from word colour logits [B, 8] and object colour logits [B, N, 7]."""
        p = words.softmax(-1)
        return torch.log((objects.softmax(-1) * p[:, None, :-1]).sum(-1) + p[:, None, -1] + 1e-6)


class SceneNone(nn.Module):
    """"None of them" read against the scene, not from the words alone (learned, no rules):

        f_i    = [m_i, kappa_i, lambda_i, gamma_i, s_i]   m_i: match MLP of the words with object i's visual
                                                  features; kappa_i: catalog fit; lambda_i: location fit;
                                                  gamma_i: colour fit (ColourHead); s_i: the object's total score
        s_none = MLP_none(q_target) + MLP_scene([f_best, max_i f_i])   best = argmax_i s_i

    Why: with the catalog head, "the green duck" next to a yellow duck has a high kappa (the words say duck) and
    a words-only none logit cannot see that no object is green; here the none score can rise when the best
    candidate fits the noun but not the colour (low m) or no object fits the words at all.
    """

    FEATURES = 5

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.mlp = mlp(2 * self.FEATURES, hidden, 1)

    def forward(self, features: torch.Tensor, scores: torch.Tensor, obj_mask: torch.Tensor) -> torch.Tensor:
        """[B] from per-object features [B, N, 5], total scores [B, N] and the mask of real objects [B, N]."""
        features = features.clamp(-30.0, 30.0)      # padded objects and empty scenes must not blow up the MLP
        best = scores.masked_fill(~obj_mask, -1e9).argmax(-1)
        f_best = features[torch.arange(len(best)), best]
        f_max = features.masked_fill(~obj_mask[..., None], -30.0).amax(1)
        return self.mlp(torch.cat([f_best, f_max], -1)).squeeze(-1)


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
        self.text_dim, self.hidden = text_dim, hidden
        self.catalog: CatalogMatch | None = None
        self.location: LocationHead | None = None
        self.scene_none: SceneNone | None = None
        self.colour: ColourHead | None = None
        self.crop_encoder: CropEncoder | None = None
        self.phrases: CatalogPhrases | None = None
        self._phrase_states = self._phrase_cache = None

    def use_catalog(self, entries: tuple[str, ...]) -> None:
        """Add the catalog head (new models; a checkpoint that has one gets it in load_state_dict)."""
        self.catalog = CatalogMatch(tuple(entries), self.text_dim, self.hidden)

    def use_location(self) -> None:
        self.location = LocationHead(self.hidden)

    def use_scene_none(self) -> None:
        self.scene_none = SceneNone()

    def use_colour(self) -> None:
        self.colour = ColourHead(self.hidden)

    def use_crops(self, encoder: CropEncoder | None = None) -> None:
        """x_i grows by the crop encoder's CROP_DIM floats (a new, wider MLP_obj); the encoder is frozen (pretrained
        by crop_encoder.pretrain; a checkpoint that has one gets it in load_state_dict)."""
        self.crop_encoder = (encoder or CropEncoder()).eval().requires_grad_(False)
        self.crop_encoder.memo.clear()
        width = self.obj[0].in_features + CROP_DIM
        self.obj = mlp(width, self.hidden, self.hidden)
        self.obj_mean, self.obj_std = torch.zeros(width), torch.ones(width)   # buffers, re-registered by assignment

    @property
    def object_dim(self) -> int:
        """Width of x_i: the hand-made features (+ CROP_DIM with the crop encoder)."""
        return self.obj[0].in_features

    def set_catalog(self, phrases: CatalogPhrases, encoder=None) -> None:
        """The catalog texts to read; `encoder` is the frozen text encoder (None: the net's own trainable one)."""
        self.phrases, self._phrase_cache = phrases, None
        self._phrase_states = encoder(list(phrases.texts)) if self.text_encoder is None else None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # The Grounder builds the net before it reads the checkpoint; whether there is a catalog head is in the weights.
        if self.catalog is None and "catalog.entry_names" in state_dict:
            self.use_catalog(tuple(bytes(state_dict["catalog.entry_names"].tolist()).decode().split(",")))
        if self.location is None and "location.attn" in state_dict:
            self.use_location()
        if self.scene_none is None and "scene_none.mlp.0.weight" in state_dict:
            self.use_scene_none()
        if self.colour is None and "colour.attn" in state_dict:
            self.use_colour()
        if self.crop_encoder is None and "crop_encoder.conv.0.0.weight" in state_dict:
            self.use_crops()
        if self.crop_encoder is not None:
            self.crop_encoder.memo.clear()   # memoised features of the old weights
        return super().load_state_dict(state_dict, strict, assign)

    def train(self, mode: bool = True):
        self._phrase_cache = None   # phrase embeddings depend on the weights; cached only while evaluating
        super().train(mode)
        if self.crop_encoder is not None:
            self.crop_encoder.eval()   # frozen: its BatchNorm keeps the pretraining statistics
        return self

    def _catalog_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Catalog phrase embeddings [P, D] and membership [C, P]; reads the catalog file the first time."""
        if self.phrases is None:
            from koba_ros.grounding.text_encoders import MiniLMEncoder
            from koba_ros.sim.catalog import load_catalog

            self.set_catalog(catalog_phrases(load_catalog(), self.catalog.entries),
                             MiniLMEncoder() if self.text_encoder is None else None)
        if self._phrase_cache is not None:
            return self._phrase_cache
        states, mask = self._phrase_states or self.text_encoder(list(self.phrases.texts))
        _, attn, _ = self.pool(states, mask)
        z = self.catalog.embed(states, attn[:, 0])
        entry_of = torch.tensor(self.phrases.entry_of)
        member = torch.arange(len(self.phrases.entries))[:, None] == entry_of[None, :]
        if not self.training:
            self._phrase_cache = (z, member)
        return z, member

    def pool(self, states: torch.Tensor, mask: torch.Tensor):
        """[B, len(QUERIES), H] attention-pooled query vectors, the attention [B, len(QUERIES), T], the tokens u."""
        x = self.text_in(states)
        lengths = mask.sum(1)
        if bool((lengths == mask.shape[1]).all()):
            u, _ = self.gru(x)
        else:
            # Packed, so the backward direction starts at each text's own last token: without it a short text
            # read its batch's padding first, and its grounding depended on the other texts in the batch.
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                       enforce_sorted=False)
            u, _ = nn.utils.rnn.pad_packed_sequence(self.gru(packed)[0], batch_first=True,
                                                    total_length=mask.shape[1])
        scores = torch.einsum("bth,kh->bkt", u, self.attn) / u.shape[-1] ** 0.5
        attn = scores.masked_fill(~mask[:, None, :], -1e9).softmax(-1)
        return torch.einsum("bkt,bth->bkh", attn, u), attn, u

    def forward(self, states, mask, objects, pairs, obj_mask, aux: dict | None = None):
        """Logits: target [B, N+1] (last = none of them), destination [B, 5], landmark [B, N].
        With the catalog head and a dict `aux`, it gets "objects" [B, N, C] and "text" [B, C] entry logits;
        with the location head, "location" [B, 5]; with the colour head, "colour_words" [B, 8], "colour_objects"
        [B, N, 7]."""
        q, attn, u = self.pool(states, mask)
        qt, ql, qr, qd = q.unbind(1)
        e = self.obj((objects - self.obj_mean) / self.obj_std)                     # [B, N, H]
        s = self.match(torch.cat([qt[:, None] * e, e], -1)).squeeze(-1)         # [B, N]
        lm = self.landmark(torch.cat([ql[:, None] * e, e], -1)).squeeze(-1)
        m, kappa, fit, gamma = s, torch.zeros_like(s), torch.zeros_like(s), torch.zeros_like(s)  # read by SceneNone
        if self.catalog is not None:
            phrases, member = self._catalog_embeddings()
            obj_entry = self.catalog.classify(e)
            text_t = self.catalog.entry_logits(self.catalog.embed(states, attn[:, 0]), phrases, member)
            text_l = self.catalog.entry_logits(self.catalog.embed(states, attn[:, 1]), phrases, member)
            kappa = self.catalog.kappa(obj_entry, text_t)
            s = s + self.catalog.gain[0] * kappa
            lm = lm + self.catalog.gain[1] * self.catalog.kappa(obj_entry, text_l)
            if aux is not None:
                aux.update(objects=obj_entry, text=text_t)
        if self.location is not None:
            loc = self.location(u, mask)
            fit = self.location.log_fit(loc, objects)
            s = s + self.location.gain * fit
            if aux is not None:
                aux["location"] = loc
        if self.colour is not None:
            words_colour, obj_colour = self.colour(u, mask), self.colour.classify(e)
            gamma = self.colour.log_fit(words_colour, obj_colour)
            s = s + self.colour.gain * gamma
            if aux is not None:
                aux.update(colour_words=words_colour, colour_objects=obj_colour)
        lm = lm.masked_fill(~obj_mask, -1e9)
        rel_hidden = torch.relu(self.rel_text(qr)[:, None, None] + self.rel_pair(pairs))
        rel = self.rel_out(rel_hidden).squeeze(-1)                               # [B, N(i), N(j)]
        s = s + torch.einsum("bij,bj->bi", rel, lm.softmax(-1))
        none = self.none(qt).squeeze(-1)
        if self.scene_none is not None:
            none = none + self.scene_none(torch.stack([m, kappa, fit, gamma, s], -1), s, obj_mask)
        s = s.masked_fill(~obj_mask, -1e9)
        target = torch.cat([s, none[:, None]], -1)
        return target, self.dest(qd), lm


def soft_cross_entropy(logits: torch.Tensor, target_dist: torch.Tensor) -> torch.Tensor:
    return -(target_dist * F.log_softmax(logits, -1)).sum(-1).mean()
