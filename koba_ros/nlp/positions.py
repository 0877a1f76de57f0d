"""Position information: learned absolute, sinusoidal, SHAPE and RoPE."""
from __future__ import annotations

import math

import torch
from torch import nn

from koba_ros.errors import KobaError


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Vaswani et al. 2017, §3.5: PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d)).

    positions: any shape of (possibly shifted) positions; returns [..., dim].
    """
    half = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
    freq = torch.exp(-math.log(10000.0) * half / dim)
    angle = positions.float().unsqueeze(-1) * freq
    pe = torch.zeros(*positions.shape, dim, device=positions.device)
    pe[..., 0::2] = torch.sin(angle)
    pe[..., 1::2] = torch.cos(angle[..., : dim // 2])
    return pe


class LearnedPositions(nn.Module):
    """A trained table of absolute positions (GPT-2); cannot represent positions beyond max_len."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.table = nn.Embedding(max_len, dim)

    def forward(self, batch: int, length: int, device, shift=None, start: int = 0) -> torch.Tensor:
        if start + length > self.table.num_embeddings:
            raise KobaError(f"sequence of {start + length} tokens is longer than the learned positions "
                            f"({self.table.num_embeddings})")
        if shift is not None and bool(torch.as_tensor(shift).ne(0).any()):
            raise KobaError("learned positions are rows of a table and cannot be shifted; a position offset needs "
                            "positions: sinusoidal, shape or rope")
        return self.table(torch.arange(start, start + length, device=device)).unsqueeze(0)


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal absolute positions; with max_shift > 0 this is SHAPE.

    SHAPE (Kiyono et al., EMNLP 2021, §3): every sequence's positions are shifted by a random offset
    k ~ U{0, ..., K-1} during training, PE(p + k); at inference a fixed offset (K, as in the authors' code, unless
    inference_shift says otherwise) is used. The model cannot rely on absolute positions, so it learns
    shift-invariant (relative) behaviour at no extra cost. For inputs longer than any training input, offset K puts
    their tail on positions training never showed; offset 0 keeps them inside (measured in docs/nlp.md).
    """

    def __init__(self, dim: int, max_shift: int = 0, inference_shift: int | None = None):
        super().__init__()
        self.dim, self.max_shift = dim, max_shift
        self.inference_shift = max_shift if inference_shift is None else inference_shift

    def forward(self, batch: int, length: int, device, shift=None, start: int = 0) -> torch.Tensor:
        """Positions start .. start + length - 1 (start > 0: the tokens after `start` cached ones), then shifted."""
        positions = torch.arange(start, start + length, device=device).unsqueeze(0)  # [1, T]
        if shift is not None:  # an explicit offset (tests of shift invariance): int or [B] tensor
            offset = torch.as_tensor(shift, device=device).reshape(-1, 1)
            positions = positions + offset
        elif self.training:
            if self.max_shift:
                positions = positions + torch.randint(0, self.max_shift, (batch, 1), device=device)
        elif self.inference_shift:  # the fixed offset holds even with no random shift in training (K = 0)
            positions = positions + self.inference_shift
        return sinusoid(positions, self.dim)


class RotaryPositions(nn.Module):
    """RoPE (Su et al. 2021, eq. 34): rotate each (even, odd) pair of q and k by angle p * theta_i,
    theta_i = base^(-2i/d_head) (the paper's base 10000; `rope_theta` in the config), so q·k depends only on the
    relative position."""

    def __init__(self, head_dim: int, base: float = 10000.0, llama3: dict | None = None, linear_factor: float = 1.0,
                 yarn: dict | None = None, longrope: dict | None = None):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)
        if llama3 is not None:
            inv_freq = llama3_inv_freq(inv_freq, **llama3)
        # YaRN (yarn_inv_freq): its frequencies, and cos and sin times sqrt(1/t) so that q·k is divided by t.
        self.attention_factor = 1.0
        if yarn is not None:
            yarn = dict(yarn)
            self.attention_factor = yarn_attention_factor(yarn["factor"], yarn.pop("attention_factor", 0.0))
            inv_freq = yarn_inv_freq(head_dim, base, **yarn)
        # LongRoPE (longrope_inv_freq): two sets of frequencies, the long one for sequences longer than the original
        # context (`frequencies`), and cos and sin scaled as YaRN's are.
        long_inv_freq, self.original_max_len = None, 0
        if longrope is not None:
            self.attention_factor = longrope_attention_factor(longrope["factor"], longrope["original_max_len"],
                                                              longrope["attention_factor"])
            inv_freq = longrope_inv_freq(head_dim, base, longrope["short_factor"])
            long_inv_freq = longrope_inv_freq(head_dim, base, longrope["long_factor"])
            self.original_max_len = longrope["original_max_len"]
        self.register_buffer("long_inv_freq", long_inv_freq, persistent=False)
        # Position interpolation (Chen et al. 2023, "Extending Context Window of Large Language Models via Positional
        # Interpolation", §2.3: f'(x, m) = f(x, m L / L')): positions squeezed by the factor, the same as every
        # frequency divided by it, so a context factor times longer stays inside the angles the model was trained on.
        inv_freq = inv_freq / linear_factor
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def frequencies(self, end: float) -> torch.Tensor:
        """The frequencies of a sequence whose last position is end - 1: LongRoPE's long ones once it is longer than
        the original context, else the short ones (transformers picks them by max(position_ids) + 1 at every
        forward, so a whole sequence rotates with one set); every other RoPE's inv_freq whatever the length."""
        if self.long_inv_freq is not None and end > self.original_max_len:
            return self.long_inv_freq
        return self.inv_freq

    @staticmethod
    def offset(shift, device=None) -> float | torch.Tensor:
        """An explicit position offset, as SinusoidalPositions takes it: None or a number -> a float; a [B] tensor
        (one offset per sequence) -> [B, 1]."""
        if shift is None:
            return 0.0
        offset = torch.as_tensor(shift, device=device)
        if offset.numel() == 1:
            return float(offset)
        if offset.dim() != 1:
            raise KobaError(f"RoPE: shift must be a number or a [batch] tensor, got shape {tuple(offset.shape)}")
        return offset.float().reshape(-1, 1)

    @staticmethod
    def furthest(offset: float | torch.Tensor) -> float:
        """The largest offset: a batch rotates with one set of frequencies, chosen by its furthest position (as
        transformers chooses LongRoPE's by max(position_ids) + 1)."""
        return float(offset.max()) if isinstance(offset, torch.Tensor) else offset

    def switches(self, past: int, end: int, shift=None) -> bool:
        """Whether a sequence of `past` tokens growing to `end` rotates with other frequencies than before (LongRoPE
        outgrowing its original context): then nothing computed for the first `past` tokens holds any more."""
        offset = self.furthest(self.offset(shift))
        return self.frequencies(past + offset) is not self.frequencies(end + offset)

    def cos_sin(self, length: int, device, shift=None, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles of positions start .. start + length - 1, shifted: [T, d_head/2], or
        [B, 1, T, d_head/2] for a [B] shift (one offset per sequence, broadcast over the heads)."""
        offset = self.offset(shift, device)
        positions = torch.arange(start, start + length, device=device).float() + offset  # [T] or [B, T]
        inv_freq = self.frequencies(start + length + self.furthest(offset))
        angle = positions.unsqueeze(-1) * inv_freq.to(device)  # [T, d_head/2] or [B, T, d_head/2]
        if angle.dim() == 3:
            angle = angle.unsqueeze(1)
        if self.attention_factor != 1.0:  # YaRN's temperature, LongRoPE's scale: q and k each scaled by it
            return angle.cos() * self.attention_factor, angle.sin() * self.attention_factor
        return angle.cos(), angle.sin()


def llama3_inv_freq(inv_freq: torch.Tensor, factor: float, low_freq_factor: float, high_freq_factor: float,
                    original_max_len: int) -> torch.Tensor:
    """Llama 3.1's RoPE frequency scaling (Meta's Llama 3 release, for contexts beyond the one first trained at,
    `original_max_len` L): a frequency whose wavelength 2π/θ_i is shorter than L / high_freq_factor is kept, one
    longer than L / low_freq_factor is divided by `factor`, and in between the two are mixed with weight
    s = (L / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor) on the kept one."""
    wavelength = 2 * math.pi / inv_freq
    smooth = (original_max_len / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
    mixed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return torch.where(wavelength < original_max_len / high_freq_factor, inv_freq,
                       torch.where(wavelength > original_max_len / low_freq_factor, inv_freq / factor, mixed))


def yarn_inv_freq(head_dim: int, base: float, factor: float, original_max_len: int, beta_fast: float = 32.0,
                  beta_slow: float = 1.0, truncate: bool = True, ramp: str = "index") -> torch.Tensor:
    """YaRN's RoPE frequencies (Peng, Quesnelle, Fan & Shippole 2023, "YaRN: Efficient Context Window Extension of
    Large Language Models", arXiv 2309.00071, §3.2 "NTK-by-parts" interpolation, the frequencies YaRN (§3.4) uses).

    Pair d of a head of |D| = head_dim turns at θ_d = b^(-2d/|D|), with wavelength λ_d = 2π / θ_d; over the context
    the model was trained at, L = original_max_len, it makes r(d) = L / λ_d turns. With a ramp γ, α = beta_slow and
    β = beta_fast (the paper's 1 and 32 for Llama),

        h(θ_d) = (1 - γ(r(d))) θ_d / s + γ(r(d)) θ_d,   s = factor:

    a pair that turns more than β times within L (short wavelength: local order) keeps θ_d (γ = 1), one that turns
    fewer than α times (long wavelength: absolute position) is interpolated, θ_d / s as in Chen et al.'s position
    interpolation (γ = 0), and the pairs in between are mixed. s = 1 leaves every θ_d as it is.

    `ramp` says what γ is in between:
    - "paper": the paper's γ(r) = (r - α) / (β - α), linear in r, clamped to [0, 1].
    - "index" (default; what the authors' code and transformers' `_compute_yarn_parameters` compute, so what an
      imported model needs): the ramp runs linearly over the pair index d, from the d where r(d) = β (γ = 1) to the
      d where r(d) = α (γ = 0). r(d) falls exponentially in d, so this γ is (ln r - ln α) / (ln β - ln α), linear in
      ln r: the same ends, but more of θ_d is kept in between (at r = 2: 0.2 against the paper's 0.03). With
      `truncate` (transformers' default) the two ends are first rounded outwards to whole pairs (floor of the first,
      ceiling of the second), and as in transformers the second is capped at head_dim - 1 and the two are moved
      0.001 apart if they meet.
    """
    index = torch.arange(0, head_dim, 2).float()
    inv_freq = base ** (-index / head_dim)
    if ramp == "paper":
        turns = original_max_len * inv_freq / (2 * math.pi)  # r(d) = L / λ_d
        keep = ((turns - beta_slow) / (beta_fast - beta_slow)).clamp(0.0, 1.0)  # γ(r(d))
    elif ramp == "index":
        first, last = yarn_ramp_ends(head_dim, base, original_max_len, beta_fast, beta_slow, truncate)
        if first == last:
            last += 0.001
        keep = 1 - ((torch.arange(head_dim // 2, dtype=torch.float32) - first) / (last - first)).clamp(0.0, 1.0)
    else:
        raise KobaError(f"yarn_inv_freq: ramp must be index or paper, got {ramp!r}")
    return (1 - keep) * inv_freq / factor + keep * inv_freq


def yarn_ramp_ends(head_dim: int, base: float, original_max_len: int, beta_fast: float = 32.0,
                   beta_slow: float = 1.0, truncate: bool = True) -> tuple[float, float]:
    """The "index" ramp's ends (yarn_inv_freq): the pair d turning beta_fast times within original_max_len and the
    one turning beta_slow times, rounded outwards with `truncate` and capped to 0 .. head_dim - 1 as transformers
    does. They cross (last < first) when every pair turns fewer than beta_slow times (an original context shorter
    than beta_slow turns of the fastest pair, 2π beta_slow, less the rounding) or more than beta_fast times: the
    ramp then runs backwards and keeps the pairs it should divide, or divides those it should keep."""
    def pair_making(turns: float) -> float:  # the d (continuous) with r(d) = turns
        return head_dim * math.log(original_max_len / (turns * 2 * math.pi)) / (2 * math.log(base))

    first, last = pair_making(beta_fast), pair_making(beta_slow)
    if truncate:
        first, last = math.floor(first), math.ceil(last)
    return max(first, 0), min(last, head_dim - 1)


def yarn_attention_factor(factor: float, attention_factor: float = 0.0) -> float:
    """YaRN's attention temperature t (arXiv 2309.00071, §3.4): softmax(q·k / (t sqrt|D|)) with
    sqrt(1/t) = 0.1 ln(s) + 1, fitted by the authors on Llama for s = factor. Scaling both q and k by sqrt(1/t), here by
    scaling RoPE's cos and sin, divides q·k by t and changes nothing else. Returns sqrt(1/t): `attention_factor` when
    it is > 0 (a model's own, transformers' `attention_factor`), else 0.1 ln(s) + 1 (1 for s <= 1, as transformers)."""
    if attention_factor > 0:
        return float(attention_factor)
    return 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0


def longrope_inv_freq(rotary_dim: int, base: float, factors: list[float]) -> torch.Tensor:
    """LongRoPE's frequencies (Ding, Zhang, Zhang, Xu, Shang, Xu, Yang & Yang 2024, "LongRoPE: Extending LLM Context
    Window Beyond 2 Million Tokens", arXiv 2402.13753, §2: RoPE rescaled per dimension). RoPE turns pair i of a head
    of d rotated components at θ_i = b^(-2i/d); LongRoPE turns it at

        θ'_i = 1 / (λ_i b^(2i/d)),

    one rescale factor λ_i per pair, found by the paper's evolutionary search (its non-uniform interpolation; here
    with n̂ = 0, every position interpolated, as Phi-3 does). Phi-3 (Abdin et al. 2024, "Phi-3 Technical Report",
    arXiv 2404.14219) ships two lists, short_factor for sequences within the original context and long_factor
    beyond it (RotaryPositions.frequencies picks one). Computed as transformers' `_compute_longrope_parameters`
    does, b ** (2i/d) in float32, so an imported model's angles are its own to the last bit."""
    exponent = torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim
    return 1.0 / (torch.tensor(factors, dtype=torch.float32) * base ** exponent)


def longrope_attention_factor(factor: float, original_max_len: int, attention_factor: float = 0.0) -> float:
    """LongRoPE's attention scale as Phi-3 applies it to cos and sin (so q·k is multiplied by its square):
    `attention_factor` when > 0, else sqrt(1 + ln(s) / ln(L)) with s = factor (max_position_embeddings /
    original_max_position_embeddings) and L = original_max_len, the original context: the longer the extension, the
    sharper the attention, as YaRN's temperature (yarn_attention_factor). 1 for s <= 1, as transformers. Phi-3 scales
    by it within the original context too: a model fine-tuned that way expects it at every length."""
    if attention_factor > 0:
        return float(attention_factor)
    return math.sqrt(1 + math.log(factor) / math.log(original_max_len)) if factor > 1 else 1.0


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, d_head]; rotates interleaved pairs (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos). With fewer
    angles than pairs (`rotary_dim`: GPT-NeoX's partial rotary) only the first 2 * angles components rotate; the
    rest carry no position (Black et al. 2022, "GPT-NeoX-20B", §2.1.1: rotary on 25 % of each head)."""
    rotated = 2 * cos.shape[-1]
    if rotated < x.shape[-1]:
        return torch.cat([apply_rope(x[..., :rotated], cos, sin), x[..., rotated:]], dim=-1)
    x0, x1 = x[..., 0::2].float(), x[..., 1::2].float()
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)
    return out.type_as(x)


def build_positions(config) -> nn.Module | None:
    if config.positions == "learned":
        return LearnedPositions(config.max_len, config.d_model)
    if config.positions == "sinusoidal":
        return SinusoidalPositions(config.d_model)
    if config.positions == "shape":
        return SinusoidalPositions(config.d_model, max_shift=config.shape_max_shift,
                                   inference_shift=config.shape_inference_shift)
    if config.positions == "rope":
        llama3 = None if config.rope_scaling != "llama3" else dict(
            factor=config.rope_factor, low_freq_factor=config.rope_low_freq_factor,
            high_freq_factor=config.rope_high_freq_factor, original_max_len=config.rope_original_max_len)
        linear = config.rope_factor if config.rope_scaling == "linear" else 1.0
        yarn = None if config.rope_scaling != "yarn" else dict(
            factor=config.rope_factor, original_max_len=config.rope_original_max_len,
            beta_fast=config.rope_beta_fast, beta_slow=config.rope_beta_slow, truncate=config.rope_truncate,
            attention_factor=config.rope_attention_factor)
        longrope = None if config.rope_scaling != "longrope" else dict(
            short_factor=config.rope_short_factor, long_factor=config.rope_long_factor, factor=config.rope_factor,
            original_max_len=config.rope_original_max_len, attention_factor=config.rope_attention_factor)
        return RotaryPositions(config.rope_dim, config.rope_theta, llama3, linear, yarn, longrope)
    return None
