"""Deep ensemble of grounding models (grounder.average_groundings, Grounder with several weight files)."""
import hashlib
import json

import numpy as np
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.grounding.grounder import (
    Grounder,
    Grounding,
    average_groundings,
    default_model_path,
    retemper,
    single_model_path,
)
from koba_ros.grounding.scenes import render_and_perceive

DEFAULT = single_model_path()
CANDIDATE = DEFAULT.parent / "grounding_novel_words_06.pt"
TEXTS = ["put the red cube in the top right box", "the duck to the lower left", "move the green teddy bear", ""]


@pytest.fixture(scope="module")
def objects():
    torch.set_num_threads(1)
    # A rendered, really perceived scene (a seed never used in training): the models read its appearance features.
    return render_and_perceive(555011, 10).objects


@pytest.fixture(scope="module")
def pair():
    return Grounder(DEFAULT), Grounder(CANDIDATE), Grounder([DEFAULT, CANDIDATE])


def test_the_ensemble_averages_its_members_into_proper_distributions(pair, objects):
    single, other, ensemble = pair
    for text in TEXTS:
        a, b, e = single.ground(text, objects), other.ground(text, objects), ensemble.ground(text, objects)
        for p, pa, pb in ((e.target_probs, a.target_probs, b.target_probs), (e.dest_probs, a.dest_probs, b.dest_probs)):
            assert np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-5)
            assert np.allclose(p, (pa + pb) / 2, atol=1e-6)
        assert len(e.target_probs) == len(objects) + 1 and len(e.dest_probs) == 5
        # What the dialogue reads is read off the averages.
        assert e.none_prob == pytest.approx((a.none_prob + b.none_prob) / 2, abs=1e-6)
        assert e.ranked()[0][1] == pytest.approx(e.target_probs[:-1].max())


def test_a_one_member_ensemble_is_that_model_exactly(objects):
    single, one = Grounder(DEFAULT), Grounder([DEFAULT])
    for a, b in zip(single.ground_batch(TEXTS, [objects] * len(TEXTS)),
                    one.ground_batch(TEXTS, [objects] * len(TEXTS)), strict=True):
        assert np.array_equal(a.target_probs, b.target_probs) and np.array_equal(a.dest_probs, b.dest_probs)


def test_an_ensemble_file_names_members_and_its_temperatures(pair, objects, tmp_path):
    _, _, ensemble = pair
    (tmp_path / "models").mkdir()
    spec = {"members": [str(DEFAULT), str(CANDIDATE)], "t_target": 0.5, "t_dest": 2.0}
    path = tmp_path / "models" / "ensemble.json"
    path.write_text(json.dumps(spec))
    tempered = Grounder(str(path))
    assert tempered.ensemble_temperature == (0.5, 2.0) and len(tempered.members) == 2
    plain, hot = ensemble.ground(TEXTS[0], objects), tempered.ground(TEXTS[0], objects)
    assert np.allclose(hot.target_probs, retemper(plain.target_probs, 0.5), atol=1e-6)
    assert np.allclose(hot.dest_probs, retemper(plain.dest_probs, 2.0), atol=1e-6)
    # A sharper target temperature keeps the order and raises the best object's share.
    assert hot.ranked()[0][0] == plain.ranked()[0][0] and hot.ranked()[0][1] >= plain.ranked()[0][1]


def test_members_are_read_relative_to_the_ensemble_file(tmp_path, objects):
    (tmp_path / "a.pt").write_bytes(DEFAULT.read_bytes())
    (tmp_path / "e.json").write_text(json.dumps({"members": ["a.pt"], "t_target": 2.0}))
    one = Grounder(str(tmp_path / "e.json"))
    assert one.members[0].path == tmp_path / "a.pt"
    # A one-member ensemble file's temperature is applied too, not dropped.
    plain = Grounder(DEFAULT).ground(TEXTS[0], objects).target_probs
    assert np.allclose(one.ground(TEXTS[0], objects).target_probs, retemper(plain, 2.0), atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda d: [DEFAULT, d / "missing.pt"], "not found"),
    (lambda d: [DEFAULT, DEFAULT], "named twice"),
    (lambda d: [], "at least one model"),
    (lambda d: [DEFAULT, d / "foreign.pt"], "cannot read grounding model"),
    (lambda d: d / "missing.json", "not found"),
    (lambda d: d / "broken.json", "cannot read grounding ensemble"),
    (lambda d: d / "no_members.json", "cannot read grounding ensemble"),
    (lambda d: d / "short_hashes.json", "cannot read grounding ensemble"),
    (lambda d: d / "replaced.json", "not the file its gate was fitted for"),
])
def test_bad_ensembles_are_one_clear_error(tmp_path, make, message):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")   # a checkpoint, but not a grounding model
    (tmp_path / "broken.json").write_text("{members: ")
    (tmp_path / "no_members.json").write_text(json.dumps({"t_target": 1.0}))
    (tmp_path / "a.pt").write_bytes(DEFAULT.read_bytes())
    (tmp_path / "b.pt").write_bytes(CANDIDATE.read_bytes())
    (tmp_path / "short_hashes.json").write_text(json.dumps({"members": ["a.pt", "b.pt"], "sha256": ["0" * 64]}))
    right = hashlib.sha256(DEFAULT.read_bytes()).hexdigest()   # b.pt's hash is a.pt's: b was "replaced"
    (tmp_path / "replaced.json").write_text(json.dumps({"members": ["a.pt", "b.pt"], "sha256": [right, right]}))
    with pytest.raises(KobaError, match=message) as err:
        Grounder(make(tmp_path))
    assert "\n" not in str(err.value)


