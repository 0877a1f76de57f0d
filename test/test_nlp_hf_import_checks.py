"""`koba lm import` against what real checkpoints hold (found by a review): a hub name is read as the model it is, not
as GPT-2; a tensor the files lack is refused instead of filled with random numbers; a head kept apart from the
embeddings whatever the config says stays apart; a model's own tokenizer.json wins over the GPT-2 vocabulary-size
rule; a Qwen whose sliding window covers no layer and a Llama with pretraining_tp import."""
import json
import os
import subprocess
import sys

import torch

from koba_ros.cli import main
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_hf_tokenizer_json import llama_style_tokenizer_folder

SHAPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=64)


def llama(folder, vocab: int = 300, **kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **{**SHAPE, **kw}))
    model.save_pretrained(folder)
    return model


def imported(tmp_path, capsys, folder, *extra):
    capsys.readouterr()  # what building the folder printed (transformers' progress bars)
    code = main(["lm", "import", "--hf", str(folder), "--out", str(tmp_path / "in"), "--json", *extra])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err.strip())


def test_a_hub_name_is_read_as_the_model_it_is(tmp_path):
    """Off line, from a hub cache laid out as huggingface_hub writes it. It used to load as a GPT-2: every tensor
    random, and a logit check that compared the random model with itself."""
    snapshot = tmp_path / "hub" / "hub" / "models--someorg--tiny-llama" / "snapshots" / ("0" * 40)
    llama(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "koba_ros.cli", "lm", "import", "--hf", "someorg/tiny-llama", "--out",
                          str(tmp_path / "in"), "--tokenizer", "byte", "--json"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-1000:]
    recorded = json.loads((tmp_path / "in" / "state.json").read_text())["config"]["model"]
    assert (recorded["norm_type"], recorded["ffn"], recorded["positions"]) == ("rmsnorm", "swiglu", "rope")


def test_a_tensor_the_files_lack_is_refused_not_made_up(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    llama(tmp_path / "hf", tie_word_embeddings=False)
    weights = tmp_path / "hf" / "model.safetensors"
    tensors = load_file(weights)
    del tensors["model.layers.1.self_attn.q_proj.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    code, err = imported(tmp_path, capsys, tmp_path / "hf", "--tokenizer", "byte")
    assert code == 2 and len(err.splitlines()) == 1
    assert "lacks 1 of a Llama's tensors (first: model.layers.1.self_attn.q_proj.weight)" in err
    assert not (tmp_path / "in").exists()


def test_a_head_kept_apart_from_the_embeddings_stays_apart(tmp_path, capsys):
    """The config says tied, the file holds a head of its own: transformers keeps them apart, and so does import."""
    from safetensors.torch import load_file, save_file

    llama(tmp_path / "hf", tie_word_embeddings=False)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    tensors = load_file(tmp_path / "hf" / "model.safetensors")
    assert not torch.equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"])
    save_file(tensors, tmp_path / "hf" / "model.safetensors", metadata={"format": "pt"})
    code, result = imported(tmp_path, capsys, tmp_path / "hf", "--tokenizer", "byte")
    assert code == 0 and result["max_logit_difference"] < 1e-4
    assert json.loads((tmp_path / "in" / "state.json").read_text())["config"]["model"]["tie_embeddings"] is False


def test_a_models_own_tokenizer_wins_over_the_gpt2_vocabulary_size(tmp_path, capsys):
    llama_style_tokenizer_folder(tmp_path / "hf")
    llama(tmp_path / "hf", vocab=50257)
    code, result = imported(tmp_path, capsys, tmp_path / "hf")
    assert code == 0 and result["tokenizer"] == "hf"


def test_a_qwen_whose_window_covers_no_layer_and_a_llama_with_pretraining_tp_import(tmp_path, capsys):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=300, **SHAPE, use_sliding_window=True, sliding_window=8,
                                 max_window_layers=2)).save_pretrained(tmp_path / "qwen")
    code, result = imported(tmp_path, capsys, tmp_path / "qwen", "--tokenizer", "byte")
    assert code == 0 and result["max_logit_difference"] < 1e-4
    llama(tmp_path / "tp", pretraining_tp=2)
    code, result = main(["lm", "import", "--hf", str(tmp_path / "tp"), "--out", str(tmp_path / "tp_in"),
                         "--tokenizer", "byte", "--json"]), capsys.readouterr()
    assert code == 0
