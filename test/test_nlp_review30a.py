"""Session 30: three inefficiencies left by session 29 (docs/nlp.md, "Session 30: three inefficiencies left by
session 29"): an hf tokenizer's files read again at every checkpoint save, document bounds worked out in two places,
and a prepared token file scanned twice for ids past the model's rows. Behaviour is unchanged; each test checks the
work done (and the results) and fails on the code before the change."""
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp import checkpoint, evaluation, lm_influence, trainer
from koba_ros.nlp.data import TokenStream
from koba_ros.nlp.hf_tokenizer import EOS
from koba_ros.nlp.prepared import prepare, token_stream
from koba_ros.nlp.tokenizer import build_tokenizer
from koba_ros.nlp.trained import load_trained
from koba_ros.nlp.trainer import document_count, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_review29c import byte_bpe_tokenizer
from test.test_nlp_train import tiny

MODEL = dict(d_model=16, n_layers=1, n_heads=2, max_len=16)


def hf_run(tmp_path, folder, rows: int, **overrides):
    config = dict(tokenizer="hf", vocab=str(folder / "tokenizer.json"), seq_len=16, batch_size=2, eval_batches=1,
                  tensorboard=False, model=dict(MODEL, vocab_size=rows))
    return tiny(tmp_path, **{**config, **overrides})


# 1. An hf tokenizer's files: read at the first save, not at every one

