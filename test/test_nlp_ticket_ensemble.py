"""`koba lm tickets` / `koba lm classify`: a multi-ticket ensemble built from label<TAB>text files, saved, loaded
and used; bad input is one line."""
import json
import random

import pytest

from koba_ros.cli import main
from koba_ros.nlp.repro.object_references import description_names, object_reference_sentences, thesaurus_sentences
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

SMALL = ["--members", "2", "--epochs", "8", "--pretrain-steps", "800"]


def write_set(path, pairs):
    path.write_text("".join(f"object{label}\t{text}\n" for text, label in pairs))
    return str(path)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Trained on every object name but the catalog's descriptions, validated on those (as `koba lm repro
    tickets`), pretrained with the names-pairing sentences as unlabelled text."""
    folder = tmp_path_factory.mktemp("tickets")
    rng = random.Random(0)
    by_name, _ = object_reference_sentences(rng, 6)
    held_out = description_names()
    train = write_set(folder / "train.tsv", [p for n in sorted(by_name) if n not in held_out for p in by_name[n][:3]])
    val = write_set(folder / "val.tsv", [p for n in sorted(by_name) if n in held_out for p in by_name[n]])
    unlabelled = folder / "more.txt"
    unlabelled.write_text("\n".join(thesaurus_sentences(rng)) + "\n")
    out = folder / "model"
    assert main(["lm", "tickets", "--train", train, "--val", val, "--unlabelled", str(unlabelled), "--out", str(out),
                 "--json", *SMALL]) == 0
    return folder, out, val


def test_the_ensemble_is_sparse_and_beats_chance_on_unseen_descriptions(ensemble, capsys):
    _, out, _ = ensemble
    meta = json.loads((out / "tickets.json").read_text())
    report = meta["report"]
    assert report["members"] == 2 and report["member_sparsity"] == [0.3, 0.3]
    assert report["labels"] == 19 and len(meta["labels"]) == 19
    assert report["val_accuracy"] > 0.5   # 19 labels: chance about 0.05


def test_a_loaded_ensemble_gives_the_accuracy_measured_when_it_was_built(ensemble, capsys):
    """Saved and loaded through safetensors, the members predict exactly as in memory."""
    _, out, val = ensemble
    rows = [line.split("\t") for line in open(val).read().splitlines()]
    capsys.readouterr()
    assert main(["lm", "classify", "--model", str(out), "--json", *[t for _, t in rows]]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    accuracy = sum(p["label"] == label for p, (label, _) in zip(predictions, rows, strict=True)) / len(rows)
    report = json.loads((out / "tickets.json").read_text())["report"]
    assert accuracy == pytest.approx(report["val_accuracy"], abs=1e-4)
    assert all(0 < p["probability"] <= 1 for p in predictions)
    assert main(["lm", "classify", "--model", str(out), "put the rubber duck in the top left box"]) == 0
    assert capsys.readouterr().out.count("\t") == 2


def test_classify_refuses_unknown_words_and_foreign_or_corrupt_folders(ensemble, tmp_path, capsys):
    folder, out, _ = ensemble
    assert main(["lm", "classify", "--model", str(out), "put the zebra in the top left box"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not in the pretrained vocabulary: 'zebra'" in err and "\n" not in err
    assert main(["lm", "classify", "--model", str(tmp_path), "the duck"]) == 2
    assert "not a ticket ensemble" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tickets.json").write_text((out / "tickets.json").read_text())
    (broken / "tickets.safetensors").write_bytes((out / "tickets.safetensors").read_bytes()[:300])
    assert main(["lm", "classify", "--model", str(broken), "the duck"]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupt ticket ensemble" in err and "\n" not in err


@pytest.mark.parametrize(("args", "message"), [
    (["--sparsity", "0.25"], "a whole number of rounds of 0.1"),
    (["--members", "0"], "must be at least 1"),
])
def test_impossible_ticket_settings_are_one_line_errors(tmp_path, capsys, args, message):
    train = write_set(tmp_path / "train.tsv", [("the duck", 0), ("the cup", 1)])
    assert main(["lm", "tickets", "--train", train, "--out", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_labelled_files_are_refused_before_any_training(tmp_path, capsys):
    one = write_set(tmp_path / "one.tsv", [("the duck", 0), ("a yellow duck", 0)])
    assert main(["lm", "tickets", "--train", one, "--out", str(tmp_path / "out")]) == 2
    assert "one label ('object0')" in capsys.readouterr().err
    train = write_set(tmp_path / "train.tsv", [("the duck", 0), ("the cup", 1)])
    val = write_set(tmp_path / "val.tsv", [("the spoon", 7)])
    assert main(["lm", "tickets", "--train", train, "--val", val, "--out", str(tmp_path / "out")]) == 2
    assert "label 'object7' never occurs in" in capsys.readouterr().err
    wordless = write_set(tmp_path / "wordless.tsv", [("the duck", 0), ("!!!", 1)])
    assert main(["lm", "tickets", "--train", wordless, "--out", str(tmp_path / "out")]) == 2
    assert "wordless.tsv:2: no words" in capsys.readouterr().err
    assert main(["lm", "tickets", "--train", train, "--unlabelled", str(tmp_path / "none.txt"),
                 "--out", str(tmp_path / "out")]) == 2  # not the cwd's runs/tickets
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["lm", "tickets", "--train", train, "--out", str(tmp_path / "taken")]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    assert not (tmp_path / "out").exists()
