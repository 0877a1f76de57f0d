"""YaRN (Peng, Quesnelle, Fan & Shippole 2023, arXiv 2309.00071): its frequencies and temperature against the
paper's equations (positions.yarn_inv_freq, yarn_attention_factor), models with it in and out of transformers with
the same logits, the KV cache decoding as the full forward does, and bad settings refused in one line."""
import json
import math

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.positions import RotaryPositions, apply_rope, yarn_attention_factor, yarn_inv_freq
from koba_ros.nlp.sampling import generate
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.nlp_weights import away_from_init

LLAMA = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False)


@pytest.mark.parametrize("ramp, truncate", [("index", True), ("index", False), ("paper", True)])
def test_short_wavelengths_are_kept_long_ones_divided_by_s_and_factor_one_changes_nothing(ramp, truncate):
    """h(θ_d) = (1 - γ(r(d))) θ_d / s + γ(r(d)) θ_d with r(d) = L / λ_d: a pair turning more than β = 32 times
    within L keeps θ_d, one turning fewer than α = 1 times gets θ_d / s, those between lie strictly between; with
    s = 1 every θ_d is RoPE's own."""
    head_dim, base, length, s = 64, 10000.0, 4096, 8.0
    theta = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)
    turns = length * theta / (2 * math.pi)  # r(d) = L / λ_d, λ_d = 2π / θ_d
    yarn = yarn_inv_freq(head_dim, base, s, length, 32.0, 1.0, truncate, ramp)
    kept, divided = turns > 32, turns < 1
    middle = ~kept & ~divided
    assert kept.sum() >= 3 and divided.sum() >= 3 and middle.sum() >= 3  # every band has pairs in it
    torch.testing.assert_close(yarn[kept], theta[kept], rtol=1e-6, atol=0)
    torch.testing.assert_close(yarn[divided], theta[divided] / s, rtol=1e-6, atol=0)
    between = middle & (turns > 1.5) & (turns < 31)  # away from the ends, which `truncate` may round onto
    assert ((yarn[between] > theta[between] / s) & (yarn[between] < theta[between])).all()
    torch.testing.assert_close(yarn_inv_freq(head_dim, base, 1.0, length, 32.0, 1.0, truncate, ramp), theta,
                               rtol=1e-6, atol=0)
    if ramp == "paper":  # γ(r) = (r - α) / (β - α) itself, read back from h
        gamma = (yarn[middle] - theta[middle] / s) / (theta[middle] - theta[middle] / s)
        torch.testing.assert_close(gamma, (turns[middle] - 1) / 31, rtol=1e-4, atol=1e-5)


def test_the_paper_ramp_and_transformers_ramp_agree_at_the_ends_and_differ_between():
    """transformers' ramp is linear in ln r, the paper's in r: without truncation γ = ln r / ln 32 against
    (r - 1) / 31, so at r = 2 transformers keeps 0.2 of θ_d and the paper 0.03."""
    head_dim, base, length, s = 64, 10000.0, 4096, 8.0
    theta = base ** (-torch.arange(0, head_dim, 2).float() / head_dim)
    turns = length * theta / (2 * math.pi)
    index = yarn_inv_freq(head_dim, base, s, length, truncate=False, ramp="index")
    gamma = (index - theta / s) / (theta - theta / s)
    middle = (turns > 1) & (turns < 32)
    torch.testing.assert_close(gamma[middle], torch.log(turns[middle]) / math.log(32), rtol=1e-4, atol=1e-5)
    assert (gamma[middle] > (turns[middle] - 1) / 31).all()
    with pytest.raises(KobaError, match="ramp must be"):
        yarn_inv_freq(head_dim, base, s, length, ramp="log")


