"""Session 28's review of the model core: key masks of any 0/1 dtype, activation checkpointing with a KV cache, a
cache that does not fit the model, first/last pooling with left padding, RoPE scaling without RoPE, SHAPE's
inference offset with no training shift, sampling's impossible requests, llama3's non-finite factors."""
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.blocks import Block
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TextEncoder, TransformerLM
from koba_ros.nlp.positions import SinusoidalPositions, sinusoid
from koba_ros.nlp.sampling import generate, next_token
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

TINY = dict(vocab_size=50, d_model=16, n_layers=2, n_heads=2, max_len=16, pad_id=0)


def refused(match: str, call, *args, **kwargs) -> None:
    with pytest.raises(KobaError, match=match) as caught:
        call(*args, **kwargs)
    assert "\n" not in str(caught.value)


@torch.no_grad()
def test_the_encoder_takes_0_1_masks_of_any_dtype_as_bool_and_refuses_other_masks():
    torch.manual_seed(0)
    encoder = TextEncoder(TransformerConfig(**TINY)).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 13]])
    mask = ids != 0
    mask[1] = True
    reference = encoder.encode(ids, mask)
    for same in (mask.long(), mask.int(), mask.float()):  # int64: a Hugging Face tokenizer's attention_mask
        torch.testing.assert_close(encoder.encode(ids, same), reference)
        torch.testing.assert_close(encoder(ids, same), encoder(ids, mask))
    for bad in (mask.float() * 2, mask.float() - 0.5, torch.full_like(mask, float("nan"), dtype=torch.float)):
        refused("only 0 and 1", encoder.encode, ids, bad)
        refused("only 0 and 1", encoder, ids, bad)
    refused(r"\[batch, time\]", encoder.encode, ids, mask[:, :4])
    refused(r"\[batch, time\]", encoder, ids, mask[0])
    attention = Block(TransformerConfig(**TINY)).attn  # a float mask would be added to the logits as a bias
    refused("must be bool", attention, torch.randn(2, 6, 16), False, mask.float())


def test_activation_checkpointing_with_a_kv_cache_stores_the_keys_and_decodes_as_the_full_forward():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**TINY, positions="rope")).train()  # dropout 0: deterministic
    ids = torch.randint(0, 50, (1, 6))
    full = model(ids)[0][:, -1]
    model.checkpoint_blocks = True
    cache = KVCache(2, 16)
    model(ids[:, :5], cache=cache)
    assert cache.layers[0].keys is not None
    torch.testing.assert_close(model(ids[:, 5:], cache=cache)[0][:, -1], full, atol=1e-5, rtol=1e-5)
    checkpointed, _ = model(ids, ids)  # without a cache it still recomputes, and still learns
    checkpointed.sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None


@torch.no_grad()
def test_a_kv_cache_that_does_not_fit_the_model_is_refused_in_one_line():
    full = TransformerLM(TransformerConfig(**TINY)).eval()
    windowed = TransformerLM(TransformerConfig(**TINY, attention_window=4)).eval()
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(0))
    refused("KV cache of 1 layers", full, ids, cache=KVCache(1, 16))
    refused("does not fit", full, ids, cache=KVCache(3, 16))
    refused("windows \\[3, 3\\] does not fit", full, ids, cache=KVCache(2, 16, window=3))  # it would drop keys
    refused("does not fit", windowed, ids, cache=KVCache(2, 16, window=3))
    reference = windowed(ids)[0][:, -1]
    for window in (0, 4, 6):  # a cache that keeps all the window needs, or more, decodes as the full forward
        cache = KVCache(2, 16, window=window)
        windowed(ids[:, :5], cache=cache)
        for t in range(5, 8):
            logits = windowed(ids[:, t:t + 1], cache=cache)[0][:, -1]
        torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pool", ["first", "last"])
