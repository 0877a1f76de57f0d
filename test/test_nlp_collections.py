"""Datasets of many files: a folder (its *.txt files) or a glob pattern, read in sorted order, each document ended
by the tokenizer's end-of-text id. Training, `koba lm prepare` and `koba lm eval` read them the same way."""
import json

import pytest

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.data import TokenStream, dataset_files, encode_documents, load_documents, load_text
from koba_ros.nlp.prepared import open_tokens, prepare
from koba_ros.nlp.tokenizer import build_tokenizer
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_prepared import SOURCE, TRICKY, tokenizers

DOCS = {"b/2.txt": "move left five centimeters.\n" * 20, "a.txt": TRICKY, "b/1.txt": SOURCE[:3000],
        "b/notes.md": "not a txt file\n", "c/empty.txt": ""}


@pytest.fixture
def corpus(tmp_path):
    for name, text in DOCS.items():
        (tmp_path / "corpus" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "corpus" / name).write_bytes(text.encode("utf-8"))
    return tmp_path / "corpus"


def test_a_folder_is_its_txt_files_in_sorted_order_and_a_glob_what_it_matches(corpus):
    assert [p.relative_to(corpus).as_posix() for p in dataset_files(str(corpus))] == \
        ["a.txt", "b/1.txt", "b/2.txt", "c/empty.txt"]
    assert [p.name for p in dataset_files(f"{corpus}/**/*.md")] == ["notes.md"]
    assert [p.name for p in dataset_files(f"{corpus}/b/*")] == ["1.txt", "2.txt", "notes.md"]
    texts = load_documents(str(corpus))  # the empty file is no document
    assert texts == [DOCS["a.txt"], DOCS["b/1.txt"], DOCS["b/2.txt"]]
    for source, match in ((f"{corpus}/*.json", "pattern matches no files"), (str(corpus / "b" / "x"), "not found"),
                          (str(corpus / "c"), "is empty"), (str(corpus), "collection of files; this reads one")):
        with pytest.raises(KobaError, match=match):
            load_text(source) if "one" in match else load_documents(source)
    (corpus / "d").mkdir()
    with pytest.raises(KobaError, match="folder has no \\*.txt files"):
        dataset_files(str(corpus / "d"))


def test_each_document_ends_with_the_tokenizers_end_of_text_id(corpus):
    for kind in tokenizers():
        tok = build_tokenizer(kind)
        stream = TokenStream.from_dataset(str(corpus), tok, 16)
        expected = [i for name in ("a.txt", "b/1.txt", "b/2.txt") for i in tok.encode(DOCS[name]) + [tok.eos_id]]
        assert stream.tokens.tolist() == expected, kind
        assert tok.eos_id == {"byte": 258, "gpt2": 50256}[kind]
        # one file stays exactly its own ids (no separator), as before collections existed
        assert encode_documents([DOCS["a.txt"]], tok, separate=False) == tok.encode(DOCS["a.txt"])


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_prepare_of_a_collection_writes_the_ids_training_reads_from_the_files(tmp_path, corpus, chunk):
    for kind in tokenizers():
        tok = build_tokenizer(kind)
        spec = {"tokenizer": kind, "vocab": "", "merges": ""}
        meta = prepare(f"{corpus}/**/*.txt", tok, spec, tmp_path / f"{kind}.bin", chunk_bytes=chunk)
        ids, _ = open_tokens(tmp_path / f"{kind}.bin", kind, tok)
        assert ids.tolist() == TokenStream.from_dataset(str(corpus), tok, 16).tokens.tolist(), (kind, chunk)
        assert meta["documents"] == 3
        # one file with CRLF line ends: the text path keeps them as the token file does (it once read them as LF)
        prepare(str(corpus / "a.txt"), tok, spec, tmp_path / "a.bin", chunk_bytes=chunk)
        assert open_tokens(tmp_path / "a.bin", kind, tok)[0].tolist() == \
            TokenStream.from_dataset(str(corpus / "a.txt"), tok, 16).tokens.tolist() == tok.encode(DOCS["a.txt"])
        assert meta["text_bytes"] == sum(len(DOCS[n].encode("utf-8")) for n in ("a.txt", "b/1.txt", "b/2.txt"))


def test_train_on_a_folder_and_eval_on_it_equals_eval_on_its_token_file(tmp_path, corpus, capsys):
    config = dict(model=dict(d_model=32, n_layers=1, n_heads=2, max_len=32), train_data=str(corpus),
                  val_data=f"{corpus}/b/*.txt", seq_len=32, batch_size=4, steps=4, eval_every=4, eval_batches=1,
                  out=str(tmp_path / "run"), progress=False)
    summary = train(TrainConfig.from_dict(config))
    assert summary["steps"] == 4 and summary["val_loss"] is not None
    assert main(["lm", "prepare", "--data", str(corpus), "--out", str(tmp_path / "c.bin"), "--json"]) == 0
    capsys.readouterr()
    scores = []
    for data in (str(corpus), str(tmp_path / "c.bin")):
        assert main(["lm", "eval", "--checkpoint", str(tmp_path / "run"), "--data", data, "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0]["loss"] == pytest.approx(scores[1]["loss"], abs=1e-6)
    assert scores[0]["bytes"] == scores[1]["bytes"] and scores[0]["tokens"] == scores[1]["tokens"]
    assert main(["lm", "eval", "--checkpoint", str(tmp_path / "run"), "--data", f"{corpus}/*.none"]) == 2
    assert "pattern matches no files" in capsys.readouterr().err


def test_eval_per_document_scores_each_file_alone(tmp_path, corpus, capsys):
    """--per-document: the total nats equal those of evaluating each file on its own; the stream reading of the
    same folder differs (each file's windows see the previous file, and the separators are scored)."""
    config = dict(model=dict(d_model=32, n_layers=1, n_heads=2, max_len=32), train_data=str(corpus), seq_len=32,
                  batch_size=4, steps=4, eval_every=4, out=str(tmp_path / "run"), progress=False)
    train(TrainConfig.from_dict(config))

    def evaluate(*args) -> dict:
        assert main(["lm", "eval", "--checkpoint", str(tmp_path / "run"), *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    whole = evaluate("--data", str(corpus), "--per-document")
    assert whole["documents"] == 3 and whole["per_document"] is True
    alone = [evaluate("--data", str(corpus / name)) for name in ("a.txt", "b/1.txt", "b/2.txt")]
    assert whole["scored_tokens"] == sum(a["scored_tokens"] for a in alone)
    assert whole["loss"] * whole["scored_tokens"] == pytest.approx(
        sum(a["loss"] * a["scored_tokens"] for a in alone), rel=1e-5)
    assert whole["bytes"] == sum(a["bytes"] for a in alone)
    stream = evaluate("--data", str(corpus), "--split", "all")  # the whole corpus, training part included
    # the stream also scores the 3 separators and the files' first tokens, all but its own first: 3 + 3 - 1
    assert stream["scored_tokens"] == whole["scored_tokens"] + 5
    assert main(["lm", "eval", "--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "x.bin"),
                 "--per-document"]) == 2
    assert "a token file has no file boundaries" in capsys.readouterr().err
