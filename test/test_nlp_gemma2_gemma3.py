"""Gemma 2's and 3's additions (sandwich norms, soft-capped logits, an attention scale of their own, windows on some
layers, Gemma 3's local RoPE base) against their formulas; Gemma 2, Gemma 3 and Qwen2/Qwen3 with windows on some
layers in and out of transformers with the same logits and greedy continuation; the KV cache, chunked loss and
expansion with them; bad settings refused in one line."""
import json

import pytest
import torch
import torch.nn.functional as F

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama
from koba_ros.nlp.blocks import soft_cap, softcapped_attention
from koba_ros.nlp.chunked_cross_entropy import chunked_cross_entropy
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

SHAPE = dict(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=96, bos_token_id=None, eos_token_id=None,
             pad_token_id=None)
GEMMA2 = dict(norm="sandwich", norm_type="rmsnorm", ffn="geglu", positions="rope", bias=False, embed_scale=True,
              tie_embeddings=True)


def randomised(hf):
    """transformers starts norm gains (Gemma's stored as gain - 1) at 0 and ones: make every tensor matter."""
    torch.manual_seed(1)
    away_from_init(hf, 0.05, norm_scale=0.3)
    return hf.eval()


def gemma2():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    return randomised(Gemma2ForCausalLM(Gemma2Config(**SHAPE, sliding_window=8, query_pre_attn_scalar=24,
                                                     attn_logit_softcapping=2.0, final_logit_softcapping=3.0)))