def test_the_temperature_is_one_tenth_ln_s_plus_one_and_scales_q_dot_k_by_its_square():
    """sqrt(1/t) = 0.1 ln(s) + 1 (§3.4), applied to cos and sin: a rotated q and k are each that much longer, so
    q·k / sqrt(d) is divided by t."""
    for s in (2.0, 4.0, 16.0, 40.0):
        assert yarn_attention_factor(s) == pytest.approx(0.1 * math.log(s) + 1)
    assert yarn_attention_factor(1.0) == 1.0 and yarn_attention_factor(4.0, 1.5) == 1.5
    yarn = dict(factor=16.0, original_max_len=64, beta_fast=32.0, beta_slow=1.0, truncate=True, attention_factor=0.0)
    rope, plain = RotaryPositions(16, yarn=yarn), RotaryPositions(16)
    plain.inv_freq.copy_(rope.inv_freq)  # the same frequencies, no temperature
    q, k = torch.randn(2, 1, 1, 40, 16).unbind(0)
    scaled = (apply_rope(q, *rope.cos_sin(40, "cpu")) * apply_rope(k, *rope.cos_sin(40, "cpu"))).sum(-1)
    unscaled = (apply_rope(q, *plain.cos_sin(40, "cpu")) * apply_rope(k, *plain.cos_sin(40, "cpu"))).sum(-1)
    torch.testing.assert_close(scaled, unscaled * (0.1 * math.log(16) + 1) ** 2, rtol=1e-5, atol=1e-5)


YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 256,
        "beta_fast": 32.0, "beta_slow": 1.0}  # at head_dim 16 pair 0 turns 41 times in 256, pairs 1-3 ramp, 4-7 / s


