"""Model expansion is function preserving (loss within 1e-4 right after growth) and the grown model trains on."""
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.expansion import expand, lr_for_size
from koba_ros.nlp.model import TextEncoder, TransformerLM
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.nlp_weights import away_from_init


def trained_small(**kw) -> TransformerLM:
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, max_len=64, **kw))
    away_from_init(model, 0.05)  # move away from the init so zero biases and unit gains are not a special case
    return model


@pytest.mark.parametrize("kw", [dict(), dict(positions="rope"), dict(embedding="alone"),
                                dict(init="small", embed_scale=True, embed_norm=True),
                                dict(embedding="factorized", embed_rank=8),
                                dict(norm_type="rmsnorm", ffn="swiglu", n_kv_heads=1, positions="rope", bias=False),
                                dict(norm_type="rmsnorm", ffn="swiglu", n_kv_heads=2, positions="rope", bias=False,
                                     qkv_bias=True, rope_theta=1e6, norm_eps=1e-6)])  # Qwen2.5's kind
@pytest.mark.parametrize("width, depth", [(2, 4), (1, 5), (3, 2)])
def test_expansion_preserves_the_loss(kw, width, depth):
    model = trained_small(**kw)
    ids = torch.randint(0, 256, (4, 48))
    before = model(ids[:, :-1], ids[:, 1:])[1].item()
    grown = expand(model, width, depth)
    after = grown(ids[:, :-1], ids[:, 1:])[1].item()
    assert grown.config.d_model == 32 * width and grown.config.n_layers == depth
    assert grown.num_parameters() > model.num_parameters()
    assert abs(after - before) < 1e-4


def test_width_copies_break_symmetry_and_the_grown_model_trains():
    model = trained_small()
    grown = expand(model, 2, 4)
    ids = torch.randint(0, 256, (8, 33))
    opt = torch.optim.AdamW(grown.parameters(), lr=lr_for_size(3e-3, 32, 64))
    losses = []
    for _ in range(15):
        loss = grown(ids[:, :-1], ids[:, 1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
    fc = grown.blocks[0].ffn.fc.weight  # the two copies of each hidden unit have drifted apart
    assert (fc[:128] - fc[128:]).abs().max() > 1e-3
    assert grown.blocks[1].attn.out.weight.abs().max() > 0  # the new identity block learned


def test_expansion_works_for_the_encoder_too():
    torch.manual_seed(0)
    enc = TextEncoder(TransformerConfig(d_model=32, n_layers=2, n_heads=2)).eval()
    ids = torch.randint(0, 256, (2, 10))
    assert torch.allclose(enc.encode(ids, normalize=False).repeat(1, 2),
                          expand(enc, 2, 3).eval().encode(ids, normalize=False), atol=1e-5)


@pytest.mark.parametrize("kw, width, depth, message", [
    (dict(norm="post"), 1, 3, "Pre-LN"), (dict(positions="sinusoidal"), 2, 2, "sinusoidal"),
    (dict(tie_embeddings=True), 2, 2, "untied"), (dict(), 0, 2, "width factor")])
def test_impossible_expansions_are_refused(kw, width, depth, message):
    with pytest.raises(KobaError, match=message):
        expand(TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, **kw)), width, depth)