@torch.no_grad()
def test_first_and_last_pooling_find_the_real_tokens_on_either_side_of_the_padding(pool):
    torch.manual_seed(0)  # RoPE: a text's states do not depend on where its padding puts it
    encoder = TextEncoder(TransformerConfig(**TINY, pool=pool, positions="rope")).eval()
    ids = torch.tensor([[0, 0, 5, 6, 7], [5, 6, 7, 0, 0], [0, 5, 6, 7, 0]])
    vectors = encoder.encode(ids, ids != 0)
    alone = encoder.encode(ids[:1, 2:])
    torch.testing.assert_close(vectors, alone.expand(3, -1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "shape", "none"])
def test_rope_scaling_without_rope_positions_is_refused(positions):
    refused("needs positions: rope", TransformerConfig, **TINY, positions=positions, rope_scaling="linear",
            rope_factor=4.0)
    TransformerConfig(**TINY, positions=positions)  # rope_scaling none: fine


def test_shape_inference_offset_applies_with_no_random_shift_in_training():
    positions = SinusoidalPositions(16, max_shift=0, inference_shift=50)
    torch.testing.assert_close(positions.eval()(2, 6, "cpu"), sinusoid(torch.arange(50, 56)[None], 16))
    torch.testing.assert_close(positions.train()(2, 6, "cpu"), sinusoid(torch.arange(6)[None], 16))
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**TINY, positions="shape", shape_max_shift=0,
                                            shape_inference_shift=50)).eval()
    ids = torch.randint(0, 50, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[0], model(ids, shift=50)[0])


def test_sampling_refuses_an_overflowing_temperature_an_empty_choice_and_ids_outside_the_vocabulary():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**TINY))
    logits = torch.tensor([1.0, 3.0, 2.0, -float("inf")])
    for temperature in (1e39, 1e308):  # float32's inf: -inf / inf is NaN in the draw
        refused("float32's largest", next_token, logits, temperature)
        refused("float32's largest", generate, model, [1, 2], 2, temperature, banned=(0,))
    assert next_token(logits, 3e38, generator=torch.Generator().manual_seed(0)) in (0, 1, 2)
    for temperature in (0.0, 1.0):
        refused("every id is banned or disallowed", next_token, torch.full((4,), -float("inf")), temperature)
        refused("every id is banned or disallowed", generate, model, [1, 2], 2, temperature, allowed=0)
        refused("every id is banned or disallowed", generate, model, [1, 2], 2, temperature, allowed=2,
                banned=(0, 1))
    for prompt in ([1, 50], [1, -1]):
        refused(r"prompt ids \[-?\d+\] are outside the model's vocabulary of 50", generate, model, prompt, 2)
    for banned in ((50,), (-1,)):  # -1 would ban the last id
        refused("banned ids .* outside", generate, model, [1, 2], 2, banned=banned)
    assert len(generate(model, [1, 49], 2, banned=(0, 49), generator=torch.Generator().manual_seed(0))) == 2


@pytest.mark.parametrize("bad", [dict(rope_factor=float("inf")), dict(rope_high_freq_factor=float("inf"))])
def test_llama3_rope_scaling_needs_finite_factors(bad):
    refused("llama3 RoPE scaling needs a finite rope_factor", TransformerConfig, **TINY, positions="rope",
            rope_scaling="llama3", **bad)
    TransformerConfig(**TINY, positions="rope", rope_scaling="llama3", rope_factor=8.0)


def test_generate_gives_every_module_its_training_mode_back_on_return_and_on_a_refusal():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**TINY, dropout=0.1)).train()
    model.blocks[0].eval()  # a caller's frozen part stays as it was, not switched to train with the rest
    before = [m.training for m in model.modules()]
    seen = []
    generate(model, [1, 2], 2, on_token=lambda new: seen.append(model.training),
             generator=torch.Generator().manual_seed(0))
    assert seen == [False, False]  # sampled without dropout
    assert [m.training for m in model.modules()] == before
    refused("every id is banned or disallowed", generate, model, [1, 2], 2, allowed=0)  # raises inside the loop
    assert [m.training for m in model.modules()] == before


