"""GEGLU (Shazeer 2020) against its formula, and Gemma (1), a Llama with GEGLU, embeddings scaled by sqrt(d) and
heads of 256, in and out of transformers with the same logits and greedy continuation; expansion and training."""
import json

import pytest
import torch
import torch.nn.functional as F

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.expansion import expand
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.sampling import generate
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.nlp_weights import away_from_init

GEMMA = dict(norm_type="rmsnorm", ffn="geglu", positions="rope", bias=False, embed_scale=True, tie_embeddings=True)


def test_geglu_is_gelu_of_one_half_times_the_other():
    torch.manual_seed(0)
    ffn = TransformerLM(TransformerConfig(d_model=16, n_layers=1, n_heads=2, d_ff=24, **GEMMA)).blocks[0].ffn
    x = torch.randn(3, 5, 16)
    w, v = ffn.fc.weight.chunk(2)
    expected = (F.gelu(x @ w.T, approximate="tanh") * (x @ v.T)) @ ffn.proj.weight.T
    torch.testing.assert_close(ffn(x), expected)


def gemma(seed: int = 0):
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(seed)
    hf = GemmaForCausalLM(GemmaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                                      max_position_embeddings=64)).eval()
    with torch.no_grad():  # transformers starts Gemma's norm weights (stored as gain - 1) at zero
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(-0.5, 0.5)
    return hf


def test_a_gemma_from_transformers_runs_and_generates_the_same_here_and_goes_back_out():
    hf = gemma()
    model = hf_llama.from_hf(hf)
    config = model.config
    assert (config.ffn, config.embed_scale, config.d_head, config.tie_embeddings) == ("geglu", True, 16, True)
    ids = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(input_ids=ids).logits
        assert (model(ids)[0] - theirs).abs().max() < 1e-5
        back = hf_llama.to_hf(model)
        assert type(back).__name__ == "GemmaForCausalLM"
        for name, tensor in hf.state_dict().items():  # norm weights go through 1 + w and back: rounding only
            torch.testing.assert_close(back.state_dict()[name], tensor, atol=1e-6, rtol=0, msg=name)
        prompt = ids[0, :10]
        greedy = hf.generate(prompt[None], max_new_tokens=16, do_sample=False, pad_token_id=0)[0, 10:].tolist()
    assert generate(model, prompt.tolist(), 16, temperature=0.0) == greedy


def test_koba_lm_imports_and_exports_a_gemma_and_refuses_one_with_biases(tmp_path, capsys):
    gemma(1).save_pretrained(tmp_path / "gemma")
    assert main(["lm", "import", "--hf", str(tmp_path / "gemma"), "--out", str(tmp_path / "in"), "--tokenizer",
                 "byte", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_logit_difference"] < 1e-5
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "gemma"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "gemma"
    with pytest.raises(KobaError, match="a Gemma has no biases"):
        hf_llama.to_hf(TransformerLM(TransformerConfig(d_model=32, n_heads=4, **{**GEMMA, "bias": True})))


def test_a_gemma_shaped_model_grows_with_its_function_and_trains(tmp_path):
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, max_len=64, d_head=24,
                                            **{**GEMMA, "tie_embeddings": False}))
    away_from_init(model, 0.05)
    ids = torch.randint(0, 256, (4, 40))
    before = model(ids[:, :-1], ids[:, 1:])[1].item()
    assert abs(expand(model, 2, 3)(ids[:, :-1], ids[:, 1:])[1].item() - before) < 1e-4
    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    config = dict(model=dict(d_model=32, n_layers=2, n_heads=4, max_len=32, **GEMMA),
                  train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=60, eval_every=60,
                  ckpt_every=60, out=str(tmp_path / "run"), progress=False, lr=3e-3)
    assert train(TrainConfig.from_dict(config))["loss"] < 2.5  # from ln(259) = 5.6, as the Llama-style blocks