def tiny(kind: str, rope: dict):
    """A tiny LlamaForCausalLM (or Qwen2, Mistral with a window of 40) with `rope`, with sharp attention so that
    where each key sits matters (at init attention is nearly uniform and a wrong frequency would hardly show)."""
    import transformers

    config_class, model_class = {"llama": ("LlamaConfig", "LlamaForCausalLM"),
                                 "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
                                 "mistral": ("MistralConfig", "MistralForCausalLM")}[kind]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=int(rope["factor"] * rope["original_max_position_embeddings"]),
        rms_norm_eps=1e-5, rope_parameters=dict(rope), tie_word_embeddings=False,
        **(dict(sliding_window=40) if kind == "mistral" else {}))  # else it would go back out as a Llama
    hf = getattr(transformers, model_class)(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.normal_(0, 0.5)
    return hf


@pytest.mark.parametrize("kind, rope", [
    ("llama", YARN),
    ("llama", {**YARN, "truncate": False, "attention_factor": 1.3, "beta_fast": 16.0, "beta_slow": 2.0}),
    ("qwen2", {**YARN, "factor": 8.0, "original_max_position_embeddings": 128}),
    ("mistral", YARN)])
def test_a_yarn_model_from_transformers_gives_the_same_logits_here_and_goes_back_out(kind, rope):
    hf = tiny(kind, rope)
    model = hf_llama.from_hf(hf)
    config = model.config
    assert (config.rope_scaling, config.rope_factor, config.rope_original_max_len) == (
        "yarn", rope["factor"], rope["original_max_position_embeddings"])
    assert config.rope_truncate == rope.get("truncate", True)
    ids = torch.randint(0, 300, (2, 96), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(input_ids=ids).logits
        assert (model(ids)[0] - theirs).abs().max() < 1e-5
        back = hf_llama.to_hf(model)
        assert type(back) is type(hf)
        temperature = rope.get("attention_factor", 0.1 * math.log(rope["factor"]) + 1)
        written = dict(back.config.rope_parameters)
        assert written.pop("attention_factor") == pytest.approx(temperature)
        assert written == {**{k: v for k, v in rope.items() if k != "attention_factor"},
                           "truncate": rope.get("truncate", True)}
        assert (back(input_ids=ids).logits - theirs).abs().max() < 1e-5
        again = hf_llama.from_hf(back)  # the same config but for the temperature, now written out; the same tensors
        assert again.config.rope_attention_factor == pytest.approx(temperature)
        unset = {"rope_attention_factor": 0}
        assert {**again.config.to_dict(), **unset} == {**config.to_dict(), **unset}
        assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())
        # The same weights without YaRN's temperature, or with position interpolation instead, are another model.
        for wrong in ({"rope_attention_factor": 1.0}, {"rope_scaling": "linear"},
                      {"rope_truncate": not config.rope_truncate}):
            if "rope_attention_factor" in wrong and rope.get("attention_factor") == 1.0:
                continue
            other = TransformerLM(TransformerConfig(**{**config.to_dict(), **wrong})).eval()
            other.load_state_dict(model.state_dict())
            assert (other(ids)[0] - theirs).abs().max() > 1e-3, wrong


def test_koba_lm_imports_and_exports_a_yarn_llama(tmp_path, capsys):
    """Through the files: the checkpoint keeps the yarn settings, the export writes them in config.json."""
    tiny("llama", {**YARN, "truncate": False}).save_pretrained(tmp_path / "hf")
    assert main(["lm", "import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "in"), "--tokenizer", "byte",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_logit_difference"] < 1e-5
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_logit_difference"] < 1e-5
    written = json.loads((tmp_path / "out" / "config.json").read_text())["rope_parameters"]
    assert (written["rope_type"], written["factor"], written["truncate"]) == ("yarn", 4.0, False)


def yarn_model(seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_len=128,
                                            rope_scaling="yarn", rope_factor=4.0, rope_original_max_len=32,
                                            **LLAMA)).eval()
    away_from_init(model, 0.3)  # away from the init, so attention is sharp and positions matter
    return model


def test_the_kv_cache_decodes_a_yarn_model_like_the_full_forward():
    """cos and sin (temperature included) depend only on the position, so a token fed alone after cached ones gets
    the logits the full forward gives it, past the original context (32) too; greedy continuations agree."""
    model = yarn_model()
    ids = torch.randint(0, 259, (1, 80), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)[0]
        cache = KVCache(2, 80)
        parts = [model(ids[:, :20], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(20, 80)]
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-4
    prompt = ids[0, :10].tolist()
    cached = generate(model, prompt, 60, temperature=0.0)
    assert cached == generate(model, prompt, 60, temperature=0.0, use_cache=False)
    assert len(cached) == 60


@pytest.mark.parametrize("bad", [dict(rope_beta_fast=1.0), dict(rope_beta_slow=0.0), dict(rope_factor=0.5),
                                 dict(rope_factor=float("inf")), dict(rope_attention_factor=-1.0),
                                 dict(rope_attention_factor=float("nan")), dict(rope_original_max_len=0),
                                 dict(rope_beta_fast=float("inf"))])
def test_bad_yarn_settings_are_refused_in_one_line(bad):
    with pytest.raises(KobaError, match="yarn RoPE scaling needs") as caught:
        TransformerConfig(positions="rope", rope_scaling="yarn", **bad)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("rope, message", [
    ({**YARN, "attention_factor": 0.0}, "attention_factor"),
    ({**YARN, "partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    ({**YARN, "beta_fast": 1.0, "beta_slow": 2.0}, "yarn RoPE scaling needs"),
    ({"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0}, "only the default, llama3, linear and yarn"),
    ({"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0] * 8, "long_factor": [2.0] * 8,
      "original_max_position_embeddings": 32}, "only the default, llama3, linear and yarn")])
def test_rope_settings_ours_cannot_compute_are_refused_on_import_in_one_line(rope, message):
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=128, rms_norm_eps=1e-5, rope_parameters=rope)
    with pytest.raises(KobaError, match=message) as caught:
        hf_llama.our_config(config)
    assert "\n" not in str(caught.value)


def test_deepseek_style_mscale_is_folded_into_the_attention_factor():
    """transformers' attention_factor, when absent, is get_mscale(s, mscale) / get_mscale(s, mscale_all_dim)
    where both are set: the import keeps that number, so the logits agree."""
    rope = {**YARN, "mscale": 1.0, "mscale_all_dim": 0.5}
    hf = tiny("llama", rope)
    model = hf_llama.from_hf(hf)
    s = rope["factor"]
    assert model.config.rope_attention_factor == pytest.approx((0.1 * math.log(s) + 1) / (0.05 * math.log(s) + 1))
    ids = torch.randint(0, 300, (1, 64), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
