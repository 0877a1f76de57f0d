"""RMSNorm, SwiGLU and grouped-query attention: each against its equation, the default model unchanged by them,
and a Llama-style LM (RoPE + RMSNorm + SwiGLU + GQA, no biases) through training, resume, sampling and the KV cache."""
import math

import pytest
import torch
import torch.nn.functional as F

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.hf_gpt2 import check_gpt2_shaped
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.sampling import generate
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

LLAMA = dict(norm_type="rmsnorm", ffn="swiglu", n_kv_heads=2, positions="rope", bias=False)


def lm(**kw) -> TransformerLM:
    torch.manual_seed(0)
    config = dict(d_model=32, n_layers=2, n_heads=4, max_len=64)
    return TransformerLM(TransformerConfig(**{**config, **kw})).eval()


def test_rmsnorm_and_swiglu_compute_their_equations():
    block = lm(**LLAMA).blocks[0]
    with torch.no_grad():
        block.ln1.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 32)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * block.ln1.weight  # Zhang & Sennrich eq. 4
    torch.testing.assert_close(block.ln1(x), expected)
    assert not hasattr(block.ln1, "bias") or block.ln1.bias is None
    ffn = block.ffn
    w, v = ffn.fc.weight.chunk(2)  # Shazeer 2020 eq. 6: (Swish(xW) * xV) W2
    torch.testing.assert_close(ffn(x), F.silu(x @ w.T) * (x @ v.T) @ ffn.proj.weight.T)
    assert ffn.fc.weight.shape == (2 * 128, 32)


def test_grouped_query_attention_shares_each_key_value_head_within_its_group():
    attn = lm(n_kv_heads=2).blocks[0].attn
    x = torch.randn(2, 6, 32)
    q, k, v = attn.qkv(x).split([32, 16, 16], dim=-1)
    heads = lambda t: t.view(2, 6, -1, 8).transpose(1, 2)  # noqa: E731
    q, k, v = heads(q), heads(k), heads(v)
    assert (q.shape[1], k.shape[1]) == (4, 2)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    outputs = []
    for head in range(4):  # query heads 0, 1 use key/value head 0; 2, 3 use head 1 (Ainslie et al. 2023)
        scores = q[:, head] @ k[:, head // 2].transpose(-1, -2) / math.sqrt(8)
        outputs.append(scores.masked_fill(~causal, -math.inf).softmax(-1) @ v[:, head // 2])
    expected = attn.out(torch.stack(outputs, 1).transpose(1, 2).reshape(2, 6, 32))
    torch.testing.assert_close(attn(x, causal=True), expected, atol=1e-5, rtol=1e-5)


def test_as_many_key_value_heads_as_query_heads_is_the_default_model():
    plain, explicit = lm(), lm(n_kv_heads=4)
    explicit.load_state_dict(plain.state_dict())  # same names and shapes
    ids = torch.randint(0, 256, (2, 12))
    torch.testing.assert_close(plain(ids)[0], explicit(ids)[0])


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_the_kv_cache_decodes_like_the_full_forward_and_stores_only_the_shared_heads(kv_heads):
    model = lm(**{**LLAMA, "n_kv_heads": kv_heads})
    ids = torch.randint(0, 256, (1, 20))
    full = model(ids)[0]
    cache = KVCache(model.config.n_layers, 64)
    steps = [model(ids[:, :8], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(8, 20)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.layers[0].keys.shape[1] == kv_heads  # n_kv_heads / n_heads of multi-head attention's cache
    new = generate(model, ids[0, :5].tolist(), 10, temperature=0.0)
    assert new == generate(model, ids[0, :5].tolist(), 10, temperature=0.0, use_cache=False)


def test_a_llama_style_lm_trains_resumes_and_keeps_its_shape_in_the_checkpoint(tmp_path):
    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    config = dict(model=dict(d_model=32, n_layers=2, n_heads=4, max_len=32, **LLAMA),
                  train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=60, eval_every=60,
                  ckpt_every=30, out=str(tmp_path / "run"), progress=False, lr=3e-3)
    first = train(TrainConfig.from_dict(config))
    assert first["loss"] < 2.5  # from ln(259) = 5.6 (measured 2.00; the default blocks 1.89, RoPE alone 1.77)
    resumed = train(TrainConfig.from_dict({**config, "steps": 70}))
    assert resumed["steps"] == 70 and resumed["loss"] <= first["loss"] + 0.1


def test_bad_values_and_gpt2_export_are_refused_in_one_line():
    for kw, message in ((dict(n_kv_heads=3), "divide n_heads"), (dict(n_kv_heads=-1), "n_kv_heads"),
                        (dict(norm_type="batchnorm"), "norm_type must be one of"), (dict(ffn="relu"), "ffn must")):
        with pytest.raises(KobaError, match=message):
            TransformerConfig(n_heads=4, **kw)
    for kw, message in ((dict(n_kv_heads=2), "grouped-query"), (dict(ffn="swiglu"), "ffn"),
                        (dict(norm_type="rmsnorm"), "norm_type")):
        with pytest.raises(KobaError, match=message):
            check_gpt2_shaped(TransformerConfig(n_heads=4, **kw))
    check_gpt2_shaped(TransformerConfig(n_heads=4, n_kv_heads=4))  # plain multi-head, however it is written


def test_the_text_encoder_takes_them_too_and_padding_does_not_change_a_sentence_vector():
    from koba_ros.nlp.model import TextEncoder
    from koba_ros.nlp.tokenizer import ByteTokenizer

    torch.manual_seed(0)
    encoder = TextEncoder(TransformerConfig(d_model=32, n_layers=2, n_heads=4, **LLAMA)).eval()
    alone, _ = ByteTokenizer().batch(["red cube"])
    ids, mask = ByteTokenizer().batch(["red cube", "the brown fluffy teddy bear"])
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode(alone)[0], encoder.encode(ids, mask)[0], atol=1e-5, rtol=1e-5)
