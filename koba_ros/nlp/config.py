"""TransformerConfig: one config for the decoder-only LM and the text encoder, checked up front."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from koba_ros.errors import KobaError


def check_types(cls, data: dict, what: str) -> dict:
    """`data` for dataclass `cls`, each value checked against its field's type, so a config file's mistake is one
    line, not a TypeError later. A float written `3e-4` is a string to YAML 1.1 (PyYAML wants `3.0e-4`); it and any
    other number in a string become a float."""
    types = {f.name: f.type for f in fields(cls)}
    out = dict(data)
    for key, value in data.items():
        kind = types.get(key)
        if kind == "float":
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    pass
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise KobaError(f"{what}: {key} must be a number, got {value!r}")
            try:
                out[key] = float(value)
            except OverflowError:  # an integer past a float's range (10**400): one line, as a float's inf is
                raise KobaError(f"{what}: {key} must be a number within a float's range, got an integer of "
                                f"{value.bit_length()} bits") from None
        elif kind in ("int", "int | None"):
            if not (value is None and kind == "int | None") and (isinstance(value, bool) or not isinstance(value, int)):
                raise KobaError(f"{what}: {key} must be an integer, got {value!r}")
        elif kind == "bool" and not isinstance(value, bool):
            raise KobaError(f"{what}: {key} must be true or false, got {value!r}")
        elif kind == "bool | None" and value is not None and not isinstance(value, bool):
            raise KobaError(f"{what}: {key} must be true, false or null, got {value!r}")
        elif kind == "str" and not isinstance(value, str):
            raise KobaError(f"{what}: {key} must be a string, got {value!r}")
    return out


NORMS = ("pre", "post", "b2t", "sandwich")
POSITIONS = ("learned", "sinusoidal", "shape", "rope", "none")
ROPE_SCALINGS = ("none", "llama3", "linear", "yarn", "longrope")
HF_FAMILIES = ("", "phi3")
EMBEDDINGS = ("table", "alone", "factorized")
INITS = ("gpt2", "small", "xavier")
POOLS = ("mean", "first", "last")
NORM_TYPES = ("layernorm", "rmsnorm")
FFNS = ("gelu", "gelu_erf", "swiglu", "geglu")
# The positions that take shape_max_shift and shape_inference_shift: SHAPE's, and sinusoidal ones (SHAPE's module
# with no shift), where they are still ignored: test_nlp_position_shift builds its sinusoidal control with SHAPE's K.
SHAPE_POSITIONS = ("shape", "sinusoidal")


@dataclass
class TransformerConfig:
    vocab_size: int = 259            # ByteTokenizer: 256 bytes + pad, bos, eos
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 0                  # each attention head's width; 0 -> d_model / n_heads. Wider (Qwen3, Gemma:
    #                                  128 or 256 whatever the width) projects q, k, v to n_heads * d_head and back
    d_ff: int = 0                    # 0 -> 4 * d_model
    max_len: int = 256
    norm: str = "pre"                # pre | post | b2t (Takase et al. 2022) | sandwich (Pre-LN plus a norm on each
    #                                  sub-layer's output before the residual add: Ding et al. 2021; Gemma 2 and 3)
    norm_type: str = "layernorm"     # layernorm | rmsnorm (Zhang & Sennrich 2019): every norm of the model
    norm_eps: float = 1e-5           # every norm's epsilon (GPT-2 and most Llamas 1e-5, Llama 1 and others 1e-6)
    ffn: str = "gelu"                # gelu: proj(GELU(fc x)), GELU's tanh form (GPT-2) | gelu_erf: its exact form
    #                                  (BERT, GPT-NeoX) | swiglu (Shazeer 2020): proj(SiLU(x W) * (x V))
    #                                  | geglu (Shazeer 2020; Gemma): proj(GELU(x W) * (x V))
    n_kv_heads: int = 0              # grouped-query attention (Ainslie et al. 2023): heads of keys and values, each
    #                                  shared by n_heads / n_kv_heads query heads; 0 -> n_heads (plain multi-head)
    positions: str = "learned"       # learned | sinusoidal | shape (Kiyono et al. 2021) | rope | none
    rope_theta: float = 10000.0      # RoPE's base: theta_i = rope_theta^(-2i/d_head) (Su et al. 10000; SmolLM2 1e5,
    #                                  Llama 3 5e5: kept so an imported model's positions are its own)
    rope_scaling: str = "none"       # none | llama3: Llama 3.1's RoPE frequency scaling (positions.llama3_inv_freq)
    #                                  | linear: position interpolation (Chen et al. 2023): every frequency / factor
    #                                  | yarn: YaRN (Peng et al. 2023; positions.yarn_inv_freq): long wavelengths /
    #                                  factor, short ones kept, and attention sharpened by a temperature
    #                                  | longrope: LongRoPE (Ding et al. 2024; Phi-3; positions.longrope_inv_freq):
    #                                  each pair's frequency / its own factor, from the short or the long list as
    #                                  the sequence is within rope_original_max_len or longer; cos, sin scaled
    rope_factor: float = 8.0         # llama3, yarn: long wavelengths' frequencies divided by this; linear: all;
    #                                  longrope: s of its attention scale sqrt(1 + ln s / ln rope_original_max_len)
    rope_low_freq_factor: float = 1.0   # llama3: wavelengths above original_max_len / this are scaled fully
    rope_high_freq_factor: float = 4.0  # llama3: wavelengths below original_max_len / this are kept
    rope_original_max_len: int = 8192   # llama3, yarn, longrope: the context length the model was first trained at
    rope_beta_fast: float = 32.0     # yarn: pairs turning more than this many times in original_max_len are kept
    rope_beta_slow: float = 1.0      # yarn: pairs turning fewer times than this are divided by rope_factor
    rope_attention_factor: float = 0.0  # yarn, longrope: cos and sin times this, q·k times its square; 0 -> yarn's
    #                                     0.1 ln(factor) + 1, longrope's sqrt(1 + ln(factor) / ln(original_max_len))
    rope_truncate: bool = True       # yarn: the ramp's ends rounded outwards to whole pairs (transformers' truncate)
    rope_short_factor: list[float] | None = None  # longrope: one factor per rotated pair (rope_dim / 2), for
    #                                  sequences of up to rope_original_max_len tokens
    rope_long_factor: list[float] | None = None   # longrope: the same for longer sequences (a cached sequence
    #                                  growing past that length runs again whole, once: kv_cache.KVCache.restart)
    rope_local_theta: float = 0.0    # > 0: the sliding-window layers rotate with this base and no scaling, the
    #                                  others with rope_theta and rope_scaling (Gemma 3: 10000 and 1e6)
    shape_max_shift: int = 100       # SHAPE: k ~ U[0, K) in training, k = K at inference
    shape_inference_shift: int | None = None  # SHAPE: the fixed inference offset (None -> K); 0 keeps inputs longer
    #                                           than the training ones inside the trained positions (docs/nlp.md)
    embedding: str = "table"         # table | alone (Takase & Kobayashi 2020) | factorized (rank-r table + projection)
    embed_rank: int = 16             # factorized: the table's width
    alone_dim: int = 0               # ALONE: length of the shared vector o and filters (0 -> d_model)
    alone_hidden: int = 0            # ALONE: FFN hidden width (0 -> 2 * d_model)
    alone_codebooks: int = 8         # M
    alone_codes: int = 64            # K codes per codebook
    alone_p: float = 0.5             # each filter element is 0 with probability p
    init: str = "gpt2"               # gpt2: N(0, 0.02) | small: N(0, 2/(5d)), 1/sqrt(2N) outputs (Spike No More)
    #                                  | xavier: fairseq's Transformer (Xavier-uniform linears, N(0, 1/d) embeddings)
    embed_scale: bool = False        # multiply embeddings by sqrt(d) (Spike No More fix 1)
    embed_norm: bool = False         # LayerNorm on embeddings (Spike No More fix 2)
    dropout: float = 0.0
    tie_embeddings: bool = False
    head_bias: bool = False          # the output head adds a bias per vocabulary id (Phi-1 and Phi-2)
    bias: bool = True
    qkv_bias: bool | None = None     # the q/k/v projection's bias; None: as `bias` (Qwen2: true with bias false)
    attention_window: int = 0        # > 0: sliding-window attention (Beltagy et al. 2020 "Longformer" §3.1; Mistral
    #                                  7B): a token attends to the last W tokens, itself included (the encoder: to
    #                                  tokens fewer than W positions away on either side); 0: the whole context
    parallel_residual: bool = False  # Pre-LN with attention and FFN side by side: y = x + Attn(LN1(x)) + FFN(LN2(x))
    #                                  (GPT-NeoX and Pythia; PaLM's "parallel layers"; GPT-J's: parallel_shared_norm)
    parallel_shared_norm: bool = False  # parallel_residual with one norm for both: y = x + Attn(LN(x)) + FFN(LN(x))
    #                                  (GPT-J, Phi-1 and Phi-2); the layers have no ln2
    rotary_dim: int = 0              # RoPE rotates the first this many components of each head; 0: all of them
    #                                  (GPT-NeoX and Pythia: a quarter)
    sliding_layers: list[int] | None = None  # the layers whose attention slides over attention_window tokens;
    #                                  None: all of them (Gemma 2: every other layer; Gemma 3: five in six)
    attn_scale_dim: int = 0          # attention logits are q·k / sqrt(this); 0 -> head_dim (Gemma 2's
    #                                  query_pre_attn_scalar)
    attn_softcap: float = 0.0        # > 0: attention logits soft-capped to cap * tanh(logit / cap) (Gemma 2)
    logit_softcap: float = 0.0       # > 0: output logits soft-capped the same way (Gemma 2: 30)
    qk_norm: bool = False            # normalise each head's queries and keys before attention (QK-norm, Dehghani et
    #                                  al. 2023; Qwen3: RMSNorm over each head): norm_type, one gain per head dimension
    hf_family: str = ""              # the transformers family `koba lm export` writes where the shape alone would
    #                                  say another: "" (the shape's own) | phi3 (a Llama shape, rotary_dim allowed,
    #                                  as Phi3ForCausalLM with fused qkv and gate_up tensors); computes nothing
    pool: str = "mean"               # encoder sentence vector: mean over non-pad tokens | first | last
    pad_id: int = 256
    loss_chunk: int = 0              # LM loss: 0 = head + F.cross_entropy; N > 0 = head and loss N token rows at
    #                                  a time, never materialising all logits (chunked_cross_entropy.py)
    turnover_p: float = 0.0          # > 0: turn-over dropout on every FFN's hidden units, one mask per training
    #                                  document (turnover_dropout.py; what `koba lm influence --checkpoint` reads)
    turnover_seed: int = 0           # which masks the documents get: runs with other seeds are independent
    #                                  estimates that `koba lm influence` averages (several --checkpoint)

    def __post_init__(self):
        self.validate()

    @property
    def ff_dim(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d_model // self.n_heads

    @property
    def attn_dim(self) -> int:
        """The width of all query heads together: what attn.out maps back to d_model."""
        return self.n_heads * self.head_dim

    @property
    def rope_dim(self) -> int:
        """How many components of each head RoPE rotates."""
        return self.rotary_dim or self.head_dim

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    def validate(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise KobaError(f"config: {name} must be a positive integer, got {value!r}")
        if self.d_ff < 0:
            raise KobaError(f"config: d_ff must be >= 0, got {self.d_ff}")
        if not isinstance(self.d_head, int) or isinstance(self.d_head, bool) or self.d_head < 0:
            raise KobaError(f"config: d_head must be 0 (d_model / n_heads) or a positive integer, got {self.d_head!r}")
        if not isinstance(self.attention_window, int) or isinstance(self.attention_window, bool) \
                or self.attention_window < 0:
            raise KobaError(f"config: attention_window must be 0 (the whole context) or a positive number of tokens, "
                            f"got {self.attention_window!r}")
        self._validate_layer_attention()
        if not isinstance(self.rotary_dim, int) or isinstance(self.rotary_dim, bool) or self.rotary_dim < 0 \
                or self.rotary_dim % 2 or self.rotary_dim > self.head_dim:
            raise KobaError(f"config: rotary_dim must be 0 (the whole head) or an even number up to the head width "
                            f"{self.head_dim}, got {self.rotary_dim!r}")
        if self.rotary_dim and self.positions != "rope":
            raise KobaError("config: rotary_dim is how much of each head RoPE rotates; it needs positions: rope")
        if self.parallel_residual and self.norm != "pre":
            raise KobaError(f"config: parallel_residual is a Pre-LN layer's (attention and FFN side by side); "
                            f"norm is {self.norm!r}")
        if self.parallel_shared_norm and not self.parallel_residual:
            raise KobaError("config: parallel_shared_norm gives attention and FFN side by side one norm; it needs "
                            "parallel_residual: true")
        if self.hf_family not in HF_FAMILIES:
            raise KobaError(f"config: hf_family must be one of {HF_FAMILIES}, got {self.hf_family!r}")
        if not self.d_head and self.d_model % self.n_heads:
            raise KobaError(f"config: d_model {self.d_model} is not divisible by n_heads {self.n_heads} "
                            "(or set d_head)")
        for name, allowed in (("norm", NORMS), ("positions", POSITIONS), ("embedding", EMBEDDINGS),
                              ("init", INITS), ("pool", POOLS), ("norm_type", NORM_TYPES), ("ffn", FFNS)):
            if getattr(self, name) not in allowed:
                raise KobaError(f"config: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.n_kv_heads, int) or self.n_kv_heads < 0 or self.n_heads % self.kv_heads:
            raise KobaError(f"config: n_kv_heads must be 0 (= n_heads) or divide n_heads {self.n_heads}, "
                            f"got {self.n_kv_heads!r}")
        if self.positions == "rope" and self.head_dim % 2:
            raise KobaError(f"config: RoPE needs an even head dimension, got {self.head_dim}")
        if not isinstance(self.rope_theta, int | float) or not 1.0 < self.rope_theta < float("inf"):
            raise KobaError(f"config: rope_theta must be a finite number > 1, got {self.rope_theta!r}")
        if self.rope_scaling not in ROPE_SCALINGS:
            raise KobaError(f"config: rope_scaling must be one of {', '.join(ROPE_SCALINGS)}, "
                            f"got {self.rope_scaling!r}")
        if self.rope_scaling != "none" and self.positions != "rope":  # it would scale nothing, silently
            raise KobaError(f"config: rope_scaling {self.rope_scaling} scales RoPE's frequencies; it needs "
                            f"positions: rope, got {self.positions}")
        if self.rope_scaling == "linear" and not 1.0 <= self.rope_factor < float("inf"):
            raise KobaError(f"config: linear RoPE scaling needs a finite rope_factor >= 1, got {self.rope_factor!r}")
        if self.rope_scaling == "llama3" and not (1.0 <= self.rope_factor < float("inf")
                                                  and 0 < self.rope_low_freq_factor < self.rope_high_freq_factor
                                                  < float("inf") and self.rope_original_max_len > 0):
            raise KobaError(f"config: llama3 RoPE scaling needs a finite rope_factor >= 1, 0 < rope_low_freq_factor < "
                            f"rope_high_freq_factor (finite) and rope_original_max_len > 0; got {self.rope_factor!r}, "
                            f"{self.rope_low_freq_factor!r}, {self.rope_high_freq_factor!r}, "
                            f"{self.rope_original_max_len!r}")
        if self.rope_scaling == "yarn" and not (1.0 <= self.rope_factor < float("inf")
                                                and self.rope_original_max_len > 0
                                                and 0 < self.rope_beta_slow < self.rope_beta_fast < float("inf")
                                                and 0 <= self.rope_attention_factor < float("inf")):
            raise KobaError(f"config: yarn RoPE scaling needs a finite rope_factor >= 1, rope_original_max_len > 0, "
                            f"0 < rope_beta_slow < rope_beta_fast (finite) and a finite rope_attention_factor >= 0 "
                            f"(0: 0.1 ln(rope_factor) + 1); got {self.rope_factor!r}, {self.rope_original_max_len!r}, "
                            f"{self.rope_beta_slow!r}, {self.rope_beta_fast!r}, {self.rope_attention_factor!r}")
        if self.rope_scaling == "yarn":
            self._validate_yarn_ramp()
        self._validate_longrope()
        if self.qkv_bias is not None and not isinstance(self.qkv_bias, bool):
            raise KobaError(f"config: qkv_bias must be true, false or null (as bias), got {self.qkv_bias!r}")
        if not isinstance(self.norm_eps, int | float) or not 0.0 < self.norm_eps < 1.0:
            raise KobaError(f"config: norm_eps must be in (0, 1), got {self.norm_eps!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise KobaError(f"config: dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.turnover_seed, int) or self.turnover_seed < 0:
            raise KobaError(f"config: turnover_seed must be a non-negative integer, got {self.turnover_seed!r}")
        if not 0.0 <= self.turnover_p < 1.0:
            raise KobaError(f"config: turnover_p must be 0 (off) or in (0, 1), got {self.turnover_p}")
        if not 0.0 < self.alone_p < 1.0:
            raise KobaError(f"config: alone_p must be in (0, 1), got {self.alone_p}")
        for name, least, note in (("embed_rank", 1, " (the factorized table's width)"), ("alone_codebooks", 1, ""),
                                  ("alone_codes", 2, " (with one code every word gets the same filter)"),
                                  ("alone_dim", 0, " (0: d_model)"), ("alone_hidden", 0, " (0: 2 * d_model)")):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise KobaError(f"config: {name} must be an integer >= {least}{note}, got {value!r}")
        if self.tie_embeddings and self.embedding != "table":
            raise KobaError("config: tie_embeddings needs embedding: table")
        if not 0 <= self.pad_id < self.vocab_size:
            raise KobaError(f"config: pad_id {self.pad_id} outside the vocabulary of {self.vocab_size}")
        if not isinstance(self.loss_chunk, int) or isinstance(self.loss_chunk, bool) or self.loss_chunk < 0:
            raise KobaError(f"config: loss_chunk must be 0 (off) or a positive number of rows, got {self.loss_chunk!r}")
        # SHAPE's offsets: positions are float32 in the sinusoid, where whole numbers above 2**24 are no longer one
        # apart (and torch.randint overflowed above 2**63).
        if not 0 <= self.shape_max_shift <= 2**24:
            raise KobaError(f"config: shape_max_shift must be from 0 to 2**24, got {self.shape_max_shift}")
        if self.shape_inference_shift is not None and (not isinstance(self.shape_inference_shift, int)
                                                       or not 0 <= self.shape_inference_shift <= 2**24):
            raise KobaError(f"config: shape_inference_shift must be an integer from 0 to 2**24 or null, "
                            f"got {self.shape_inference_shift!r}")
        # Learned, RoPE and no positions have no sinusoid to shift: the offsets would be ignored silently. Compared
        # with the defaults, which every saved config holds whatever its positions.
        defaults = {f.name: f.default for f in fields(self)}
        shape_set = [name for name in ("shape_max_shift", "shape_inference_shift")
                     if getattr(self, name) != defaults[name]]
        if shape_set and self.positions not in SHAPE_POSITIONS:
            raise KobaError(f"config: {' and '.join(shape_set)} {'is' if len(shape_set) == 1 else 'are'} SHAPE's "
                            f"position offset{'' if len(shape_set) == 1 else 's'}, which positions: {self.positions} "
                            f"would ignore; use positions: shape")

    def _validate_yarn_ramp(self) -> None:
        """YaRN's ramp runs from the pair turning rope_beta_fast times in rope_original_max_len to the one turning
        rope_beta_slow times; when those ends cross (every pair turns fewer than beta_slow times, or more than
        beta_fast) it runs backwards: e.g. rope_original_max_len 4 with head width 64 keeps every frequency instead
        of dividing every one. Checked with the positions' own arithmetic, so exactly the configs it breaks."""
        from koba_ros.nlp.positions import yarn_ramp_ends  # here: the config itself needs no torch

        first, last = yarn_ramp_ends(self.rope_dim, self.rope_theta, self.rope_original_max_len,
                                     self.rope_beta_fast, self.rope_beta_slow, self.rope_truncate)
        if last < first:
            what = ("short: its fastest pair (wavelength 2π) turns fewer than rope_beta_slow times in it" if last < 0
                    else "long for rope_theta: its slowest pair turns more than rope_beta_fast times in it")
            raise KobaError(f"config: yarn RoPE scaling's frequency ramp is undefined: rope_original_max_len "
                            f"{self.rope_original_max_len} is too {what} (rope_beta_slow {self.rope_beta_slow}, "
                            f"rope_beta_fast {self.rope_beta_fast}, rope_theta {self.rope_theta}, rope_dim "
                            f"{self.rope_dim})")

    def _validate_longrope(self) -> None:
        factors = ("rope_short_factor", "rope_long_factor")
        if self.rope_scaling != "longrope":
            if any(getattr(self, name) is not None for name in factors):
                raise KobaError("config: rope_short_factor and rope_long_factor are LongRoPE's; they need "
                                "rope_scaling: longrope")
            return
        pairs = self.rope_dim // 2
        for name in factors:
            value = getattr(self, name)
            if not (isinstance(value, list) and len(value) == pairs and all(
                    isinstance(f, int | float) and not isinstance(f, bool) and 0 < f < float("inf") for f in value)):
                raise KobaError(f"config: longrope RoPE scaling needs {name}: a list of {pairs} finite numbers > 0 "
                                f"(one per rotated pair of rope_dim {self.rope_dim}), got {value!r}")
        if not (0 < self.rope_factor < float("inf") and self.rope_original_max_len > 1
                and 0 <= self.rope_attention_factor < float("inf")):
            raise KobaError(f"config: longrope RoPE scaling needs a finite rope_factor > 0, rope_original_max_len > 1 "
                            f"and a finite rope_attention_factor >= 0 (0: sqrt(1 + ln(rope_factor) / "
                            f"ln(rope_original_max_len))); got {self.rope_factor!r}, {self.rope_original_max_len!r}, "
                            f"{self.rope_attention_factor!r}")

    def _validate_layer_attention(self) -> None:
        layers = self.sliding_layers
        if layers is not None:
            if not isinstance(layers, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers) \
                    or len(set(layers)) != len(layers) or not all(0 <= i < self.n_layers for i in layers):
                raise KobaError(f"config: sliding_layers must be null or a list of distinct layer numbers 0 .. "
                                f"{self.n_layers - 1}, got {layers!r}")
            if not self.attention_window:
                raise KobaError("config: sliding_layers names layers whose attention slides, which needs "
                                "attention_window > 0")
        if not isinstance(self.attn_scale_dim, int) or isinstance(self.attn_scale_dim, bool) or self.attn_scale_dim < 0:
            raise KobaError(f"config: attn_scale_dim must be 0 (head_dim) or a positive integer, "
                            f"got {self.attn_scale_dim!r}")
        if isinstance(self.rope_local_theta, bool) or not isinstance(self.rope_local_theta, int | float) or not (
                self.rope_local_theta == 0 or 1.0 < self.rope_local_theta < float("inf")):
            raise KobaError(f"config: rope_local_theta must be 0 (as rope_theta) or a finite number > 1, "
                            f"got {self.rope_local_theta!r}")
        if self.rope_local_theta and (self.positions != "rope" or not self.attention_window):
            raise KobaError("config: rope_local_theta is the RoPE base of the sliding-window layers; it needs "
                            "positions: rope and attention_window > 0")
        for name in ("attn_softcap", "logit_softcap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < float("inf"):
                raise KobaError(f"config: {name} must be 0 (off) or a finite positive cap, got {value!r}")

    def layer_window(self, index: int) -> int:
        """Layer `index`'s sliding window: attention_window if it slides (see sliding_layers), else 0 (all)."""
        return self.attention_window if self.sliding_layers is None or index in self.sliding_layers else 0

    @property
    def layer_windows(self) -> list[int]:
        return [self.layer_window(i) for i in range(self.n_layers)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TransformerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise KobaError(f"config: unknown model keys {unknown}")
        try:
            return cls(**check_types(cls, data, "config"))
        except TypeError as exc:
            raise KobaError(f"config: {exc}") from exc
