"""`koba lm prepare` and token files (prepared.py): a text tokenised once, in pieces, into the ids of encoding it
whole; training from the memory-mapped file draws the batches a text file gives and ends with the same weights;
evaluation reads it too; broken, foreign and mismatched files are one-line errors."""
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.data import TokenStream, batch_generator
from koba_ros.nlp.prepared import open_tokens, prepare, read_pieces, token_stream
from koba_ros.nlp.tokenizer import build_tokenizer, whisper_gpt2_ranks
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

# Python source is the hard case for cutting: indentation, blank lines, trailing spaces, tabs, CRLF.
SOURCE = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text(encoding="utf-8")
TRICKY = "a  \nb\n\n\nc \t\n  d\r\ne\n" * 30 + "x" * 50 + "\n\n"
SPEC = {"tokenizer": "byte", "vocab": "", "merges": ""}


def tokenizers():
    kinds = ["byte"]
    if whisper_gpt2_ranks() is not None:
        pytest.importorskip("tiktoken", reason="the gpt2 tokenizer reads its ranks through tiktoken")
        kinds.append("gpt2")
    return kinds


@pytest.mark.parametrize("chunk", [1, 37, 1000, 1 << 20])
def test_pieces_join_to_the_text_and_encode_to_the_whole_texts_ids(tmp_path, chunk):
    for text in (SOURCE, TRICKY):
        path = tmp_path / "t.txt"
        path.write_bytes(text.encode("utf-8"))
        pieces = list(read_pieces(str(path), chunk))
        assert "".join(pieces) == text and (len(pieces) > 1 if chunk < 100 else True)
        for kind in tokenizers():
            tok = build_tokenizer(kind)
            out = prepare(str(path), tok, {**SPEC, "tokenizer": kind}, tmp_path / f"{kind}.bin", chunk_bytes=chunk)
            ids, meta = open_tokens(tmp_path / f"{kind}.bin", kind, tok)
            assert ids.tolist() == tok.encode(text), (kind, chunk)
            assert meta["tokens"] == out["tokens"] == len(ids) and meta["max_id"] == max(ids)
            assert meta["dtype"] == "uint16" and meta["text_bytes"] == len(text.encode("utf-8"))


def test_a_cut_inside_a_whitespace_run_would_change_gpt2s_ids():
    # Why prepared.CUT needs non-whitespace on both sides of the newline (module doc).
    if "gpt2" not in tokenizers():
        pytest.skip("openai-whisper (which ships GPT-2's BPE ranks) is not installed")
    tok = build_tokenizer("gpt2")
    text = "x = 1  \n\n    y = 2\n"
    cut = text.index("\n\n") + 1
    assert tok.encode(text[:cut]) + tok.encode(text[cut:]) != tok.encode(text)


def test_training_from_the_token_file_equals_training_from_the_text(tmp_path):
    text = "put the brown fluffy toy in the top right box. the red cube is in the top left box.\n" * 50
    (tmp_path / "train.txt").write_text(text)
    assert main(["lm", "prepare", "--data", str(tmp_path / "train.txt"), "--out", str(tmp_path / "train.bin"),
                 "--json"]) == 0
    stream_text = token_stream(str(tmp_path / "train.txt"), build_tokenizer("byte"), "byte", 32)
    stream_file = token_stream(str(tmp_path / "train.bin"), build_tokenizer("byte"), "byte", 32)
    assert isinstance(stream_file.tokens, np.memmap) and len(stream_file) == len(stream_text)
    for step in range(3):
        a, b = stream_text.batch(4, batch_generator(0, step, 0)), stream_file.batch(4, batch_generator(0, step, 0))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and b[0].dtype == torch.long
    summaries = []
    for data in ("train.txt", "train.bin"):
        summaries.append(train(TrainConfig.from_dict(dict(
            model=dict(d_model=32, n_layers=1, n_heads=2, max_len=32), train_data=str(tmp_path / data), seq_len=32,
            batch_size=4, steps=5, lr=3e-3, warmup=1, eval_every=5, eval_batches=2, ckpt_every=5,
            out=str(tmp_path / data.replace(".", "_")), progress=False, device="cpu"))))
    assert summaries[0]["parameter_digest"] == summaries[1]["parameter_digest"]
    assert summaries[0]["val_loss"] == summaries[1]["val_loss"]


