"""Phi-3 (a Llama stored with fused qkv and gate_up tensors, maybe rotating part of each head, maybe sliding) and
Phi-1/1.5/2 (parallel attention and FFN on one shared LayerNorm, biases everywhere and on the head, partial rotary,
QK LayerNorm) in and out of transformers with the same logits and greedy continuation, also through `koba lm import`
and `export`; the shared norm and the head bias against their formulas and through the KV cache, expansion, training
and the chunked loss; what other families cannot compute refused in one line."""
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama, hf_neox, hf_phi
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
from test.test_nlp_longrope import phi3

PHI = dict(norm_type="layernorm", positions="rope", ffn="gelu", parallel_residual=True, parallel_shared_norm=True,
           head_bias=True)


def same_here_and_there(hf, module, length: int = 60):
    """The imported model's logits, its way back out tensor for tensor, and greedy continuation against hf's."""
    model = module.from_hf(hf)
    ids = torch.randint(0, 300, (2, length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
        back = module.to_hf(model)
        assert type(back) is type(hf)
        for name, tensor in hf.state_dict().items():
            torch.testing.assert_close(back.state_dict()[name], tensor, atol=0, rtol=0, msg=name)
        prompt = ids[0, :5]
        greedy = hf.generate(prompt[None], max_new_tokens=20, do_sample=False, pad_token_id=0)[0, 5:].tolist()
    assert generate(model, prompt.tolist(), 20, temperature=0.0) == greedy
    return model


@pytest.mark.parametrize("partial, extra, expected", [
    (1.0, {}, (0, 0, False)),
    (0.5, {"sliding_window": 24, "tie_word_embeddings": True}, (8, 24, True)),  # 8 of each 16-wide head rotate
])
def test_a_phi3_comes_in_generates_the_same_and_goes_back_out_fused(partial, extra, expected):
    model = same_here_and_there(phi3(None, partial, **extra), hf_llama)
    c = model.config
    assert (c.rotary_dim, c.attention_window, c.tie_embeddings) == expected
    assert (c.hf_family, c.rope_scaling, hf_llama.architecture(c)) == ("phi3", "none", "phi3")


def test_koba_lm_imports_and_exports_a_phi3(tmp_path, capsys):
    _, exported, written = through_import_and_export(phi3(None, 0.75), tmp_path, capsys)
    assert (exported["architecture"], written["model_type"]) == ("phi3", "phi3")
    assert written["rope_parameters"]["partial_rotary_factor"] == 0.75


def phi(qk_norm=False, act="gelu_new", partial=0.4, kv_heads=4, tie=False, scaling: dict | None = None):
    """A tiny PhiForCausalLM: heads of 20, of which partial rotate (Phi-2: 0.4 of 80), with RoPE `scaling`."""
    from transformers import PhiConfig, PhiForCausalLM

    torch.manual_seed(0)
    rope = {"rope_type": "default", "rope_theta": 10000.0, **(scaling or {}), "partial_rotary_factor": partial}
    hf = PhiForCausalLM(PhiConfig(vocab_size=300, hidden_size=80, intermediate_size=96, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=kv_heads, hidden_act=act,
                                  max_position_embeddings=96, rope_parameters=rope, qk_layernorm=qk_norm,
                                  tie_word_embeddings=tie, bos_token_id=None, eos_token_id=None, pad_token_id=None))
    with torch.no_grad():  # LayerNorms start at 1 and 0, biases at 0: make every tensor matter, attention sharp
        for name, p in hf.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if "layernorm" in name else 0.05))
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.normal_(0, 0.3)
    return hf.eval()


@pytest.mark.parametrize("qk_norm, act, partial, kv_heads, tie, expected", [
    (False, "gelu_new", 0.4, 4, False, ("gelu", 8, False)),  # Phi-2's: gelu_new, 0.4 of each head rotates
    (True, "gelu", 0.5, 2, True, ("gelu_erf", 10, True)),    # QK LayerNorm, grouped keys and values, tied head
    (False, "gelu_new", 1.0, 1, False, ("gelu", 0, False)),
])
def test_a_phi_comes_in_generates_the_same_and_goes_back_out(qk_norm, act, partial, kv_heads, tie, expected):
    model = same_here_and_there(phi(qk_norm, act, partial, kv_heads, tie), hf_phi)
    c = model.config
    assert (c.ffn, c.rotary_dim, c.tie_embeddings) == expected
    assert (c.qk_norm, c.kv_heads, c.parallel_shared_norm, c.head_bias) == (qk_norm, kv_heads, True, True)


@pytest.mark.parametrize("scaling", [{"rope_type": "linear", "factor": 4.0},
                                     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 24}])
def test_a_phi_with_scaled_rope_on_its_rotated_part_comes_in_and_goes_out(scaling):
    model = same_here_and_there(phi(scaling=scaling), hf_phi, length=90)
    assert (model.config.rope_scaling, model.config.rotary_dim) == (scaling["rope_type"], 8)


def test_koba_lm_imports_and_exports_a_phi(tmp_path, capsys):
    _, exported, written = through_import_and_export(phi(qk_norm=True), tmp_path, capsys)
    assert (exported["architecture"], written["model_type"], written["qk_layernorm"]) == ("phi", "phi", True)
    assert written["rope_parameters"]["partial_rotary_factor"] == 0.4


