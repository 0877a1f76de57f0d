"""Checkpoints and `koba lm import` against damaged input (session 25's review): a damaged number in state.json's
recorded config is one KobaError for every reader; the weights-only readers (sample, eval, expand, gqa, export,
init_from) do not read optimizer.safetensors; integer or bool tensors of the right shapes are refused, not converted;
an empty or refused .pt file gives its reason in one line; an HF config with fewer layers than its weights file is
refused instead of importing the first layers alone."""
import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from koba_ros.cli import main
from koba_ros.errors import KobaError, reason
from koba_ros.nlp.checkpoint import load_checkpoint, load_model_state, recorded_config, save_checkpoint
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.expand_checkpoint import expand_checkpoint
from koba_ros.nlp.gqa_conversion import convert_checkpoint
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.trained import load_trained
from koba_ros.nlp.warm_start import read_weights
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

MODEL = dict(d_model=32, n_layers=2, n_heads=2, max_len=32)
TEXT = "put the red cube in the box. " * 20


def checkpoint(tmp_path, name="ck", optimizer=False, model_kw=None, **config) -> tuple:
    """A checkpoint folder as `koba lm train` writes one (recorded config, optional optimizer state)."""
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**{**MODEL, **(model_kw or {})}))
    optim = None
    if optimizer:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ids = torch.randint(0, 256, (2, 16))
        model(ids[:, :-1], ids[:, 1:])[1].backward()
        opt.step()
        optim = opt.state_dict()
    recorded = {"model": model.config.to_dict(), "tokenizer": "byte", "vocab": "", "merges": "", "seq_len": 32,
                "lr": 1e-3, "document_mask": False, **config}
    folder = save_checkpoint(tmp_path / name, model.state_dict(), optim, {"step": 3, "config": recorded})
    return folder, model


def one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


# 1. a damaged number (or flag, or name) in the recorded config: one KobaError wherever it is read

DAMAGED = [("seq_len", "x"), ("seq_len", 0), ("seq_len", 2.5), ("seq_len", True), ("lr", "fast"), ("lr", -1.0),
           ("lr", math.nan), ("lr", math.inf), ("document_mask", "no"), ("tokenizer", 5)]


@pytest.mark.parametrize("key, value", DAMAGED)
def test_a_damaged_recorded_value_is_refused_where_state_json_is_read(tmp_path, key, value):
    folder, _ = checkpoint(tmp_path, **{key: value})
    with pytest.raises(KobaError, match=f"state.json's {key} must be"):
        recorded_config(folder)
    with pytest.raises(KobaError, match=f"state.json's {key} must be"):
        load_trained(folder)


def test_every_command_that_reads_the_numbers_gives_one_line(tmp_path, capsys):
    """seq_len "x" was int("x") in expand, gqa and eval, lr "fast" float("fast") in expand: ValueError tracebacks."""
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    for key, value in (("seq_len", "x"), ("lr", "fast")):
        folder, _ = checkpoint(tmp_path, name=key, **{key: value})
        for argv in (["lm", "eval", "--checkpoint", str(folder), "--data", str(data)],
                     ["lm", "expand", "--checkpoint", str(folder), "--out", str(tmp_path / f"x_{key}"), "--layers",
                      "3", "--data", str(data)],
                     ["lm", "gqa", "--checkpoint", str(folder), "--out", str(tmp_path / f"g_{key}"), "--kv-heads",
                      "1", "--data", str(data)]):
            assert f"state.json's {key} must be" in one_line_error(capsys, argv)
        assert not (tmp_path / f"x_{key}").exists() and not (tmp_path / f"g_{key}").exists()


def test_recorded_values_that_are_absent_or_right_still_load(tmp_path):
    """An imported checkpoint records no lr; the numbers a run records pass."""
    folder, _ = checkpoint(tmp_path, lr=3, document_mask=True)
    assert recorded_config(folder)["lr"] == 3
    meta = json.loads((folder / "state.json").read_text())
    for key in ("lr", "seq_len", "document_mask"):
        del meta["config"][key]
    (folder / "state.json").write_text(json.dumps(meta))
    assert load_trained(folder).config["tokenizer"] == "byte"
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    assert convert_checkpoint(folder, tmp_path / "gqa", 1, data=str(data))["scored_tokens"] > 0


# 2. the weights-only readers do not read the optimizer state

def test_a_damaged_optimizer_file_does_not_block_the_weights_only_readers(tmp_path):
    folder, model = checkpoint(tmp_path, optimizer=True)
    (folder / "optimizer.safetensors").write_bytes(b"xx")
    trained = load_trained(folder)  # sample, eval, export, expand and gqa read it this way
    for name, tensor in model.state_dict().items():
        assert torch.equal(trained.model.state_dict()[name], tensor)
    state = read_weights(model.config, TransformerLM(model.config), folder)  # init_from
    assert all(torch.equal(state[name], tensor) for name, tensor in model.state_dict().items())
    assert expand_checkpoint(folder, tmp_path / "grown", n_layers=3)["n_layers"] == [2, 3]
    with pytest.raises(KobaError, match="optimizer.safetensors is corrupt"):  # resuming needs it: still refused
        load_checkpoint(folder)


