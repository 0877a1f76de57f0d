"""`koba lm influence`: a labelled text set in, every line ranked by self-influence (and validation influence) out;
bad files are one-line errors."""
import csv
import json

import pytest

from koba_ros.cli import main
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

OBJECTS = {"duck": ["duck", "rubber duckie", "yellow bird", "bath toy"],
           "cup": ["cup", "blue mug", "coffee cup", "tea cup"],
           "block": ["block", "red cube", "wooden brick", "toy block"]}
TEMPLATES = ["put the {} in the {} box", "move the {} to the {} box", "place the {} into the {} box"]
BOXES = ["top left", "top right", "bottom left", "bottom right"]
PLANTED = {"move the blue mug to the top right box": "duck", "put the red cube in the bottom left box": "cup"}


def write_set(path, lines):
    path.write_text("".join(f"{label}\t{text}\n" for label, text in lines))
    return str(path)


def labelled(names_slice):
    """Each object's names in every template and box: 12 lines per name, each line's words repeated by its
    neighbours, as in a real command set (a line with a unique wording is legitimately self-influential)."""
    return [(label, t.format(n, b)) for label, names in OBJECTS.items() for n in names[names_slice]
            for t in TEMPLATES for b in BOXES]


def test_planted_wrong_labels_rank_first(tmp_path, capsys):
    """Measured: the two planted lines ranked first and second on seeds 0, 1 and 2, with over twice the third line's
    self-influence (108 lines; at embed 64 / hidden 128 they were not reliably on top: narrow sub-networks differ
    too much from each other)."""
    lines = [(PLANTED.get(text, label), text) for label, text in labelled(slice(0, 3))]
    planted = sorted(k + 1 for k, (_, text) in enumerate(lines) if text in PLANTED)  # 1-based, as an editor shows
    train = write_set(tmp_path / "train.tsv", lines)
    val = write_set(tmp_path / "val.tsv", labelled(slice(3, 4)))
    assert main(["lm", "influence", "--train", train, "--val", val, "--out", str(tmp_path / "out"),
                 "--embed", "256", "--hidden", "512", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["lines"] == 108 and result["classes"] == 3 and result["val_lines"] == 36
    top = result["most_suspicious"]
    assert sorted(row["line"] for row in top[:2]) == planted
    assert {row["text"]: row["label"] for row in top[:2]} == PLANTED
    with open(result["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 108 and {r["text"] for r in rows[:2]} == set(PLANTED)
    scores = [float(r["self_influence"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(r["val_influence"] for r in rows)
    # two mask seeds: the mean of two networks' estimates, the planted lines still first
    assert main(["lm", "influence", "--train", train, "--out", str(tmp_path / "two"), "--embed", "256",
                 "--hidden", "512", "--mask-seeds", "2", "--json"]) == 0
    two = json.loads(capsys.readouterr().out)
    assert two["mask_seeds"] == 2 and sorted(row["line"] for row in two["most_suspicious"][:2]) == planted
    assert main(["lm", "influence", "--train", train, "--mask-seeds", "0"]) != 0
    assert "--mask-seeds must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "message"), [
    ("", "no labelled lines"),
    ("# only a comment\n\n", "no labelled lines"),
    ("duck\tthe duck\ncup the cup\n", ":2: expected 'label<TAB>text'"),
    ("duck\t  \n", ":1: expected 'label<TAB>text'"),
    ("duck\tthe duck\nduck\ta yellow bird\n", "one label ('duck')"),
    (b"duck\tthe \xff duck\n", "not UTF-8 text"),
])
def test_bad_labelled_files_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "train.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["lm", "influence", "--train", str(path), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_validation_label_the_training_set_lacks_is_refused(tmp_path, capsys):
    train = write_set(tmp_path / "train.tsv", labelled(slice(0, 1)))
    val = write_set(tmp_path / "val.tsv", [("spoon", "the silver spoon")])
    assert main(["lm", "influence", "--train", train, "--val", val, "--out", str(tmp_path / "out")]) != 0
    assert "label 'spoon' never occurs in" in capsys.readouterr().err
    assert main(["lm", "influence", "--train", str(tmp_path / "missing.tsv")]) != 0
    assert "no such file" in capsys.readouterr().err
    assert main(["lm", "influence", "--train", train, "--data", val]) != 0
    assert "--data goes with --checkpoint" in capsys.readouterr().err