def gemma3():
    """Sliding layers 0 and 2 rotate with base 10^4; full layers 1 and 3 with 10^6, positions interpolated x4."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    rope = {"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
    return randomised(Gemma3ForCausalLM(Gemma3TextConfig(**SHAPE, sliding_window=8, sliding_window_pattern=2,
                                                         rope_parameters=rope)))


def qwen(kind: str):
    """Windows on the upper two of four layers (max_window_layers 2)."""
    import transformers

    torch.manual_seed(0)
    shape = {k: v for k, v in SHAPE.items() if not (kind == "Qwen2" and k == "head_dim")}
    config = getattr(transformers, f"{kind}Config")(**shape, use_sliding_window=True, sliding_window=8,
                                                    max_window_layers=2)
    return randomised(getattr(transformers, f"{kind}ForCausalLM")(config))


def same_here_and_there(hf, expected_class: str):
    """Logits, greedy continuation far past the window, and the way back out, tensor for tensor."""
    model = hf_llama.from_hf(hf)
    ids = torch.randint(0, 300, (2, 60), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
        back = hf_llama.to_hf(model)
        assert type(back).__name__ == expected_class
        assert back.config.layer_types == hf.config.layer_types
        for name, tensor in hf.state_dict().items():
            torch.testing.assert_close(back.state_dict()[name], tensor, atol=1e-6, rtol=0, msg=name)
        prompt = ids[0, :6]
        greedy = hf.generate(prompt[None], max_new_tokens=30, do_sample=False, pad_token_id=0)[0, 6:].tolist()
    assert generate(model, prompt.tolist(), 30, temperature=0.0) == greedy
    return model


def test_gemma2_comes_in_with_its_soft_caps_scale_and_every_other_layer_sliding_and_goes_back_out():
    model = same_here_and_there(gemma2(), "Gemma2ForCausalLM")
    c = model.config
    assert (c.norm, c.sliding_layers, c.attention_window, c.attn_scale_dim, c.attn_softcap, c.logit_softcap) == \
        ("sandwich", [0, 2], 8, 24, 2.0, 3.0)
    logits = model(torch.randint(0, 300, (1, 20)))[0]
    assert logits.abs().max() < 3.0  # the final soft cap


def test_gemma3_comes_in_with_qk_norm_and_a_rope_base_per_kind_of_layer_and_goes_back_out():
    model = same_here_and_there(gemma3(), "Gemma3ForCausalLM")
    c = model.config
    assert (c.qk_norm, c.sliding_layers, c.rope_theta, c.rope_local_theta, c.rope_scaling, c.rope_factor) == \
        (True, [0, 2], 1e6, 1e4, "linear", 4.0)


@pytest.mark.parametrize("kind", ["Qwen2", "Qwen3"])
def test_a_qwen_sliding_on_some_layers_comes_in_and_goes_back_out(kind):
    model = same_here_and_there(qwen(kind), f"{kind}ForCausalLM")
    assert model.config.sliding_layers == [2, 3] and model.config.layer_windows == [0, 0, 8, 8]


def test_koba_lm_imports_and_exports_a_gemma2(tmp_path, capsys):
    _, exported, written = through_import_and_export(gemma2(), tmp_path, capsys)
    assert exported["architecture"] == "gemma2"
    assert (written["model_type"], written["attn_logit_softcapping"], written["query_pre_attn_scalar"]) == \
        ("gemma2", 2.0, 24)


def test_soft_capped_attention_is_its_formula_and_sdpa_when_the_cap_is_far():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 7, 8) * 3, torch.randn(2, 2, 7, 8) * 3, torch.randn(2, 2, 7, 8)
    kk, vv = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    logits = 2.0 * torch.tanh(q @ kk.transpose(-2, -1) * 0.3 / 2.0)
    expected = logits.masked_fill(~torch.ones(7, 7, dtype=torch.bool).tril(), float("-inf")).softmax(-1) @ vv
    torch.testing.assert_close(softcapped_attention(q, k, v, None, True, 0.3, 2.0, 0.0), expected)
    far = softcapped_attention(q, k, v, None, True, 0.3, 1e6, 0.0)
    torch.testing.assert_close(far, F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3,
                                                                   enable_gqa=True), atol=1e-5, rtol=0)
    assert soft_cap(torch.tensor([1e9, -1e9]), 30.0).tolist() == [30.0, -30.0]


def test_a_sandwich_layer_normalises_what_each_sub_layer_adds():
    torch.manual_seed(0)
    block = TransformerLM(TransformerConfig(d_model=16, n_layers=1, n_heads=2, **GEMMA2)).blocks[0]
    for norm in (block.attn_out_norm, block.ffn_out_norm):
        torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    x = torch.randn(2, 5, 16)
    h = x + block.attn_out_norm(block.attn(block.ln1(x), True))
    torch.testing.assert_close(block(x, True), h + block.ffn_out_norm(block.ffn(block.ln2(h))))


def test_a_cache_keeps_a_window_only_on_the_sliding_layers_and_decodes_as_the_full_forward():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=3, n_heads=4, max_len=64, attention_window=5,
                                            sliding_layers=[1], attn_softcap=4.0, logit_softcap=6.0,
                                            rope_local_theta=500.0, **GEMMA2)).eval()
    ids = torch.randint(0, 259, (1, 30))
    cache = KVCache(3, 30, model.config.layer_windows)
    assert_cached_decoding_matches_full(model, ids, 10, cache)
    assert [layer.keys.shape[2] for layer in cache.layers] == [30, 4, 30]
    with pytest.raises(KobaError, match="2 windows for 3 layers"):
        KVCache(3, 30, [5, 0])


def test_the_chunked_loss_soft_caps_like_the_plain_one_in_value_and_gradients():
    torch.manual_seed(0)
    h, w = (torch.randn(10, 8) * 3).requires_grad_(), (torch.randn(50, 8)).requires_grad_()
    targets = torch.randint(0, 50, (10,))
    targets[3] = -100
    plain = F.cross_entropy(soft_cap(h @ w.T, 5.0), targets)
    plain.backward()
    expected = (h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    chunked = chunked_cross_entropy(h, w, targets, 3, softcap=5.0)
    chunked.backward()
    torch.testing.assert_close(chunked, plain)
    torch.testing.assert_close((h.grad, w.grad), expected)


def test_growing_a_gemma2_keeps_its_function_its_window_pattern_and_new_layers_that_learn():
    torch.manual_seed(0)
    small = TransformerLM(TransformerConfig(d_model=16, n_layers=2, n_heads=2, max_len=40, attention_window=4,
                                            sliding_layers=[0], attn_softcap=5.0, logit_softcap=8.0,
                                            **{**GEMMA2, "tie_embeddings": False})).eval()
    big = expand(small, width_factor=2, n_layers=4).eval()
    assert big.config.sliding_layers == [0, 1] and big.config.layer_windows == [4, 4, 0, 0]
    ids = torch.randint(0, 259, (2, 30))
    with torch.no_grad():
        assert (big(ids)[0] - small(ids)[0]).abs().max() < 1e-4
    big.train()
    big(ids, ids)[1].backward()
    new = big.blocks[1]
    assert new.attn_out_norm.weight.grad.abs().sum() > 0 and new.ffn_out_norm.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("settings, message", [
    (dict(attention_window=4, sliding_layers=[0, 2]), "sliding_layers must be"),
    (dict(attention_window=4, sliding_layers=[0, 0]), "sliding_layers must be"),
    (dict(sliding_layers=[0]), "needs attention_window > 0"),
    (dict(attn_softcap=float("nan")), "attn_softcap must be"),
    (dict(logit_softcap=-1.0), "logit_softcap must be"),
    (dict(attn_scale_dim=-8), "attn_scale_dim must be"),
    (dict(rope_local_theta=1e4), "needs positions: rope and attention_window"),
])
def test_bad_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(KobaError, match=message):
        TransformerConfig(n_layers=2, positions="rope", **settings)


@pytest.mark.parametrize("settings, message", [
    (dict(logit_softcap=30.0), "Gemma 2's and 3's"),  # a Llama's shape with a cap
    (dict(attention_window=8, sliding_layers=[1]), "a Mistral, whose window covers every layer"),
    (dict(norm="pre", ffn="geglu", embed_scale=True, attention_window=8), "Gemma 1 has no"),
    (dict(norm="sandwich", ffn="geglu", embed_scale=True, attention_window=8, rope_local_theta=1e4),
     "Gemma 2 rotates every layer alike"),
])
def test_export_refuses_what_the_target_family_cannot_compute(settings, message):
    llama = dict(norm="pre", norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False, n_layers=2)
    with pytest.raises(KobaError, match=message):
        hf_llama.architecture(TransformerConfig(**{**llama, **settings}))
    with pytest.raises(KobaError, match="GPT-2 neither soft-caps"):
        check_gpt2_shaped(TransformerConfig(n_layers=2, logit_softcap=30.0))


def test_a_gemma2_shaped_run_trains_with_the_chunked_loss_and_loads_back_with_its_layer_pattern(tmp_path):
    from koba_ros.nlp.trained import load_trained
    from koba_ros.nlp.trainer import TrainConfig, train

    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    model = dict(d_model=32, n_layers=2, n_heads=4, max_len=32, attention_window=8, sliding_layers=[0],
                 attn_softcap=20.0, logit_softcap=15.0, loss_chunk=16, **GEMMA2)
    config = dict(model=model, train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=60,
                  eval_every=60, ckpt_every=60, out=str(tmp_path / "run"), progress=False, lr=3e-3)
    assert train(TrainConfig.from_dict(config))["loss"] < 2.5  # from ln(259) = 5.6
    loaded = load_trained(tmp_path / "run").model.config
    assert (loaded.sliding_layers, loaded.layer_windows, loaded.logit_softcap) == ([0], [8, 0], 15.0)


def test_soft_capped_encoder_padding_beyond_every_window_stays_finite_like_sdpa():
    """A padding query further than the window from any real token may see no key: zeros, as SDPA gives, not the
    NaN of a softmax over -inf alone, which spread to every token of the text in the next layer."""
    from koba_ros.nlp.model import TextEncoder

    torch.manual_seed(0)
    settings = dict(d_model=32, n_layers=2, n_heads=4, positions="rope", attention_window=3)
    capped = TextEncoder(TransformerConfig(**settings, attn_softcap=1e6)).eval()
    plain = TextEncoder(TransformerConfig(**settings)).eval()
    plain.load_state_dict(capped.state_dict())
    ids = torch.randint(0, 256, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        torch.testing.assert_close(capped.encode(ids, mask), plain.encode(ids, mask), atol=1e-5, rtol=0)


@pytest.mark.parametrize("settings", [dict(qk_norm=True, logit_softcap=5.0),  # Gemma 3 and 2 with no window
                                      dict(logit_softcap=5.0),
                                      # Gemma 3 whose sliding layers share the full ones' scaled RoPE
                                      dict(qk_norm=True, attention_window=8, sliding_layers=[0], rope_scaling="linear",
                                           rope_factor=2.0)])
def test_gemma_shapes_without_a_window_or_a_local_base_go_out_and_come_back(settings):
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=4, max_len=48, **GEMMA2,
                                            **settings)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        hf = hf_llama.to_hf(model)
        ids = torch.randint(0, 259, (2, 40))
        assert (hf(input_ids=ids).logits - model(ids)[0]).abs().max() < 1e-5
        back = hf_llama.from_hf(hf)
    assert back.config.layer_windows == model.config.layer_windows and back.config.rope_local_theta == 0


def test_a_qwen_exported_with_its_top_layers_sliding_says_so_in_max_window_layers_too():
    """Readers that ignore layer_types take the sliding layers from max_window_layers: from there up."""
    qwen_like = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False, qkv_bias=True)
    config = hf_llama.llama_config(TransformerConfig(n_layers=4, attention_window=8, sliding_layers=[2, 3],
                                                     **qwen_like))
    assert (config.use_sliding_window, config.max_window_layers) == (True, 2)


def test_a_gemma_saved_in_bf16_imports_with_its_exact_embedding_scale(tmp_path, capsys):
    """transformers keeps Gemma 2's sqrt(d) in the weights' dtype: 6.9375 for sqrt(48) = 6.928 in bf16, which
    failed the import's logit check against our exact scale (Gemma 3 1B's width 1152: 34.0 against 33.94)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    shape = {**SHAPE, "hidden_size": 48, "num_attention_heads": 4, "head_dim": 12}
    randomised(Gemma2ForCausalLM(Gemma2Config(**shape, sliding_window=8))).to(torch.bfloat16).save_pretrained(
        tmp_path / "bf16")
    code = main(["lm", "import", "--hf", str(tmp_path / "bf16"), "--out", str(tmp_path / "in"), "--tokenizer",
                 "byte", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["max_logit_difference"] < 1e-5