@pytest.mark.parametrize("positions", ["sinusoidal", "rope"])
def test_hidden_refuses_float_ids_and_a_shift_that_is_not_an_int_or_one_per_sequence(positions):
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**TINY, positions=positions)).eval()
    ids = torch.randint(0, 50, (2, 5))
    for bad in (ids.float(), ids.bool(), ids.double()):
        refused("token ids must be an integer tensor", model, bad)
    refused(r"token ids must be a \[batch, time\] tensor", model.hidden, ids.tolist())
    for shift in (torch.tensor([1, 2, 3]), torch.tensor([1]), torch.zeros(2, 2, dtype=torch.long)):
        refused(r"shift must be an int or a \[batch\] integer tensor, got shape .* for a batch of 2", model, ids,
                shift=shift)
    for shift in (torch.tensor([1.0, 2.0]), torch.tensor(1.5), 1.5, True):
        refused(r"shift must be an int or a \[batch\] integer tensor", model, ids, shift=shift)
    with torch.no_grad():
        plain = model(ids)[0]
        torch.testing.assert_close(model(ids.to(torch.int16))[0], plain)  # narrow integer ids are ids too
        torch.testing.assert_close(model(ids, shift=torch.tensor([3, 3]))[0], model(ids, shift=3)[0])
        torch.testing.assert_close(model(ids, shift=torch.tensor(3))[0], model(ids, shift=3)[0])


@pytest.mark.parametrize("bad, why", [
    (dict(d_model=32, rope_original_max_len=1), "too short"),           # head 16: every pair kept, none divided
    (dict(rope_original_max_len=4, rope_truncate=False), "too short"),  # unrounded: needs 2π beta_slow = 6.3
    (dict(d_model=64, rope_original_max_len=3), "too short"),          # head 32: from 4 up it is defined
    (dict(rope_theta=2.0, rope_original_max_len=8192), "too long for rope_theta")])
def test_yarn_refuses_an_original_context_its_frequency_ramp_runs_backwards_in(bad, why):
    refused(f"yarn RoPE scaling's frequency ramp is undefined: rope_original_max_len .* is {why}",
            TransformerConfig, **{**TINY, "positions": "rope", "rope_scaling": "yarn", "rope_factor": 4.0, **bad})


def test_yarn_with_an_original_context_of_one_token_is_odd_but_defined_where_its_ramp_does_not_cross():
    """Head 8 (TINY): rounded outwards, the ramp's ends meet at pair 0, as they do for contexts up to 2π * 1.6: pair
    0 kept, the rest divided, the same frequencies as rope_original_max_len 7 and as transformers computes."""
    yarn = dict(**TINY, positions="rope", rope_scaling="yarn", rope_factor=4.0)
    one = TransformerLM(TransformerConfig(**yarn, rope_original_max_len=1)).positions.inv_freq
    seven = TransformerLM(TransformerConfig(**yarn, rope_original_max_len=7)).positions.inv_freq
    torch.testing.assert_close(one, seven, atol=0, rtol=0)
    TransformerConfig(**yarn, rope_original_max_len=7, rope_truncate=False)  # 7 >= 2π: defined unrounded too


@pytest.mark.parametrize("positions", ["learned", "rope", "none"])
def test_shape_offsets_are_refused_with_positions_that_have_no_sinusoid(positions):
    for shape in (dict(shape_inference_shift=5), dict(shape_inference_shift=0), dict(shape_max_shift=20),
                  dict(shape_max_shift=0, shape_inference_shift=50)):
        refused(f"shape_.* SHAPE's position offsets?, which positions: {positions} would ignore; use positions: "
                f"shape", TransformerConfig, **TINY, positions=positions, **shape)
    saved = TransformerConfig(**TINY, positions=positions).to_dict()  # every saved config holds the defaults
    assert TransformerConfig.from_dict(saved).shape_max_shift == 100
    for allowed in ("shape", "sinusoidal"):  # SHAPE's module (sinusoidal: test_nlp_position_shift's control)
        TransformerConfig(**TINY, positions=allowed, shape_max_shift=20, shape_inference_shift=5)
