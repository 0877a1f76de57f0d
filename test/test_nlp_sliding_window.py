"""Sliding-window attention (`attention_window`; Beltagy et al. 2020 §3.1, Mistral 7B's causal form): what each
token sees, the KV cache beyond the window, the encoder's band, training, and Mistral 7B v0.1's kind of model in
and out of transformers with the same logits and the same greedy continuation."""
import json

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TextEncoder, TransformerLM
from koba_ros.nlp.sampling import generate
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

LLAMA = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False, n_kv_heads=2)


def lm(window: int, **kw) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=4, max_len=64, attention_window=window,
                                           **kw)).eval()


def reach(model, ids, changed: int = 0) -> list[int]:
    """The positions whose logits change when token `changed` does."""
    other = ids.clone()
    other[:, changed] = (other[:, changed] + 1) % 256
    with torch.no_grad():
        moved = (model(other)[0] - model(ids)[0]).abs().amax(dim=(0, 2))
    return [i for i, d in enumerate(moved.tolist()) if d > 1e-6]


def test_each_layer_sees_the_last_w_tokens_so_n_layers_see_n_w_minus_one_back():
    ids = torch.randint(0, 256, (2, 30), generator=torch.Generator().manual_seed(1))
    assert reach(lm(5), ids) == list(range(9))         # 2 layers x (5 - 1) positions further each
    assert reach(lm(0), ids) == list(range(30))        # full attention: every later token
    encoder = TextEncoder(TransformerConfig(d_model=32, n_layers=1, n_heads=4, attention_window=3))
    other = ids.clone()
    other[:, 10] += 1
    with torch.no_grad():
        moved = (encoder(other) - encoder(ids)).abs().amax(dim=(0, 2))
    assert [i for i, d in enumerate(moved.tolist()) if d > 1e-6] == [8, 9, 10, 11, 12]  # fewer than 3 away


@pytest.mark.parametrize("kw", [{}, LLAMA, dict(LLAMA, d_head=12, qk_norm=True)])
@pytest.mark.parametrize("window_cache", [False, True])
@pytest.mark.parametrize("prompt", [9, 2])
def test_the_kv_cache_decodes_past_the_window_like_the_full_forward(kw, window_cache, prompt):
    """A cache that keeps every key, and one that keeps only the last window - 1 (all a new token may see); a
    prompt longer than the window, and one shorter (a window's cache dropped stored keys until it filled up)."""
    model = lm(6, **kw)
    ids = torch.randint(0, 256, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)[0]
        cache = KVCache(2, 30, window=6 if window_cache else 0)
        parts = [model(ids[:, :prompt], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0]
                                                            for t in range(prompt, 20)]
        parts.append(model(ids[:, 20:], cache=cache)[0])  # a chunk over a past longer than the window
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.layers[0].keys.shape[2] == (5 if window_cache else 30)  # memory bounded by the window


def test_bad_windows_are_one_line_and_a_windowed_lm_trains(tmp_path):
    for value in (-1, 2.5, True, "8"):
        with pytest.raises(KobaError, match="attention_window"):
            TransformerConfig.from_dict({"attention_window": value})
    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    config = dict(model=dict(d_model=32, n_layers=2, n_heads=4, max_len=32, attention_window=8, **LLAMA),
                  train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=60, eval_every=60,
                  ckpt_every=60, out=str(tmp_path / "run"), progress=False, lr=3e-3)
    assert train(TrainConfig.from_dict(config))["loss"] < 2.5  # from ln(259) = 5.6, as the Llama-style blocks


def mistral(window: int, seed: int = 0):
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(seed)
    return MistralForCausalLM(MistralConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                            sliding_window=window)).eval()


def test_a_mistral_with_a_sliding_window_runs_and_generates_the_same_here_and_goes_back_out():
    hf = mistral(8)
    model = hf_llama.from_hf(hf)
    assert model.config.attention_window == 8
    ids = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        theirs = hf(input_ids=ids).logits
        assert (model(ids)[0] - theirs).abs().max() < 1e-5
        full = TransformerLM(TransformerConfig(**{**model.config.to_dict(), "attention_window": 0}))
        full.load_state_dict(model.state_dict())
        assert (full.eval()(ids)[0] - theirs).abs().max() > 1e-3  # the window matters at 40 tokens
        back = hf_llama.to_hf(model)
        assert type(back).__name__ == "MistralForCausalLM" and back.config.sliding_window == 8
        assert (back(input_ids=ids).logits - theirs).abs().max() < 1e-5
        prompt = ids[0, :12]
        greedy = hf.generate(prompt[None], max_new_tokens=20, do_sample=False, pad_token_id=0)[0, 12:].tolist()
    assert generate(model, prompt.tolist(), 20, temperature=0.0) == greedy  # decoding far past the window


def test_koba_lm_imports_and_exports_a_windowed_mistral_and_refuses_a_window_with_biases(tmp_path, capsys):
    mistral(16, seed=1).save_pretrained(tmp_path / "mistral")
    assert main(["lm", "import", "--hf", str(tmp_path / "mistral"), "--out", str(tmp_path / "in"), "--tokenizer",
                 "byte", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_logit_difference"] < 1e-5
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "mistral"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["sliding_window"] == 16
    with pytest.raises(KobaError, match="sliding-window attention is Mistral's"):
        hf_llama.to_hf(lm(8, **{**LLAMA, "bias": True}))


def test_gpt2_export_refuses_a_window_the_logit_check_could_have_missed():
    """A 64-token window passed the export's 64-token logit check, and GPT-2 ignored it past there."""
    from koba_ros.nlp.hf_gpt2 import check_gpt2_shaped, largest_logit_difference, to_hf

    with pytest.raises(KobaError, match="sliding window"):
        check_gpt2_shaped(TransformerConfig(n_heads=4, attention_window=64))
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=4, max_len=128, attention_window=40))
    full = TransformerLM(TransformerConfig(**{**model.config.to_dict(), "attention_window": 0}))
    full.load_state_dict(model.state_dict())
    # the check probes past the window: the window-free GPT-2 of the same weights differs there
    assert largest_logit_difference(model, to_hf(full)) > 1e-3
