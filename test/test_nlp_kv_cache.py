"""KV cache (kv_cache.py): decoding token by token over stored keys and values computes what the full forward pass
computes, for every layer-norm placement, position scheme and embedding; sampling with it draws the same tokens with
far fewer tokens through the model; misuse is a one-line error."""
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TextEncoder, TransformerLM
from koba_ros.nlp.sampling import generate
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

VARIANTS = [
    {},
    {"norm": "post"},
    {"norm": "b2t"},
    {"positions": "sinusoidal"},
    {"positions": "shape", "shape_max_shift": 7},
    {"positions": "rope"},
    {"positions": "none"},
    {"embedding": "alone", "embed_scale": True},
    {"embed_norm": True, "init": "small", "tie_embeddings": True},
]


def random_lm(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(d_model=32, n_layers=3, n_heads=4, max_len=16, **overrides)).eval()


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_prefill_then_one_token_then_a_chunk_equal_the_full_forward(overrides):
    model = random_lm(**overrides)
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)[0]
        cache = KVCache(model.config.n_layers, model.config.max_len)
        parts = [model(ids[:, :5], cache=cache)[0]]                      # prefill
        parts += [model(ids[:, t:t + 1], cache=cache)[0] for t in (5, 6)]  # one token at a time
        parts.append(model(ids[:, 7:], cache=cache)[0])                   # five more at once, over a past
    assert cache.length == 12
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5), (torch.cat(parts, dim=1) - full).abs().max()


def test_a_chunk_over_a_past_is_causal_within_itself():
    # Without the mask the first query of the chunk would see the chunk's later tokens: changing them would change it.
    model = random_lm()
    ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(2))
    other = ids.clone()
    other[0, 8:] = (other[0, 8:] + 1) % 256
    with torch.no_grad():
        outs = []
        for x in (ids, other):
            cache = KVCache(model.config.n_layers, 16)
            model(x[:, :6], cache=cache)
            outs.append(model(x[:, 6:], cache=cache)[0])
    assert torch.equal(outs[0][0, :2], outs[1][0, :2]) and not torch.allclose(outs[0][0, 2:], outs[1][0, 2:])


@pytest.mark.parametrize("overrides", [{}, {"positions": "rope", "norm": "b2t"}], ids=["learned", "rope_b2t"])
def test_sampling_with_the_cache_draws_the_same_tokens_as_without(overrides):
    model = random_lm(**overrides)
    prompt = [104, 105, 32]
    # 30 new tokens with max_len 16: the window slides after 13, where the cache must be dropped.
    assert generate(model, prompt, 30, temperature=0) == generate(model, prompt, 30, temperature=0, use_cache=False)
    seeded = [generate(model, prompt, 30, temperature=1.3, top_k=20, generator=torch.Generator().manual_seed(5),
                       use_cache=cached) for cached in (True, False)]
    assert seeded[0] == seeded[1]
    long_prompt = list(range(40, 60))  # longer than max_len: no cache from the start
    assert generate(model, long_prompt, 5, temperature=0) == generate(model, long_prompt, 5, temperature=0,
                                                                     use_cache=False)


def test_the_cache_feeds_each_token_through_the_model_once_until_the_window_slides():
    model = random_lm()
    fed = []
    model.embed.register_forward_hook(lambda module, inputs, output: fed.append(inputs[0].shape[1]))
    generate(model, [104, 105, 32], 10, temperature=0)
    assert fed == [3] + [1] * 9
    fed.clear()
    generate(model, [104, 105, 32], 10, temperature=0, use_cache=False)
    assert fed == list(range(3, 13))
    fed.clear()
    generate(model, [104, 105, 32], 16, temperature=0)  # passes 1-14 read contexts of 3-16 tokens; then it slides
    assert fed == [3] + [1] * 13 + [16] * 2


def test_the_cache_holds_what_the_call_can_feed_not_max_len(monkeypatch):
    """An imported Llama 3.2 has max_len 131072: a cache of that many tokens would take gigabytes for one prompt. It
    is sized to the prompt and the tokens asked for (all but the last drawn one are fed), and decodes the same."""
    from koba_ros.nlp import sampling

    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=4, max_len=131072,
                                            positions="rope")).eval()
    sizes, real = [], sampling.KVCache

    def recorded(n_layers, capacity, window=0):
        sizes.append(capacity)
        return real(n_layers, capacity, window)

    monkeypatch.setattr(sampling, "KVCache", recorded)
    cached = generate(model, [104, 105, 32], 10, temperature=0)
    assert sizes == [13] and cached == generate(model, [104, 105, 32], 10, temperature=0, use_cache=False)


def test_misuse_is_a_one_line_error():
    model = random_lm()
    cache = KVCache(model.config.n_layers, 8)
    with torch.no_grad():
        model(torch.zeros(1, 6, dtype=torch.long), cache=cache)
        with pytest.raises(KobaError, match="KV cache holds 8 tokens; 6 stored"):
            model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
        with pytest.raises(KobaError, match="batch 1, got batch 2"):
            model(torch.zeros(2, 1, dtype=torch.long), cache=cache)
        big = KVCache(model.config.n_layers, 40)
        with pytest.raises(KobaError, match="longer than the learned positions"):
            model(torch.zeros(1, 17, dtype=torch.long), cache=big)
        encoder = TextEncoder(TransformerConfig(d_model=32, n_layers=1, n_heads=2)).eval()
        with pytest.raises(KobaError, match="causal"):
            encoder.hidden(torch.zeros(1, 3, dtype=torch.long), cache=KVCache(1, 8))
    with pytest.raises(KobaError, match="at least|>= 1"):
        KVCache(0, 8)
