"""`koba lm bench` on a tiny shape (the CPU proof that the GPU benchmark runs) and BPE tokenizer loading."""
import json

import pytest

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.tokenizer import BPETokenizer, build_tokenizer


def test_bench_tiny_compares_ours_and_hugging_face(capsys, tmp_path):
    pytest.importorskip("transformers", reason="the Hugging Face baseline needs transformers")
    out = tmp_path / "bench.json"
    assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--steps", "1", "--variants", "ours,hf",
                 "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["variants"]) == {"ours", "hf"}
    ours, hf = result["variants"]["ours"], result["variants"]["hf"]
    assert abs(ours["parameters"] - hf["parameters"]) / hf["parameters"] < 0.05  # the same GPT-2 shape
    assert ours["tokens_per_s"] > 0 and 0 <= ours["mfu"] < 1 and ours["loss"] > 5  # ~ln(512) at init
    assert json.loads(out.read_text())["size"] == "tiny" and json.loads(out.read_text())["complete"]


def test_bench_rejects_unknown_variants_and_cudnn_attention_without_cuda(capsys):
    assert main(["lm", "bench", "--size", "tiny", "--variants", "ours,megatron"]) == 2
    assert "variants" in capsys.readouterr().err
    assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--variants", "ours,ours_cudnn"]) == 2
    assert "need a CUDA device" in capsys.readouterr().err


def test_bpe_loads_gpt2_style_files_and_round_trips(tmp_path):
    tokenizers = pytest.importorskip("tokenizers", reason="BPE loading goes through the tokenizers package")
    trainer = tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator(["put the red cube in the top left box"] * 50, vocab_size=300,
                                special_tokens=["<|endoftext|>"])
    trainer.save_model(str(tmp_path))
    tok = BPETokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    ids = tok.encode("put the red cube", eos=True)
    assert tok.decode(ids[:-1]) == "put the red cube" and ids[-1] == tok.eos_id
    assert len(ids) < len("put the red cube")  # merges applied


def test_missing_bpe_files_and_unknown_tokenizer_kind(tmp_path):
    with pytest.raises(KobaError, match="not found"):
        BPETokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    with pytest.raises(KobaError, match="byte or bpe"):
        build_tokenizer("sentencepiece")
