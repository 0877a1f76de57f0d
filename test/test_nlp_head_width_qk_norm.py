"""Heads of any width (`d_head`) and normalised queries and keys (`qk_norm`, Dehghani et al. 2023 §2): each against
its definition, through the KV cache, expansion, GQA pooling and training; and Qwen3 (both at once, the commonest
small pretrained model family today) and a Llama with wide heads in and out of transformers with the same logits."""
import json

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.expansion import expand
from koba_ros.nlp.gqa_conversion import pool_kv_heads
from koba_ros.nlp.hf_gpt2 import check_gpt2_shaped
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TextEncoder, TransformerLM
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.nlp_weights import away_from_init

QWEN3 = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False, qk_norm=True, n_kv_heads=2)


def lm(seed: int = 0, **kw) -> TransformerLM:
    """Moved away from the init: unit gains would hide a gain applied to the wrong component or head."""
    torch.manual_seed(seed)
    model = TransformerLM(TransformerConfig(**{"d_model": 32, "n_layers": 2, "n_heads": 4, "max_len": 64,
                                               **kw})).eval()
    away_from_init(model, 0.1)
    return model


def test_wide_heads_project_to_n_heads_times_d_head_and_back():
    model = lm(d_head=24, n_kv_heads=2, positions="rope")
    attn = model.blocks[0].attn
    assert attn.qkv.weight.shape == ((4 + 2 * 2) * 24, 32) and attn.out.weight.shape == (32, 4 * 24)
    assert model.positions.inv_freq.numel() == 12  # RoPE rotates pairs within a 24-wide head
    ids = torch.randint(0, 256, (2, 20))
    assert model(ids)[0].shape == (2, 20, 259)


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys():
    """softmax(N(q) N(k)^T / sqrt(d)): scaling the q and k rows of W_qkv changes nothing with the norms (up to their
    epsilon) and everything without them."""
    ids = torch.randint(0, 256, (2, 20))
    for qk_norm in (True, False):
        model = lm(**{**QWEN3, "qk_norm": qk_norm, "d_head": 12})
        before = model(ids)[0]
        with torch.no_grad():
            for block in model.blocks:
                rows = (4 + 2) * 12  # q heads, then k heads
                block.attn.qkv.weight[:rows] *= 50.0
        change = (model(ids)[0] - before).abs().max().item()
        assert (change < 1e-3) if qk_norm else (change > 0.1), (qk_norm, change)


def test_each_head_is_normalised_with_one_gain_vector_shared_by_all_heads():
    model = lm(**QWEN3, d_head=8)
    attn = model.blocks[0].attn
    assert attn.q_norm.weight.shape == (8,) and attn.k_norm.weight.shape == (8,)
    x = torch.randn(1, 5, 32)
    q = attn.qkv(x).view(1, 5, 8, 8)[:, :, :4]  # [B, T, heads, d_head]: the query heads
    expected = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + attn.q_norm.eps) * attn.q_norm.weight
    torch.testing.assert_close(attn.q_norm(q), expected)