# 3. integer and bool tensors of the right shapes

@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_or_bool_weights_are_refused_not_converted(tmp_path, dtype):
    folder, _ = checkpoint(tmp_path)
    state = load_file(folder / "model.safetensors")
    save_file({k: (v > 0 if dtype == torch.bool else v.to(dtype)) for k, v in state.items()},
              folder / "model.safetensors")
    with pytest.raises(KobaError, match="does not fit this model.*holds torch"):
        load_trained(folder)
    with pytest.raises(KobaError, match="does not fit this model.*holds torch"):
        read_weights(TransformerConfig(**MODEL), TransformerLM(TransformerConfig(**MODEL)), folder)


def test_alone_integer_codes_must_stay_integers_and_bf16_weights_still_load(tmp_path):
    folder, model = checkpoint(tmp_path, model_kw=dict(embedding="alone"))
    state = load_file(folder / "model.safetensors")
    codes = next(k for k in state if k.endswith("word_codes"))
    assert not state[codes].is_floating_point()
    save_file({**state, codes: state[codes].float() + 0.5}, folder / "model.safetensors")
    with pytest.raises(KobaError, match=f"{codes} holds torch.float32"):
        load_trained(folder)
    save_file({k: v.bfloat16() if v.is_floating_point() else v for k, v in state.items()}, folder / "model.safetensors")
    assert load_trained(folder).model.config.embedding == "alone"  # only the precision differs: allowed


# 4. .pt files: an empty one, one the weights-only unpickler refuses

class BlockedGlobal:  # a class the weights-only unpickler will not load
    pass


class BlockedCall:  # pickles as a call of os.getcwd (harmless): a module the weights-only unpickler blocks
    def __reduce__(self):
        return os.getcwd, ()


def test_an_empty_or_refused_pt_file_gives_its_reason_in_one_line(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(KobaError, match="empty file"):  # was IndexError: str(EOFError()).splitlines()[0]
        load_model_state(tmp_path / "empty.pt")
    torch.save({"a": BlockedGlobal()}, tmp_path / "global.pt")
    torch.save({"a": BlockedCall()}, tmp_path / "call.pt")
    for name, detail in (("global.pt", "BlockedGlobal"), ("call.pt", "posix")):
        with pytest.raises(KobaError) as err:
            load_model_state(tmp_path / name)
        text = str(err.value)
        assert "\n" not in text and "PyTorch 2.6" not in text and "not a torch weights file (" in text
        assert detail in text
    assert reason(EOFError()) == "EOFError"


# 5. `koba lm import`: a tensor the config has no place for

def hf_folder(folder, kind="llama", layers=2):
    import transformers as T

    torch.manual_seed(0)
    if kind == "gpt2":
        model = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=300, n_embd=32, n_layer=layers, n_head=4, n_positions=64))
    else:
        model = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=48,
                                                 num_hidden_layers=layers, num_attention_heads=4,
                                                 num_key_value_heads=2, max_position_embeddings=64))
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind, key", [("llama", "num_hidden_layers"), ("gpt2", "n_layer")])
def test_a_config_with_fewer_layers_than_its_weights_is_refused(tmp_path, capsys, kind, key):
    folder = hf_folder(tmp_path / "hf", kind)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: 1}))
    err = one_line_error(capsys, ["lm", "import", "--hf", str(folder), "--out", str(tmp_path / "in"),
                                  "--tokenizer", "byte"])
    assert "tensors its config has no place for" in err and ".1." in err
    assert not (tmp_path / "in").exists()


@pytest.mark.parametrize("buffer", ["attn.bias", "attn.masked_bias"])
def test_tensors_the_model_class_ignores_still_import(tmp_path, capsys, buffer):
    """GPT-2 files written by older transformers hold each layer's causal mask (attn.bias) and, from transformers
    3.x-4.2x, its fill value (attn.masked_bias, which today's GPT-2 class no longer lists): not weights."""
    folder = hf_folder(tmp_path / "hf", "gpt2")
    state = load_file(folder / "model.safetensors")
    mask = (torch.tril(torch.ones(64, 64, dtype=torch.bool)).view(1, 1, 64, 64) if buffer == "attn.bias"
            else torch.tensor(-1e4))
    masks = {f"transformer.h.{i}.{buffer}": mask.clone() for i in range(2)}
    save_file({**state, **masks}, folder / "model.safetensors", metadata={"format": "pt"})
    capsys.readouterr()
    assert main(["lm", "import", "--hf", str(folder), "--out", str(tmp_path / "in"), "--tokenizer", "byte"]) == 0
    assert load_trained(tmp_path / "in").model.config.n_layers == 2
