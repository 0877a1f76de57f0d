"""The crop CNN's second opinion on an object's kind (grounding/crop_kinds.py): the committed classifier names the kinds
of freshly rendered objects, has no opinion without a crop, refuses a foreign file in one line, and makes the dialogue
ask instead of moving a sure pick the words' model calls a kind the crop says it is not."""
import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.grounding.crop_kinds import CropKinds, default_path
from koba_ros.grounding.dialogue import Dialogue, Settings
from koba_ros.grounding.scenes import render_and_perceive
from test.test_grounding_core import TableGrounder

# Seeds far from the training scenes (0-599) and every benchmark set (100000+).
SEEDS = (7001, 7002, 7003)
TR = [0, 1, 0, 0, 0]
VETO = Settings()     # the default dialogue has the second opinion (crop_veto 0.2, chosen on validation)


@pytest.fixture(scope="module")
def rendered():
    return [render_and_perceive(s, 14) for s in SEEDS]


@pytest.fixture(scope="module")
def kinds():
    return CropKinds.load(default_path())


def test_committed_classifier_names_the_kinds_of_freshly_rendered_objects(rendered, kinds):
    objects = [o for s in rendered for o in s.objects]
    truth = [n for s in rendered for n in s.names]
    p = kinds.probs(objects)
    assert p.shape == (len(objects), len(kinds.entries)) and np.allclose(p.sum(1), 1)
    named = [kinds.entries[int(k)] for k in p.argmax(1)]
    right = sum(a == b for a, b in zip(named, truth, strict=True))
    assert len(objects) >= 30 and right >= 0.9 * len(objects), (right, len(objects))
    # mass over a set of entries is the sum of their probabilities
    row = p[0]
    assert kinds.mass(row, {truth[0]}) == pytest.approx(row[kinds.entries.index(truth[0])])
    assert kinds.mass(row, set(kinds.entries)) == pytest.approx(1.0)


def test_no_crop_no_opinion(rendered, kinds):
    o = rendered[0].objects[0]
    bare = type(o)(**{**o.__dict__, "crop": None})
    p = kinds.probs([bare, o])
    assert np.isnan(p[0]).all() and np.isclose(p[1].sum(), 1)
    assert np.isnan(kinds.mass(p[0], {"duck"}))


def test_a_missing_or_foreign_file_is_one_clear_error(tmp_path):
    with pytest.raises(KobaError, match="not found; train it with `koba train crop-kinds`"):
        CropKinds.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(KobaError, match="cannot read crop kind classifier"):
        CropKinds.load(bad)


def _cylinder_scene(rendered):
    for s in rendered:
        idx = [i for i, n in enumerate(s.names) if n.endswith("_cylinder")]
        if idx:
            return s, idx[0]
    pytest.fail("no cylinder in the rendered test scenes")


def test_dialogue_asks_when_the_crop_denies_the_kind_the_words_and_the_model_agree_on(rendered):
    assert VETO.crop_veto > 0
    # The shared confusion of validation: "the block" (no cube here, or another) while the words' model is sure of a
    # cylinder AND names it "cube". The crop CNN, which never saw the words, says cylinder: ask, and "no" moves nothing.
    s, cyl = _cylinder_scene(rendered)
    n = len(s.objects)
    sure = [0.0] * n + [0.0]
    sure[cyl] = 1.0
    nouns = ["duck"] * n
    nouns[cyl] = "cube"
    g = TableGrounder({"put the block in the top right box": (sure, TR)}, n, nouns)
    d = Dialogue(g, s.objects, VETO)
    r = d.start("put the block in the top right box")
    assert r.status == "question" and d.why == "crop says the pick is not of the kind named" and r.candidates == [cyl]
    assert d.answer("no").status == "rejected"
    # Without the second opinion it moves the cylinder: the veto is what asked.
    r = Dialogue(g, s.objects, Settings(crop_veto=0.0)).start("put the block in the top right box")
    assert (r.status, r.target) == ("done", cyl)
    # Words that name its own kind are acted on: the crop agrees.
    nouns[cyl] = "cylinder"
    g = TableGrounder({"put the can in the top right box": (sure, TR)}, n, nouns)
    r = Dialogue(g, s.objects, VETO).start("put the can in the top right box")
    assert (r.status, r.target, r.destination) == ("done", cyl, "top_right")


def test_koba_train_crop_kinds_writes_a_classifier_that_loads(tmp_path):
    from koba_ros.cli import main

    assert main(["train", "crop-kinds", "--scenes", "5", "--crop-epochs", "1", "--out", str(tmp_path), "--json"]) == 0
    net = CropKinds.load(tmp_path / "crop_kinds.pt")
    assert len(net.entries) == 19


@pytest.mark.parametrize("what", ["grounding", "crop-kinds"])
def test_koba_train_refuses_an_unusable_out_before_any_work(what, capsys, monkeypatch):
    from koba_ros import cli
    from koba_ros.grounding import crop_kinds, training

    for module, name in ((training, "train"), (crop_kinds, "train_crop_kinds")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("trained before checking --out"))
    assert cli.main(["train", what, "--scenes", "5", "--out", "/proc/koba_train/x"]) == 2
    assert "cannot" in capsys.readouterr().err
