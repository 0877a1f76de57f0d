"""The transformer toolkit's building blocks: config checks, LM causality, encoder pooling, positions, ALONE, init."""
import math

import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.blocks import Block
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.embeddings import AloneEmbedding, alone_filters, embedding_parameters
from koba_ros.nlp.model import TextEncoder, TransformerLM
from koba_ros.nlp.positions import RotaryPositions, SinusoidalPositions, apply_rope
from koba_ros.nlp.tokenizer import ByteTokenizer
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

SMALL = dict(d_model=32, n_layers=2, n_heads=4, max_len=64)


@pytest.mark.parametrize("bad", [dict(d_model=30, n_heads=4), dict(n_layers=0), dict(norm="mid"),
                                 dict(positions="alibi"), dict(d_model=12, n_heads=4, positions="rope"),
                                 dict(dropout=1.5), dict(embedding="alone", tie_embeddings=True)])
def test_impossible_configs_raise_one_line_errors(bad):
    with pytest.raises(KobaError):
        TransformerConfig(**bad)


def test_unknown_config_key_is_named():
    with pytest.raises(KobaError, match="d_modle"):
        TransformerConfig.from_dict({"d_modle": 3})


@pytest.mark.parametrize("norm", ["pre", "post", "b2t"])
@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "shape", "rope"])
def test_lm_is_causal(norm, positions):
    torch.manual_seed(0)
    lm = TransformerLM(TransformerConfig(norm=norm, positions=positions, **SMALL)).eval()
    ids = torch.randint(0, 256, (2, 12))
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 256
    a, _ = lm(ids)
    b, _ = lm(changed)
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-5)
    assert not torch.allclose(a[:, 8:], b[:, 8:], atol=1e-3)


def test_encoder_vectors_ignore_padding_and_differ_by_text():
    torch.manual_seed(0)
    tok = ByteTokenizer()
    enc = TextEncoder(TransformerConfig(**SMALL)).eval()
    ids, mask = tok.batch(["red cube", "the brown fluffy teddy bear"])
    both = enc.encode(ids, mask)
    alone_ids, alone_mask = tok.batch(["red cube"])
    alone = enc.encode(alone_ids, alone_mask)
    assert both.shape == (2, 32)
    assert torch.allclose(both.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(both[0], alone[0], atol=1e-5)
    assert (both[0] - both[1]).abs().max() > 1e-3


def test_byte_tokenizer_round_trip_and_errors():
    tok = ByteTokenizer()
    text = "put the brown toy in the top right box — ok"
    assert tok.decode(tok.encode(text, bos=True, eos=True)) == text
    with pytest.raises(KobaError):
        tok.batch([])


@pytest.mark.parametrize("norm", ["pre", "post", "b2t"])
def test_blocks_follow_their_equations(norm):
    torch.manual_seed(0)
    block = Block(TransformerConfig(norm=norm, **SMALL))
    x = torch.randn(2, 5, 32)
    if norm == "pre":    # h = x + Attn(LN(x)); y = h + FFN(LN(h))
        h = x + block.attn(block.ln1(x), True)
        expected = h + block.ffn(block.ln2(h))
    else:                # post: h = LN(x + Attn(x)); y = LN(h + FFN(h)), b2t adds the layer input x inside
        h = block.ln1(x + block.attn(x, True))
        expected = block.ln2(h + block.ffn(h) + (x if norm == "b2t" else 0))
    assert torch.allclose(block(x, True), expected, atol=1e-6)


def test_sdpa_attention_equals_explicit_softmax_attention():
    torch.manual_seed(0)
    attn = Block(TransformerConfig(**SMALL)).attn
    x = torch.randn(2, 6, 32)
    key_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    q, k, v = attn.qkv(x).view(2, 6, 3, 4, 8).permute(2, 0, 3, 1, 4)
    for causal in (False, True):
        allowed = key_mask[:, None, None, :] & (torch.ones(6, 6).tril().bool() if causal else True)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~allowed, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 6, 32)
        assert torch.allclose(attn(x, causal, key_mask), attn.out(y), atol=1e-5)


def test_shape_shifts_randomly_in_training_and_fixed_at_inference():
    pos = SinusoidalPositions(16, max_shift=50)
    pos.train()
    a, b = pos(8, 4, "cpu"), pos(8, 4, "cpu")
    assert not torch.allclose(a, b)
    pos.eval()
    assert torch.allclose(pos(1, 4, "cpu"), SinusoidalPositions(16)(1, 4, "cpu", shift=50))
    at_zero = SinusoidalPositions(16, max_shift=50, inference_shift=0).eval()
    assert torch.allclose(at_zero(1, 4, "cpu"), SinusoidalPositions(16)(1, 4, "cpu"))