def test_non_positive_temperatures_and_mismatched_groundings_are_refused():
    with pytest.raises(KobaError, match="positive"):
        Grounder([DEFAULT], temperature=(0.0, 1.0))
    three, four = Grounding(np.full(3, 1 / 3), np.full(5, 0.2)), Grounding(np.full(4, 0.25), np.full(5, 0.2))
    with pytest.raises(KobaError, match="disagree"):
        average_groundings([three, four])
    with pytest.raises(KobaError, match="at least one"):
        average_groundings([])


@pytest.mark.parametrize("name", [
    "grounding_default.json", "grounding_ensemble.json", "grounding_ensemble_session3.json", "grounding_seeds.json"])
def test_the_committed_ensemble_files_load_their_members(name):
    g = Grounder(str(DEFAULT.parent / name))
    assert len(g.members) >= 2 and all(m.path.is_file() for m in g.members)
    assert all(t > 0 for t in g.ensemble_temperature)


def test_the_seed_ensemble_is_one_recipe_at_different_seeds():
    """grounding_seeds.json is a deep ensemble in the paper's sense: the same training recipe, members differing only
    by their random seed. Its gate temperatures were fitted for these members, so replacing one (e.g. a new
    grounding.pt of another recipe) must fail here rather than silently change the ensemble."""
    g = Grounder(str(DEFAULT.parent / "grounding_seeds.json"))
    recipes = [dict(m.config["train"]) for m in g.members]
    seeds = [r.pop("seed") for r in recipes]
    assert len(set(seeds)) == len(seeds) == 3, seeds
    assert all(r == recipes[0] for r in recipes), recipes
    assert recipes[0]["homographs"] > 0 and recipes[0]["novel_words"] > 0


def test_the_default_grounder_is_the_committed_four_model_ensemble_with_its_gate(objects):
    """Grounder() loads grounding_default.json (decision 3 of session 9, docs/grounding.md): C's recipe at seeds 0 and
    1 and the wider-grammar recipe at seeds 0 and 2, all 600 scenes, with the gate temperatures fitted for their
    average. Its seed-0 member is grounding.pt byte for byte, the single model the rest of the tests read; the file
    hashes pin the members, so retraining grounding.pt leaves the default intact."""
    g = Grounder()
    assert default_model_path().name == "grounding_default.json"
    assert [m.path.name for m in g.members] == ["grounding_600_seed0.pt", "grounding_600_seed1.pt",
                                                 "grounding_600_wide.pt", "grounding_600_wide_seed2.pt"]
    assert g.members[0].path.read_bytes() == DEFAULT.read_bytes()
    spec = json.loads(default_model_path().read_text())
    assert g.ensemble_temperature == (spec["t_target"], spec["t_dest"]) != (1.0, 1.0)
    recipes = [dict(m.config["train"]) for m in g.members]
    assert [r.pop("seed") for r in recipes] == [0, 1, 0, 2]
    for r in recipes:   # the crop options were added to the config after three of them trained; off means the same
        if not r.pop("crops", False):
            r.pop("crop_epochs", None)
    assert all(r == recipes[0] and r["scenes"] == 600 for r in recipes), recipes
    # The default is the ensemble, not its first member: on the same words the distributions differ.
    text = "put the red cube in the top right box"
    assert not np.allclose(g.ground(text, objects).target_probs, Grounder(DEFAULT).ground(text, objects).target_probs)
