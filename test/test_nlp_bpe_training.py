"""`koba lm tokenizer`: a byte-level BPE learned from a dataset, loaded as `tokenizer: bpe`, lossless on any text,
compressing its own data, with <|endoftext|> for collections and document_mask; bad requests in one line."""
import json

import pytest
import yaml

pytest.importorskip("tokenizers", reason="BPE training goes through the tokenizers package")

from koba_ros.cli import main  # noqa: E402
from koba_ros.errors import KobaError  # noqa: E402
from koba_ros.nlp.bpe_training import train_bpe  # noqa: E402
from koba_ros.nlp.tokenizer import build_tokenizer  # noqa: E402
from koba_ros.nlp.trainer import TrainConfig, train  # noqa: E402
from test.nlp_threads import one_thread  # noqa: F401, E402  (autouse fixture)

COMMANDS = ["put the brown fluffy toy in the top right box", "move left five centimeters", "open the gripper",
            "the red cube is in the bottom left box", "go home", "stop", "close the gripper slowly"]


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.txt").write_text("\n".join(COMMANDS[(i + j) % len(COMMANDS)] for j in range(30)) + "\n")
    return folder


def test_a_learned_vocabulary_compresses_its_data_and_loses_nothing(tmp_path, corpus, capsys):
    assert main(["lm", "tokenizer", "--data", str(corpus), "--vocab-size", "320", "--out", str(tmp_path / "bpe"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["vocab_size"] == 320 and result["eos_id"] is not None
    assert result["bytes_per_token"] > 2.5  # 63 merges: most of these words in a token or two (2.85 measured)
    smaller = train_bpe(str(corpus), 280, tmp_path / "bpe280")
    assert smaller["bytes_per_token"] < result["bytes_per_token"]  # more merges, fewer tokens
    tok = build_tokenizer("bpe", result["vocab"], result["merges"])
    for text in ("unseen words: ¡Grüße! 日本語 🤖\r\n\ttabs  and  spaces", "<|endoftext|> typed as text", ""):
        assert tok.decode(tok.encode(text)) == text
    assert tok.eos_id not in tok.encode("<|endoftext|>")  # only the separator is the special id


def test_a_model_trains_with_it_on_the_collection_with_document_mask(tmp_path, corpus):
    result = train_bpe(str(corpus), 300, tmp_path / "bpe")
    config = dict(model=dict(d_model=32, n_layers=1, n_heads=2, max_len=32, vocab_size=300, pad_id=result["eos_id"],
                             positions="rope"),
                  tokenizer="bpe", vocab=result["vocab"], merges=result["merges"], train_data=str(corpus),
                  seq_len=32, batch_size=4, steps=20, lr=3e-3, warmup=2, eval_every=20, ckpt_every=20,
                  out=str(tmp_path / "run"), progress=False, document_mask=True)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    summary = train(TrainConfig.from_file(tmp_path / "run.yaml"))
    first = float((tmp_path / "run" / "metrics.csv").read_text().splitlines()[1].split(",")[3])
    assert summary["loss"] < first - 1.0


def test_bad_requests_are_one_line(tmp_path, corpus):
    for kwargs, match in ((dict(vocab_size=200), "vocab_size must be an integer from 257"),
                          (dict(min_frequency=0), "min_frequency must be >= 1")):
        with pytest.raises(KobaError, match=match):
            train_bpe(str(corpus), **{"vocab_size": 300, "out": tmp_path / "x", **kwargs})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("  \n")
    with pytest.raises(KobaError, match="is empty"):
        train_bpe(str(tmp_path / "empty"), 300, tmp_path / "y")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "vocab.json").write_text("{}")
    with pytest.raises(KobaError, match="is not empty"):
        train_bpe(str(corpus), 300, tmp_path / "full")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