def test_shape_inference_shift_reaches_the_model_and_is_checked():
    config = TransformerConfig(positions="shape", shape_max_shift=50, shape_inference_shift=0, **SMALL)
    assert TransformerLM(config).positions.inference_shift == 0
    default = TransformerLM(TransformerConfig(positions="shape", shape_max_shift=50, **SMALL))
    assert default.positions.inference_shift == 50  # the authors' K unless set
    with pytest.raises(KobaError, match="shape_inference_shift"):
        TransformerConfig(positions="shape", shape_inference_shift=-1, **SMALL)


def test_rope_scores_depend_only_on_relative_position():
    rope = RotaryPositions(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq, pk):
        cq, sq = rope.cos_sin(1, "cpu", shift=pq)
        ck, sk = rope.cos_sin(1, "cpu", shift=pk)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum()

    assert torch.allclose(score(3, 1), score(10, 8), atol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)


def test_alone_filters_have_the_paper_density_and_few_parameters():
    books, codes = alone_filters(5000, 256, codebooks=8, codes=64, p=0.5)
    emb = AloneEmbedding(5000, 64, alone_dim=256, hidden=128, codebooks=8, codes=64, p=0.5)
    density = emb.filters(torch.arange(5000)).mean().item()
    assert abs(density - 0.5) < 0.02          # each element is 1 with probability 1 - p
    assert embedding_parameters(emb) < 5000 * 64 / 5
    assert emb(torch.tensor([1, 2])).shape == (2, 64)
    assert books.shape == (8, 64, 256) and codes.shape == (5000, 8)


@pytest.mark.parametrize("init", ["gpt2", "small", "xavier"])
def test_a_factorized_table_starts_at_the_full_tables_scale(init):
    """ALONE's same-budget baseline (session 23): two factors drawn at a table's std made embeddings of std 0.001."""
    torch.manual_seed(0)
    shape = dict(vocab_size=4096, d_model=64, n_layers=1, n_heads=2, max_len=8, init=init)
    ids = torch.arange(4096)
    with torch.no_grad():
        full = TransformerLM(TransformerConfig(**shape)).embed(ids).std().item()
        low_rank = TransformerLM(TransformerConfig(**shape, embedding="factorized", embed_rank=8)).embed(ids).std()
    assert abs(low_rank.item() - full) < 0.1 * full


def test_small_init_matches_spike_no_more_sigmas():
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=256, n_layers=8, n_heads=4, init="small")
    lm = TransformerLM(cfg)
    sigma = math.sqrt(2 / (5 * 256))
    assert abs(lm.blocks[0].attn.qkv.weight.std().item() - sigma) < 0.05 * sigma
    assert abs(lm.blocks[0].ffn.proj.weight.std().item() - sigma / math.sqrt(16)) < 0.05 * sigma / 4
    assert abs(lm.embed.weight.std().item() - sigma) < 0.05 * sigma


def block_input(model, ids) -> torch.Tensor:
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    model(ids)
    return seen[0]


def test_spike_no_more_fixes_make_the_shortcut_large():
    ids = torch.randint(0, 256, (2, 16))
    base = dict(d_model=64, n_layers=2, n_heads=4, positions="none", init="small")
    torch.manual_seed(0)
    plain = TransformerLM(TransformerConfig(**base))
    torch.manual_seed(0)
    scaled = TransformerLM(TransformerConfig(embed_scale=True, **base))
    normed = TransformerLM(TransformerConfig(embed_norm=True, **base))
    assert torch.allclose(block_input(scaled, ids), block_input(plain, ids) * 8.0, atol=1e-6)  # x sqrt(64)
    x = block_input(normed, ids)
    assert torch.allclose(x.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(x.std(-1, unbiased=False), torch.ones(2, 16), atol=1e-2)  # LayerNorm eps: 0.999
    assert block_input(plain, ids).std() < 0.1  # the small init's tiny embeddings: sqrt(2/(5*64)) = 0.079


@pytest.mark.parametrize("init", ["gpt2", "small", "xavier"])
def test_alone_is_the_bias_free_equation_with_xavier_ffn_under_any_init(init):
    torch.manual_seed(0)
    lm = TransformerLM(TransformerConfig(embedding="alone", alone_hidden=96, init=init, **SMALL))
    emb, ids = lm.embed, torch.tensor([3, 7, 7])
    assert emb.w1.bias is None and emb.w2.bias is None
    expected = emb.w2.weight @ torch.relu(emb.w1.weight @ (emb.filters(ids) * emb.shared).T)
    assert torch.allclose(emb(ids), expected.T, atol=1e-6)
    assert torch.equal(emb(ids)[1], emb(ids)[2]) and not torch.allclose(emb(ids)[0], emb(ids)[1])
    for w in (emb.w1.weight, emb.w2.weight):  # Xavier-uniform: std sqrt(2 / (fan_in + fan_out))
        assert abs(w.std().item() - math.sqrt(2 / sum(w.shape))) < 0.1 * math.sqrt(2 / sum(w.shape))