@pytest.mark.parametrize("kw", [dict(QWEN3, d_head=12), dict(d_head=16), dict(qk_norm=True)])
def test_the_kv_cache_decodes_wide_normalised_heads_like_the_full_forward(kw):
    model = lm(**kw)
    ids = torch.randint(0, 256, (2, 14))
    with torch.no_grad():
        full = model(ids)[0]
        cache = KVCache(model.config.n_layers, 14)
        parts = [model(ids[:, :6], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(6, 14)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("width, depth", [(2, 3), (1, 4)])
def test_expansion_keeps_the_function_of_a_qwen3_shaped_model(width, depth):
    model = lm(**QWEN3, d_head=24)
    ids = torch.randint(0, 256, (4, 40))
    before = model(ids[:, :-1], ids[:, 1:])[1].item()
    grown = expand(model, width, depth)
    assert (grown.config.n_heads, grown.config.head_dim) == (4 * width, 24)
    assert abs(grown(ids[:, :-1], ids[:, 1:])[1].item() - before) < 1e-4


def test_pooling_key_value_heads_keeps_the_key_norm_and_a_function_whose_heads_agree():
    model = lm(**{**QWEN3, "n_kv_heads": 4}, d_head=12)
    with torch.no_grad():
        for block in model.blocks:  # key and value heads 1 and 3 copy 0 and 2: pooling pairs keeps the function
            kv = block.attn.qkv.weight[4 * 12:].view(2, 2, 2, 12, 32)  # (k|v, group, head in group)
            kv.copy_(kv[:, :, :1].clone().expand_as(kv))
    pooled = pool_kv_heads(model, 2)
    assert torch.equal(pooled.blocks[1].attn.k_norm.weight, model.blocks[1].attn.k_norm.weight)
    ids = torch.randint(0, 256, (2, 24))
    torch.testing.assert_close(pooled(ids)[0], model(ids)[0], atol=1e-5, rtol=1e-5)


def test_the_encoder_takes_them_and_a_qwen3_shaped_lm_trains(tmp_path):
    encoder = TextEncoder(TransformerConfig(d_model=32, n_layers=1, n_heads=4, d_head=16, qk_norm=True))
    assert encoder.encode(torch.randint(0, 256, (3, 7))).shape == (3, 32)
    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    config = dict(model=dict(d_model=32, n_layers=2, n_heads=4, d_head=16, max_len=32, **QWEN3),
                  train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=60, eval_every=60,
                  ckpt_every=60, out=str(tmp_path / "run"), progress=False, lr=3e-3)
    result = train(TrainConfig.from_dict(config))
    assert result["loss"] < 2.5, result  # from ln(259) = 5.6, as the Llama-style blocks' test


def test_bad_head_widths_and_gpt2_export_of_them_are_one_line():
    for value in (-1, 2.5, True, "8"):
        with pytest.raises(KobaError, match="d_head"):
            TransformerConfig.from_dict({"d_head": value})
    with pytest.raises(KobaError, match="or set d_head"):
        TransformerConfig(d_model=30, n_heads=4)
    assert TransformerConfig(d_model=30, n_heads=4, d_head=8).attn_dim == 32
    with pytest.raises(KobaError, match="RoPE needs an even head dimension"):
        TransformerConfig(d_model=32, n_heads=4, d_head=7, positions="rope")
    for kw in (dict(d_head=16), dict(qk_norm=True)):
        with pytest.raises(KobaError, match="heads fill its width"):
            check_gpt2_shaped(TransformerConfig(n_heads=4, **kw))


def qwen3(seed: int = 0, **kw):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    shape = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=True)
    hf = Qwen3ForCausalLM(Qwen3Config(**{**shape, **kw})).eval()
    with torch.no_grad():  # transformers starts every gain at one: random ones show a gain on the wrong component
        for name, p in hf.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return hf


def test_a_qwen3_from_transformers_computes_the_same_logits_here_and_goes_back_out():
    hf = qwen3()
    model = hf_llama.from_hf(hf)
    config = model.config
    assert (config.d_head, config.head_dim, config.qk_norm, config.bias, config.has_qkv_bias) == (16, 16, True,
                                                                                                  False, False)
    assert (config.rope_theta, config.norm_eps, config.tie_embeddings) == (1e6, 1e-6, True)
    ids = torch.randint(0, 300, (2, 48))  # long enough that a wrong RoPE pairing or gain order would show
    with torch.no_grad():
        theirs = hf(input_ids=ids).logits
        assert (model(ids)[0] - theirs).abs().max() < 1e-5
        back = hf_llama.to_hf(model)
        assert type(back).__name__ == "Qwen3ForCausalLM" and back.config.head_dim == 16
        assert (back(input_ids=ids).logits - theirs).abs().max() < 1e-5
    for name, tensor in hf.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


def test_a_llama_with_heads_wider_than_its_width_over_heads_goes_out_and_comes_in():
    """Mistral Nemo's kind: 32 heads of 128 in a width of 5120."""
    model = lm(**{**QWEN3, "qk_norm": False}, d_head=12)
    hf = hf_llama.to_hf(model)
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.config.head_dim == 12
    ids = torch.randint(0, 259, (2, 40))
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
    back = hf_llama.from_hf(hf)
    assert back.config.d_head == 12
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())


def test_koba_lm_imports_a_qwen3_folder_samples_and_exports_it_and_refuses_what_it_cannot_compute(tmp_path, capsys):
    qwen3(1).save_pretrained(tmp_path / "qwen3")
    assert main(["lm", "import", "--hf", str(tmp_path / "qwen3"), "--out", str(tmp_path / "in"), "--tokenizer",
                 "byte", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_logit_difference"] < 1e-5
    assert main(["lm", "sample", "--checkpoint", str(tmp_path / "in"), "--prompt", "put the", "--tokens", "8",
                 "--json"]) == 0
    capsys.readouterr()
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "qwen3"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "qwen3"
    with pytest.raises(KobaError, match="attention_bias true"):  # (windows on some layers: since session 22)
        hf_llama.from_hf(qwen3(attention_bias=True))
    with pytest.raises(KobaError, match="Qwen3's attention, which has no biases"):
        hf_llama.to_hf(lm(**{**QWEN3, "qkv_bias": True}))
