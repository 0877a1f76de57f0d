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
                                     qkv_bias=True, rope_theta=1e6, norm_eps=1e-6),  # Qwen2.5's kind
                                dict(norm="sandwich")])
@pytest.mark.parametrize("width, depth", [(2, 4), (1, 5), (3, 2), (3, 5)])  # (3, 5): three copies in new blocks
def test_expansion_preserves_the_loss(kw, width, depth):
    model = trained_small(**kw)
    ids = torch.randint(0, 256, (4, 48))
    before = model(ids[:, :-1], ids[:, 1:])[1].item()
    grown = expand(model, width, depth)
    after = grown(ids[:, :-1], ids[:, 1:])[1].item()
    assert grown.config.d_model == 32 * width and grown.config.n_layers == depth
    assert grown.num_parameters() > model.num_parameters()
    assert abs(after - before) < 1e-4


def copy_gaps(grown, d: int = 32, d_ff: int = 128) -> list[tuple[float, float]]:
    """Per block, how differently the two copies of each FFN hidden unit and of each attention head (their q, k and
    v rows) act on a duplicated input [x, x]: a row's two column blocks summed, then copy 1 minus copy 2. The raw
    weights differ by the growth noise from the start; this is 0 at growth and grows only once training separates
    the copies."""
    gaps = []
    for block in grown.blocks:
        fc, qkv = block.ffn.fc.weight, block.attn.qkv.weight
        unit = fc[:, :d] + fc[:, d:]
        head = qkv[:, :d] + qkv[:, d:]  # rows q, k, v (2d each); heads 2 and 3 of each copy heads 0 and 1
        gaps.append(((unit[:d_ff] - unit[d_ff:]).abs().max().item(),
                     max((head[s:s + d] - head[s + d:s + 2 * d]).abs().max().item() for s in (0, 2 * d, 4 * d))))
    return gaps


def test_width_copies_break_symmetry_and_the_grown_model_trains():
    model = trained_small()
    grown = expand(model, 2, 4)  # blocks 1 and 3 are new identity blocks
    assert max(max(gap) for gap in copy_gaps(grown)) < 1e-6  # the copies compute the same thing at growth
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
    # ...and training has separated them in every block, new ones included (about 1e-2 to 7e-2 here; a new block
    # with exactly zero output projections keeps its copies together: 1e-4 to 3e-4)
    for i, (unit, head) in enumerate(copy_gaps(grown)):
        assert unit > 3e-3 and head > 3e-3, (i, unit, head)
    assert grown.blocks[1].attn.out.weight.abs().max() > 0  # the new identity block learned


@pytest.mark.parametrize("norm", ["pre", "sandwich"])
def test_new_blocks_are_the_identity_with_output_projections_that_tell_the_copies_apart(norm):
    model = trained_small(norm=norm)
    grown = expand(model, 2, 3).eval()
    new = grown.blocks[1]  # a copy of block 0 that must compute x -> x
    x = torch.randn(2, 5, 32).repeat(1, 1, 2)  # a widened model's hidden states are duplicated
    torch.testing.assert_close(new(x, True), x, atol=1e-6, rtol=0)
    out = new.attn.out.weight
    if norm == "pre":  # the zero-sum column blocks: nonzero, each copy of a head with a column block of its own
        assert out.abs().min() > 0 and (out[:, :32] + out[:, 32:]).abs().max() < 1e-7
        assert (new.ffn.proj.weight[:, :128] + new.ffn.proj.weight[:, 128:]).abs().max() < 1e-7
        assert new.attn.out.bias.abs().max() == 0 and new.ffn.proj.bias.abs().max() == 0
    else:  # sandwich: the output norms' gains are zero and the projections keep their widened copies
        assert new.attn_out_norm.weight.abs().max() == 0 and out.abs().min() > 0
    if norm == "pre":  # deeper only: no copies to tell apart, the projections are exactly zero
        assert expand(model, 1, 3).blocks[1].attn.out.weight.abs().max() == 0


def test_expansion_works_for_the_encoder_too():
    torch.manual_seed(0)
    enc = TextEncoder(TransformerConfig(d_model=32, n_layers=2, n_heads=2)).eval()
    ids = torch.randint(0, 256, (2, 10))
    assert torch.allclose(enc.encode(ids, normalize=False).repeat(1, 2),
                          expand(enc, 2, 3).eval().encode(ids, normalize=False), atol=1e-5)


@pytest.mark.parametrize("kw, width, depth, message", [
    (dict(norm="post"), 1, 3, "Pre-LN"), (dict(positions="sinusoidal"), 2, 2, "sinusoidal"),
    (dict(tie_embeddings=True), 2, 2, "untied"), (dict(), 0, 2, "width factor"),
    (dict(turnover_p=0.5), 1, 3, "turn-over"), (dict(turnover_p=0.5), 2, 2, "turn-over")])
def test_impossible_expansions_are_refused(kw, width, depth, message):
    with pytest.raises(KobaError, match=message):
        expand(TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, **kw)), width, depth)