def test_eval_on_the_token_file_equals_eval_on_the_text(tmp_path, capsys):
    text = "the teddy bear is in the bottom left box. " * 40
    (tmp_path / "t.txt").write_text(text)
    train(TrainConfig.from_dict(dict(
        model=dict(d_model=32, n_layers=1, n_heads=2, max_len=32), train_data=str(tmp_path / "t.txt"), seq_len=32,
        batch_size=4, steps=3, lr=3e-3, warmup=1, eval_every=3, eval_batches=1, ckpt_every=3,
        out=str(tmp_path / "run"), progress=False, device="cpu")))
    prepare(str(tmp_path / "t.txt"), build_tokenizer("byte"), SPEC, tmp_path / "t.bin")
    results = []
    for data in ("t.txt", "t.bin"):
        assert main(["lm", "eval", "--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / data),
                     "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    for key in ("tokens", "scored_tokens", "bytes", "loss", "bits_per_byte"):
        assert results[0][key] == results[1][key], key


def test_broken_foreign_and_mismatched_token_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("hello there, robot. " * 20)
    byte = build_tokenizer("byte")
    prepare(str(tmp_path / "t.txt"), byte, SPEC, tmp_path / "t.bin")
    meta = json.loads((tmp_path / "t.bin.json").read_text())
    with pytest.raises(KobaError, match="prepared with tokenizer byte"):
        open_tokens(tmp_path / "t.bin", "bpe", byte)
    with pytest.raises(KobaError, match="must be a .bin"):
        prepare(str(tmp_path / "t.txt"), byte, SPEC, tmp_path / "t.npy")
    with pytest.raises(KobaError, match="not found"):
        open_tokens(tmp_path / "missing.bin", "byte", byte)
    (tmp_path / "t.bin.json").write_text(json.dumps({**meta, "tokens": meta["tokens"] + 1}))
    with pytest.raises(KobaError, match="truncated or replaced"):
        open_tokens(tmp_path / "t.bin", "byte", byte)
    (tmp_path / "t.bin.json").write_text(json.dumps(meta))
    ids = np.fromfile(tmp_path / "t.bin", dtype=meta["dtype"])
    ids[5] = 1000  # same size, same description, an id no byte tokenizer has: a step would crash on it
    ids.tofile(tmp_path / "t.bin")
    with pytest.raises(KobaError, match="holds id 1000, above its recorded maximum"):
        open_tokens(tmp_path / "t.bin", "byte", byte)
    (tmp_path / "t.bin.json").write_text("{not json")
    with pytest.raises(KobaError, match="not valid JSON"):
        open_tokens(tmp_path / "t.bin", "byte", byte)
    (tmp_path / "t.bin.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(KobaError, match="not a koba lm prepare description"):
        open_tokens(tmp_path / "t.bin", "byte", byte)
    (tmp_path / "t.bin.json").unlink()
    with pytest.raises(KobaError, match="no t.bin.json"):
        open_tokens(tmp_path / "t.bin", "byte", byte)
    (tmp_path / "empty.txt").write_text("")
    assert main(["lm", "prepare", "--data", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "e.bin")]) == 2
    assert "gave no tokens" in capsys.readouterr().err and not (tmp_path / "e.bin").exists()
    assert main(["lm", "prepare", "--data", str(tmp_path / "nothing.txt"), "--out", str(tmp_path / "n.bin")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(KobaError, match="fewer than one sequence"):
        TokenStream(np.zeros(10, dtype=np.uint16), 32, "tiny.bin")


def test_a_failed_prepare_leaves_no_partial_file(tmp_path):
    tokenizer = build_tokenizer("byte")
    with pytest.raises(KobaError, match="not found"):
        prepare(str(tmp_path / "missing.txt"), tokenizer, {"kind": "byte"}, tmp_path / "out.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KobaError):
        prepare(str(tmp_path / "empty"), tokenizer, {"kind": "byte"}, tmp_path / "out.bin")
    assert list(tmp_path.glob("out.bin*")) == []
    (tmp_path / "t.txt").write_text("open the gripper\n")
    with pytest.raises(KobaError, match="prepare: reading .* or writing /proc/koba/x.bin failed"):
        prepare(str(tmp_path / "t.txt"), tokenizer, {"kind": "byte"}, "/proc/koba/x.bin")
