"""LongRoPE (Ding et al. 2024, arXiv 2402.13753; Phi-3): its frequencies and attention scale against the formulas
(positions.longrope_inv_freq, longrope_attention_factor) and against transformers' own over many settings; Phi-3s
with it in and out of transformers with the same logits on both sides of the original context; the KV cache running
the sequence again where it outgrows that context, as transformers' generate does; bad settings refused in one
line."""
import itertools
import math

import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.positions import build_positions, longrope_attention_factor, longrope_inv_freq
from koba_ros.nlp.sampling import generate
from test.nlp_hf_cli import through_import_and_export
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

LLAMA = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False)


def factors(pairs: int, seed: int, low: float, high: float) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand(pairs, generator=g)).tolist()


def test_pair_i_turns_at_theta_i_over_lambda_i_and_the_scale_is_sqrt_1_plus_ln_s_over_ln_l():
    """θ'_i = θ_i / λ_i with θ_i = b^(-2i/d); cos and sin times sqrt(1 + ln s / ln L) (1 for s <= 1, a model's own
    attention_factor where it has one); the short list up to L positions, the long one beyond."""
    d, base, lam = 16, 10000.0, [1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    torch.testing.assert_close(longrope_inv_freq(d, base, lam).double(), theta / torch.tensor(lam, dtype=torch.float64),
                               rtol=1e-6, atol=0)
    assert longrope_attention_factor(32.0, 4096) == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    assert longrope_attention_factor(1.0, 4096) == longrope_attention_factor(0.5, 4096) == 1.0
    assert longrope_attention_factor(32.0, 4096, 1.19) == 1.19
    short, long = [1.0] * 8, lam
    rope = build_positions(TransformerConfig(d_model=32, n_heads=2, max_len=64, rope_scaling="longrope",
                                             rope_factor=4.0, rope_original_max_len=16, rope_short_factor=short,
                                             rope_long_factor=long, **LLAMA))
    scale = math.sqrt(1 + math.log(4) / math.log(16))
    for length, used in ((16, short), (17, long)):
        angle = torch.outer(torch.arange(length).float(), longrope_inv_freq(d, base, used))
        cos, sin = rope.cos_sin(length, "cpu")
        torch.testing.assert_close(cos, angle.cos() * scale, rtol=0, atol=1e-6)
        torch.testing.assert_close(sin, angle.sin() * scale, rtol=0, atol=1e-6)
    cos, _ = rope.cos_sin(1, "cpu", start=16)  # one token after 16 cached: a sequence of 17, the long list
    torch.testing.assert_close(cos[0], (16 * longrope_inv_freq(d, base, long)).cos() * scale, rtol=0, atol=1e-6)


SETTINGS = list(itertools.product((8, 16, 64, 96, 128), (1.0, 0.5, 0.75), (1e4, 5e5), (16, 4096), (1, 4, 32),
                                  (None, 8.0), (None, 1.2)))


def test_frequencies_scale_and_the_short_long_choice_match_transformers_over_many_settings():
    """transformers' `_compute_longrope_parameters` (its short and long frequencies, its attention factor) and its
    Phi-3 rotary embedding's choice by max(position_ids) + 1, against ours over 720 settings: head widths, partial
    rotation, bases, original contexts, extensions, factor and attention_factor given or derived."""
    from transformers import Phi3Config
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding

    compute = ROPE_INIT_FUNCTIONS["longrope"]
    assert len(SETTINGS) == 720
    for n, (head, partial, base, original, s, factor, attention) in enumerate(SETTINGS):
        rotary = int(head * partial)
        short, long = factors(rotary // 2, n, 0.9, 1.5), factors(rotary // 2, n + 1000, 1.0, 40.0)
        rope = {"rope_type": "longrope", "rope_theta": base, "short_factor": short, "long_factor": long,
                "partial_rotary_factor": partial, **({"factor": factor} if factor else {}),
                **({"attention_factor": attention} if attention else {})}
        theirs = Phi3Config(hidden_size=2 * head, num_attention_heads=2, max_position_embeddings=original * s,
                            original_max_position_embeddings=original, rope_parameters=rope, num_hidden_layers=1,
                            vocab_size=8, intermediate_size=8)
        ours = build_positions(TransformerConfig(
            d_model=2 * head, n_heads=2, max_len=original * s, rotary_dim=0 if partial == 1 else rotary,
            rope_theta=base, rope_scaling="longrope", rope_original_max_len=original, rope_short_factor=short,
            rope_long_factor=long, rope_factor=float(factor or s), rope_attention_factor=attention or 0.0, **LLAMA))
        for seq_len, mine in ((None, ours.frequencies(1)), (original, ours.frequencies(original)),
                              (original + 1, ours.frequencies(original + 1))):
            inv_freq, scale = compute(theirs, None, seq_len=seq_len)
            torch.testing.assert_close(mine, inv_freq, rtol=0, atol=0, msg=str((n, seq_len)))
            assert ours.attention_factor == pytest.approx(scale, rel=1e-12), n
        if n % 12 == 0:  # the module itself: which list a whole forward of each length rotates with
            embedding = Phi3RotaryEmbedding(theirs)
            for length in (original - 1, original, original + 1, 2 * original + 3):
                cos, sin = embedding(torch.zeros(1), torch.arange(length)[None])
                mine_cos, mine_sin = ours.cos_sin(length, "cpu")
                torch.testing.assert_close(mine_cos, cos[0, :, :rotary // 2], rtol=0, atol=2e-6)
                torch.testing.assert_close(mine_sin, sin[0, :, :rotary // 2], rtol=0, atol=2e-6)


LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": factors(8, 1, 0.9, 1.3),
            "long_factor": factors(8, 2, 1.0, 12.0)}  # head_dim 16: 8 pairs


def phi3(rope: dict | None = LONGROPE, partial: float = 1.0, original: int = 32, max_len: int = 128, **extra):
    """A tiny Phi3ForCausalLM whose attention is sharp (where each key sits matters), with `rope` (LongRoPE over an
    original context of `original` tokens; None: plain RoPE) on `partial` of each 16-wide head."""
    from transformers import Phi3Config, Phi3ForCausalLM

    torch.manual_seed(0)
    if rope is None and partial != 1.0:
        rope = {"rope_type": "default", "rope_theta": 10000.0}
    rope = None if rope is None else {**rope, "partial_rotary_factor": partial}
    if rope is not None and "short_factor" in rope and partial != 1.0:  # a factor per rotated pair
        pairs = int(16 * partial) // 2
        rope.update(short_factor=rope["short_factor"][:pairs], long_factor=rope["long_factor"][:pairs])
    config = Phi3Config(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_len,
                        original_max_position_embeddings=original, rope_parameters=rope, bos_token_id=None,
                        eos_token_id=None, pad_token_id=None, **extra)
    hf = Phi3ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "norm" in name else 0.05))
            if "qkv_proj" in name:
                p.normal_(0, 0.3)
    return hf


# (A larger attention_factor sharpens attention further: at 1.3 transformers' own fp32 logits are 2e-5 from its fp64
# ones, ours 1.3e-5 from its fp32 and 1.8e-5 from its fp64, so 1e-5 would test rounding, not the mapping.)
@pytest.mark.parametrize("partial, extra", [(1.0, {}), (0.75, {}), (1.0, {"factor": 6.0, "attention_factor": 1.1})])
def test_a_longrope_phi3_gives_transformers_logits_on_both_sides_of_its_original_context(partial, extra):
    hf = phi3({**LONGROPE, **extra}, partial)
    model = hf_llama.from_hf(hf)
    c = model.config
    assert (c.rope_scaling, c.rope_original_max_len, c.hf_family, c.rotary_dim) == (
        "longrope", 32, "phi3", 12 if partial != 1 else 0)
    assert c.rope_factor == extra.get("factor", 4.0) and c.rope_attention_factor == extra.get("attention_factor", 0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for length in (32, 33, 100):  # the short list, then the long one
            ids = torch.randint(0, 300, (2, length), generator=g)
            theirs = hf(input_ids=ids).logits
            assert (model(ids)[0] - theirs).abs().max() < 1e-5, length
            for wrong in ({"rope_short_factor": c.rope_long_factor, "rope_long_factor": c.rope_short_factor},
                          {"rope_attention_factor": 1.0}):  # swapped lists, no attention scale: another model
                other = TransformerLM(TransformerConfig(**{**c.to_dict(), **wrong})).eval()
                other.load_state_dict(model.state_dict())
                assert (other(ids)[0] - theirs).abs().max() > 1e-3, (length, wrong)
        back = hf_llama.to_hf(model)
        assert type(back).__name__ == "Phi3ForCausalLM"
        for name, tensor in hf.state_dict().items():
            torch.testing.assert_close(back.state_dict()[name], tensor, atol=0, rtol=0, msg=name)
        written = back.config.rope_parameters
        assert (written["rope_type"], written["short_factor"], written["long_factor"]) == (
            "longrope", hf.config.rope_parameters["short_factor"], hf.config.rope_parameters["long_factor"])
        assert back.config.original_max_position_embeddings == 32
        assert (back(input_ids=ids).logits - theirs).abs().max() < 1e-5


@pytest.mark.parametrize("window", [0, 20])
def test_greedy_decoding_crosses_the_original_context_as_transformers_generate_does(window):
    """transformers' Phi-3 generate drops its cache once the sequence outgrows the original context and runs it all
    again at the long frequencies; ours restarts the cache there, so both continue alike, and every cached step
    gives what the full forward of the sequence so far gives (where keeping the short keys would not)."""
    hf = phi3(**({"sliding_window": window} if window else {}))
    model = hf_llama.from_hf(hf)
    assert model.config.attention_window == window
    prompt = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = hf.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0)[0, 20:].tolist()
    assert generate(model, prompt[0].tolist(), 30, temperature=0.0) == theirs
    ids = torch.randint(0, 300, (1, 50), generator=torch.Generator().manual_seed(4))
    cache = KVCache(2, 50, model.config.layer_windows)
    with torch.no_grad():
        model(ids[:, :28], cache=cache)
        for end in [*range(31, 50, 3), 50]:  # chunks of three, one of them crossing 32 (31 -> 34)
            start = cache.length
            stepped = model(ids[:, start:end], cache=cache)[0]
            assert (stepped - model(ids[:, :end])[0][:, start:]).abs().max() < 1e-4, end
        assert cache.length == 50


def test_koba_lm_imports_and_exports_a_longrope_phi3(tmp_path, capsys):
    _, exported, written = through_import_and_export(phi3(partial=0.75), tmp_path, capsys)
    assert (exported["architecture"], written["model_type"], written["original_max_position_embeddings"]) == (
        "phi3", "phi3", 32)
    rope = written["rope_parameters"]
    assert (rope["rope_type"], len(rope["long_factor"]), rope["partial_rotary_factor"]) == ("longrope", 6, 0.75)


def test_expansion_and_training_keep_longrope(tmp_path):
    from koba_ros.nlp.expansion import expand
    from koba_ros.nlp.trainer import TrainConfig, train

    model = hf_llama.from_hf(phi3())
    ids = torch.randint(0, 300, (2, 40))  # past the original 32: the long list
    with torch.no_grad():
        grown = expand(model, width_factor=2, n_layers=3)
        assert grown.config.rope_long_factor == model.config.rope_long_factor
        assert (grown(ids, ids)[1] - model(ids, ids)[1]).abs() < 1e-4
    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    long = dict(rope_scaling="longrope", rope_original_max_len=16, rope_factor=2.0, rope_short_factor=[1.0] * 4,
                rope_long_factor=[1.0, 2.0, 4.0, 8.0])
    config = dict(model=dict(d_model=32, n_layers=2, n_heads=4, max_len=32, **LLAMA, **long),
                  train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=40, eval_every=40,
                  ckpt_every=40, out=str(tmp_path / "run"), progress=False, lr=3e-3)
    assert train(TrainConfig.from_dict(config))["loss"] < 3.0  # from ln(259) = 5.6


@pytest.mark.parametrize("bad, message", [
    (dict(rope_short_factor=[1.0] * 7), "rope_short_factor: a list of 8"),
    (dict(rope_long_factor=[1.0] * 7 + [0.0]), "rope_long_factor: a list of 8"),
    (dict(rope_long_factor=None), "rope_long_factor: a list of 8"),
    (dict(rope_short_factor=[1.0] * 7 + [float("inf")]), "rope_short_factor"),
    (dict(rope_short_factor=[1.0] * 6, rotary_dim=12), None),  # 6 pairs of a partial rotation: fine
    (dict(rope_factor=0.0), "longrope RoPE scaling needs a finite rope_factor > 0"),
    (dict(rope_original_max_len=1), "rope_original_max_len > 1"),
    (dict(rope_attention_factor=-1.0), "rope_attention_factor >= 0"),
    (dict(rope_scaling="yarn"), "are LongRoPE's; they need rope_scaling: longrope")])
def test_bad_longrope_settings_are_refused_in_one_line(bad, message):
    settings = dict(d_model=32, n_heads=2, rope_scaling="longrope", rope_original_max_len=16,
                    rope_short_factor=[1.0] * 8, rope_long_factor=[2.0] * 8, **LLAMA)
    if bad.get("rotary_dim"):
        settings["rope_long_factor"] = [2.0] * 6
    if message is None:
        TransformerConfig(**{**settings, **bad})
        return
    with pytest.raises(KobaError, match=message) as caught:
        TransformerConfig(**{**settings, **bad})
    assert "\n" not in str(caught.value)


def test_longrope_where_transformers_would_decode_it_otherwise_is_refused_in_one_line():
    """A Llama (or GPT-NeoX, Phi) with LongRoPE: transformers' generate would keep the short keys it cached, so it
    comes in only as a Phi-3 and goes out only as one; and an attention_factor of 0 would zero every cos and sin."""
    from transformers import LlamaConfig

    llama = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=4, max_position_embeddings=128,
                        rope_parameters={**LONGROPE, "original_max_position_embeddings": 32})
    with pytest.raises(KobaError, match="and longrope on a Phi-3"):
        hf_llama.our_config(llama)
    with pytest.raises(KobaError, match="attention_factor is 0"):
        hf_llama.our_config(phi3({**LONGROPE, "attention_factor": 0.0}).config)
    long = dict(rope_scaling="longrope", rope_original_max_len=16, rope_short_factor=[1.0] * 4,
                rope_long_factor=[2.0] * 4)
    neox = TransformerConfig(d_model=32, n_heads=4, positions="rope", ffn="gelu_erf", parallel_residual=True, **long)
    for config in (neox, TransformerConfig(d_model=32, n_heads=4, **{**LLAMA, "bias": True}, **long)):
        with pytest.raises(KobaError, match="a Phi-3 .*needs|Phi-3 has no biases") as caught:
            hf_llama.architecture(config)
        assert "\n" not in str(caught.value)
    from koba_ros.nlp import hf_neox

    with pytest.raises(KobaError, match="a GPT-NeoX cannot have it"):
        hf_neox.neox_config(neox)