def tiny(**extra) -> TransformerLM:
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**{"d_model": 32, "n_layers": 2, "n_heads": 2, "max_len": 64, **PHI,
                                               **extra}))
    away_from_init(model, 0.1)  # away from the init: unit gains and zero biases would hide a missing term
    return model.eval()


def test_a_shared_norm_layer_adds_attention_and_ffn_of_one_normalised_input():
    block = tiny(n_layers=1).blocks[0]
    assert block.ln2 is None and not any(".ln2." in name for name in tiny().state_dict())
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        normed = block.ln1(x)
        torch.testing.assert_close(block(x, True), x + block.attn(normed, True) + block.ffn(normed))


def test_the_head_bias_is_added_to_every_logit_and_the_chunked_loss_takes_it():
    model = tiny()
    ids, targets = torch.randint(0, 259, (2, 24)), torch.randint(0, 259, (2, 24))
    logits, loss = model(ids, targets)
    torch.testing.assert_close(logits, model.hidden(ids) @ model.head.weight.t() + model.head.bias)
    chunked = TransformerLM(TransformerConfig(**{**model.config.to_dict(), "loss_chunk": 7})).eval()
    chunked.load_state_dict(model.state_dict())
    chunked_loss = chunked(ids, targets)[1]
    torch.testing.assert_close(chunked_loss, loss)
    loss.backward()
    chunked_loss.backward()
    for (name, p), q in zip(model.named_parameters(), chunked.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)
    assert model.head.bias.grad.abs().max() > 0


def test_the_cache_expansion_and_training_take_shared_norms_and_head_biases(tmp_path):
    from koba_ros.nlp.trainer import TrainConfig, train

    model = tiny(rotary_dim=8, qk_norm=True, n_kv_heads=1)
    ids = torch.randint(0, 259, (2, 30))
    assert_cached_decoding_matches_full(model, ids, 4, KVCache(2, 30))
    with torch.no_grad():
        grown = expand(model, width_factor=2, n_layers=4)
        assert (grown.config.parallel_shared_norm, grown.config.head_bias) == (True, True)
        torch.testing.assert_close(grown.head.bias, model.head.bias)
        assert (grown(ids, ids)[1] - model(ids, ids)[1]).abs() < 1e-4
    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    config = dict(model=dict(d_model=32, n_layers=2, n_heads=4, max_len=32, rotary_dim=4, loss_chunk=16, **PHI),
                  train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=60, eval_every=60,
                  ckpt_every=60, out=str(tmp_path / "run"), progress=False, lr=3e-3)
    assert train(TrainConfig.from_dict(config))["loss"] < 2.5  # from ln(259) = 5.6


@pytest.mark.parametrize("settings, message", [
    (dict(parallel_shared_norm=True), "parallel_shared_norm .* needs parallel_residual: true"),
    (dict(hf_family="phi4"), "hf_family must be one of"),
    (dict(head_bias="yes"), "head_bias must be true or false"),
])
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(KobaError, match=message) as caught:
        TransformerConfig.from_dict({"d_model": 32, "n_heads": 2, "positions": "rope", **settings})
    assert "\n" not in str(caught.value)


LLAMA = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False)


@pytest.mark.parametrize("export, config, message", [
    (check_gpt2_shaped, dict(head_bias=True), "GPT-2 has head_bias False"),
    (hf_llama.architecture, dict(LLAMA, head_bias=True), "a Llama needs"),
    (hf_neox.neox_config, dict(PHI, ffn="gelu_erf", head_bias=False), "a GPT-NeoX needs"),  # the shared norm
    (hf_neox.neox_config, dict(PHI, ffn="gelu_erf", parallel_shared_norm=False), "a GPT-NeoX needs"),  # the bias
    (hf_phi.phi_config, dict(PHI, attention_window=8), "a Phi needs"),
    (hf_phi.phi_config, dict(PHI, qkv_bias=False), "a Phi needs"),
    (hf_llama.architecture, dict(LLAMA, bias=True, hf_family="phi3"), "Phi-3 has no biases"),
    (hf_llama.architecture, dict(LLAMA, hf_family="phi3", rope_scaling="linear"), "Phi-3's RoPE is plain or longrope"),
    (hf_llama.architecture, dict(PHI, hf_family="phi3"), "a Phi-3 .* needs"),
    (hf_llama.architecture, dict(LLAMA, rotary_dim=8), "a Llama needs"),  # partial rotary: hf_family phi3 only
])
def test_what_a_family_cannot_compute_is_refused_on_export_in_one_line(export, config, message):
    with pytest.raises(KobaError, match=message) as caught:
        export(TransformerConfig(d_model=32, n_heads=2, **config))
    assert "\n" not in str(caught.value)


def test_phis_ours_cannot_compute_are_refused_on_import_in_one_line():
    for hf, message in ((phi(act="relu"), "hidden_act 'relu'"), (phi(partial=0.25), "rotates 5 components")):
        with pytest.raises(KobaError, match=message) as caught:
            hf_phi.from_hf(hf)
        assert "\n" not in str(caught.value)
    with pytest.raises(KobaError, match="Phi-3 rotates 5 components"):
        hf_llama.our_config(phi3(None, 5 / 16).config)