def test_an_hf_runs_tokenizer_files_are_read_once_and_every_checkpoint_still_carries_them(tmp_path, monkeypatch):
    folder = tmp_path / "tok"
    byte_bpe_tokenizer(folder)  # <|endoftext|> is 256, named by config.json alone: the copies record it
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "eos_token_id": 256}))
    reads = []
    real = checkpoint.hf_tokenizer_files
    for module in (checkpoint, trainer):  # save_checkpoint's default read it; the trainer now reads it itself
        monkeypatch.setattr(module, "hf_tokenizer_files", lambda path: reads.append(path) or real(path), raising=False)
    result = train(hf_run(tmp_path, folder, 257, steps=2, ckpt_every=1, eval_every=1, keep_best=True, lr=1e-2))
    assert result["steps"] == 2 and result["best"] is not None
    assert len(reads) == 1  # was once per save: two checkpoints and each new best
    expected = real(folder / "tokenizer.json")
    assert expected["tokenizer_config.json"] == {"model_max_length": 64, "eos_token": EOS}
    for saved in (tmp_path / "run" / "checkpoint", tmp_path / "run" / "best"):
        assert {p.name for p in saved.iterdir()} >= {"tokenizer.json", "tokenizer_config.json"}
        assert (saved / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
        assert json.loads((saved / "tokenizer_config.json").read_text()) == expected["tokenizer_config.json"]
        assert load_trained(saved).tokenizer.eos_id == 256  # self-contained: no config.json beside the copy


# 2. Document bounds: one helper (TokenStream.document_bounds) for document_count and training_documents

def numbered(tokens: list[int], eos: int, eos_starts: bool) -> list[int]:
    """Each token's document number as TokenStream.document_ids gives it, by brute force."""
    return [sum(t == eos for t in tokens[:i + int(eos_starts)]) - int(eos_starts) for i in range(len(tokens))]


def test_document_count_and_training_documents_read_the_same_bounds_as_document_ids(monkeypatch):
    E = 9
    # [1, 2, 3] with eos_starts has no document (training_documents raised a ValueError there; a stream
    # encode_documents makes for such a tokenizer starts with its eos)
    streams = [[1, 2, 3], [1, E], [1, E, 2], [E, 1], [E, 1, E, 2], [1, E, 2, E], [E, E, 1], [1, E, E],
               [1, 2, E, 3], [E, 1, 2, E]]
    rng = np.random.default_rng(0)
    streams += [rng.choice([1, 2, E], size=int(rng.integers(2, 12))).tolist() for _ in range(200)]
    calls = []
    real = TokenStream.document_bounds  # AttributeError before: each caller had its own reading

    def counted(self, *args):
        calls.append(args)
        return real(self, *args)

    monkeypatch.setattr(TokenStream, "document_bounds", counted)
    for tokens in streams:
        for eos_starts in (False, True):
            numbers = numbered(tokens, E, eos_starts)
            assert document_count(TokenStream(torch.tensor(tokens), 1), E, eos_starts) == len(set(numbers)), \
                (tokens, eos_starts)
            stream = TokenStream(torch.tensor(tokens), 1)
            monkeypatch.setattr(lm_influence, "token_stream", lambda *args, stream=stream: stream)
            trained = SimpleNamespace(config={"train_data": "no such file", "val_data": "v", "seq_len": 1},
                                      tokenizer=SimpleNamespace(eos_id=E), eos_starts=eos_starts)
            documents, names = lm_influence.training_documents(trained)
            brute = [[t for t, n in zip(tokens, numbers, strict=True) if n == d] for d in range(max(numbers) + 1)]
            assert [d.tolist() for d in documents] == brute, (tokens, eos_starts)
            assert names == [f"document {d}" for d in range(len(brute))]
    assert len(calls) == 2 * 2 * len(streams)  # both callers read the one helper


# 3. A prepared token file is read once for ids past the model's rows (open_tokens' pass), not twice

def test_a_token_file_with_an_id_past_the_rows_is_scanned_once_and_refused_as_before(tmp_path, monkeypatch):
    folder = tmp_path / "tok"
    byte_bpe_tokenizer(folder, specials=(EOS, "<EOT>"))  # 256, 257: added past the 256 base ids
    tok = build_tokenizer("hf", str(folder / "tokenizer.json"))
    spec = {"tokenizer": "hf", "vocab": str(tok.path)}
    (tmp_path / "clean.txt").write_text("put the red cube in the box\n" * 30)
    (tmp_path / "infill.txt").write_text("put the red cube <EOT> in the box\n" * 30)
    for name in ("clean", "infill"):
        prepare(str(tmp_path / f"{name}.txt"), tok, spec, tmp_path / f"{name}.bin")
    seen = []
    for module in (trainer, evaluation):
        real = module.check_ids_fit
        monkeypatch.setattr(module, "check_ids_fit", lambda ids, *args, real=real: seen.append(len(ids)) or
                            real(ids, *args))
    bad = str(tmp_path / "infill.bin")
    message = r"holds id 257 \('<EOT>'\), a token the tokenizer added past the model's 257 embedding rows"
    with pytest.raises(KobaError, match=rf"train: {re.escape(bad)} {message}"):
        train(hf_run(tmp_path, folder, 257, train_data=bad, steps=1))
    with pytest.raises(KobaError, match=rf"train: {re.escape(bad)} {message}"):  # val_data is checked alike
        train(hf_run(tmp_path, folder, 257, train_data=str(tmp_path / "clean.bin"), val_data=bad, steps=1))
    assert seen == [1, 1, 1]  # the largest id open_tokens found, not the file's ids again (was each file's length)
    assert token_stream(bad, tok, "hf", 16).largest_id == 257
    assert train(hf_run(tmp_path, folder, 257, train_data=str(tmp_path / "clean.bin"), steps=1, eval_every=1,
                        ckpt_every=1))["steps"] == 1
    seen.clear()
    trained = load_trained(tmp_path / "run")
    assert len(evaluation.text_tokens(str(tmp_path / "clean.bin"), trained)[0]) > 1 and seen == [1]
    with pytest.raises(KobaError, match=rf"eval: {re.escape(bad)} {message}"):
        evaluation.text_tokens(bad, trained)
    seen.clear()
    text = str(tmp_path / "infill.txt")
    with pytest.raises(KobaError, match=rf"eval: {re.escape(text)} {message}"):
        evaluation.text_tokens(text, trained)
    assert seen[0] > 1  # a text's ids are checked, all of them, as before
