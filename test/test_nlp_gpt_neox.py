"""Parallel attention and FFN, RoPE on part of each head and the exact GELU against their formulas; GPT-NeoX (Pythia's
architecture) in and out of transformers with the same logits and greedy continuation; the KV cache, expansion and
training with them; what other families cannot compute refused in one line."""

import pytest
import torch
import torch.nn.functional as F

from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama, hf_neox
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.expansion import expand
from koba_ros.nlp.hf_gpt2 import check_gpt2_shaped
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.sampling import generate
from test.nlp_decoding import assert_cached_decoding_matches_full
from test.nlp_hf_cli import through_import_and_export
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.nlp_weights import away_from_init

NEOX = dict(norm_type="layernorm", positions="rope", ffn="gelu_erf", parallel_residual=True)


def pythia(parallel=True, act="gelu", rotary_pct=0.25, tie=False):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    hf = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=300, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                          intermediate_size=128, hidden_act=act, max_position_embeddings=96,
                                          use_parallel_residual=parallel, rotary_pct=rotary_pct,
                                          tie_word_embeddings=tie, bos_token_id=None, eos_token_id=None))
    away_from_init(hf, 0.05)  # LayerNorm starts at 1 and 0, biases at 0: make every tensor matter
    return hf.eval()


@pytest.mark.parametrize("parallel, act, rotary_pct, tie, expected", [
    (True, "gelu", 0.25, False, (True, "gelu_erf", 4)),    # Pythia's: a quarter of each head of 16 rotates
    (False, "gelu_new", 1.0, True, (False, "gelu", 0)),
    (True, "gelu", 0.5, False, (True, "gelu_erf", 8)),
])
def test_a_gpt_neox_comes_in_generates_the_same_and_goes_back_out(parallel, act, rotary_pct, tie, expected):
    hf = pythia(parallel, act, rotary_pct, tie)
    model = hf_neox.from_hf(hf)
    c = model.config
    assert (c.parallel_residual, c.ffn, c.rotary_dim) == expected and c.tie_embeddings == tie
    ids = torch.randint(0, 300, (2, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
        back = hf_neox.to_hf(model)
        for name, tensor in hf.state_dict().items():
            torch.testing.assert_close(back.state_dict()[name], tensor, atol=0, rtol=0, msg=name)
        prompt = ids[0, :5]
        greedy = hf.generate(prompt[None], max_new_tokens=20, do_sample=False, pad_token_id=0)[0, 5:].tolist()
    assert generate(model, prompt.tolist(), 20, temperature=0.0) == greedy


def test_koba_lm_imports_and_exports_a_pythia(tmp_path, capsys):
    _, exported, written = through_import_and_export(pythia(), tmp_path, capsys)
    assert exported["architecture"] == "gpt_neox"
    assert (written["model_type"], written["use_parallel_residual"]) == ("gpt_neox", True)


def test_a_parallel_layer_adds_attention_and_ffn_of_the_same_input():
    torch.manual_seed(0)
    block = TransformerLM(TransformerConfig(d_model=16, n_layers=1, n_heads=2, **NEOX)).blocks[0]
    for norm in (block.ln1, block.ln2):
        torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(block(x, True), x + block.attn(block.ln1(x), True) + block.ffn(block.ln2(x)))
    wide = torch.linspace(-4, 4, 81)  # where the exact GELU and its tanh form differ by up to 3e-4
    torch.testing.assert_close(block.ffn.activation(wide), F.gelu(wide), atol=1e-7, rtol=0)


def test_partial_rope_rotates_only_the_first_components_and_stays_relative():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, rotary_dim=4, **NEOX)).eval()
    cos, sin = model.positions.cos_sin(6, "cpu", start=3)
    assert cos.shape == (6, 2)  # 2 pairs of the 16-wide head
    ids = torch.randint(0, 259, (1, 12))
    with torch.no_grad():  # RoPE alone carries position: shifting every position changes nothing
        torch.testing.assert_close(model(ids, shift=7)[0], model(ids)[0], atol=1e-4, rtol=0)
        q = torch.randn(1, 2, 6, 16)
        from koba_ros.nlp.positions import apply_rope

        rotated = apply_rope(q, cos, sin)
        torch.testing.assert_close(rotated[..., 4:], q[..., 4:])
        assert (rotated[..., :4] - q[..., :4]).abs().max() > 0.1


def test_the_cache_expansion_and_training_take_parallel_partial_rope_models(tmp_path):
    from koba_ros.nlp.trainer import TrainConfig, train

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, max_len=64, rotary_dim=8,
                                            **NEOX)).eval()
    away_from_init(model, 0.05)
    ids = torch.randint(0, 259, (2, 30))
    assert_cached_decoding_matches_full(model, ids, 4, KVCache(2, 30))
    with torch.no_grad():
        grown = expand(model, width_factor=2, n_layers=4)
        assert grown.config.rotary_dim == 8  # heads keep their width, and what of each rotates
        assert (grown(ids, ids)[1] - model(ids, ids)[1]).abs() < 1e-4
    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    config = dict(model=dict(d_model=32, n_layers=2, n_heads=4, max_len=32, rotary_dim=2, **NEOX),
                  train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=60, eval_every=60,
                  ckpt_every=60, out=str(tmp_path / "run"), progress=False, lr=3e-3)
    assert train(TrainConfig.from_dict(config))["loss"] < 2.5  # from ln(259) = 5.6


@pytest.mark.parametrize("settings, message", [
    (dict(rotary_dim=3), "rotary_dim must be"),
    (dict(rotary_dim=64), "rotary_dim must be"),
    (dict(rotary_dim=4, positions="learned"), "it needs positions: rope"),
    (dict(parallel_residual=True, norm="b2t"), "parallel_residual is a Pre-LN layer's"),
])
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(KobaError, match=message):
        TransformerConfig(**{"d_model": 32, "n_heads": 2, "positions": "rope", **settings})


def test_families_that_cannot_compute_parallel_layers_or_partial_rope_refuse_them():
    with pytest.raises(KobaError, match="parallel_residual"):
        check_gpt2_shaped(TransformerConfig(parallel_residual=True))
    llama = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False)
    for extra in (dict(parallel_residual=True), dict(rotary_dim=8)):
        with pytest.raises(KobaError, match="a Llama needs"):
            hf_llama.architecture(TransformerConfig(**llama, **extra))
    with pytest.raises(KobaError, match="a GPT-NeoX needs"):
        hf_neox.neox_config(TransformerConfig(**{**NEOX, "norm_type": "rmsnorm"}))
    with pytest.raises(KobaError, match="hidden_act 'relu'"):
        hf_neox.from_hf(pythia(act="relu"))
