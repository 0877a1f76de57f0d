"""Session 26 review fixes in grounding: held-out object words read from the object phrase, the node's dialogue
thresholds and goal bookkeeping, calibration refit's options and output, `koba train grounding --crop-epochs`, and
the MiniLM per-text cache's bound."""
import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from koba_ros.grounding.instructions import HELD_OUT_WORDS, InstructionGenerator, Sample
from koba_ros.grounding.synthetic import perceive_synthetic, random_scene
from test.test_grounding_core import TableGrounder

# sha256 of the generated samples below: recording object_word must not change a single generated text or draw
# (every trained model and quoted number rests on them). Taken again in session 27, when relation instructions
# changed the draws on purpose (the old fallback drew a permutation of the objects and then said nothing).
GENERATED_SHA256 = "cd172e12a14ccc62a445ea2e1d169be7e2f1fd6fcbf5f1e62a8c99c21d9dfc2c"


def _generated(seed: int = 3):
    rng = np.random.default_rng(seed)
    out = []
    for split in ("train", "test"):
        gen = InstructionGenerator(split, seed)
        for _ in range(12):
            spec = random_scene(rng)
            objs, names = perceive_synthetic(spec, rng), [s["name"] for s in spec]
            out += [s for _ in range(10) if (s := gen.generate(objs, names)) is not None]
    return out


def _digest(samples) -> str:
    rows = [json.dumps({k: v for k, v in s.__dict__.items() if k not in ("objects", "object_word")},
                       sort_keys=True, default=str) for s in samples]
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def test_recording_the_object_word_leaves_every_generated_sample_as_it_was():
    assert _digest(_generated()) == GENERATED_SHA256


def test_the_object_word_is_a_catalog_word_said_in_the_text():
    from koba_ros.grounding import lexicon
    from koba_ros.sim.catalog import load_catalog

    catalog = load_catalog()
    samples = _generated()
    named = [s for s in samples if s.object_word]
    assert len(named) > len(samples) // 2
    for s in named:
        entry = catalog[s.names[s.target]]
        assert s.object_word in entry.synonyms or s.object_word in entry.descriptions
        assert f" {' '.join(lexicon.words(s.object_word))} " in f" {' '.join(lexicon.words(s.text))} "
    assert all(not s.object_word for s in samples if s.kind == "absent")


def test_the_filler_can_is_not_the_held_out_object_word_can():
    """"Can you put the cube ..." counted as a held-out object word (11 of 240 training-phrasing samples)."""
    from koba_ros.grounding.dialogue import Settings
    from koba_ros.grounding.evaluation import evaluate_grounder

    objs = perceive_synthetic([{"name": "red_cube", "box": "top_left", "xy": [0.0, 0.0]},
                               {"name": "duck", "box": "bottom_right", "xy": [0.0, 0.0]}], np.random.default_rng(0))
    names = ["red_cube", "duck"]
    filler = Sample("Can you put the red cube in the top right box", objs, names, [0], "top_right", "clear", 0,
                    object_word="cube")
    held = Sample("put the can in the top right box", objs, names, [0], "top_right", "clear", 0, object_word="can")
    assert "can" in HELD_OUT_WORDS
    grounder = TableGrounder({filler.text: ([0.9, 0.1, 0.0], [0, 1, 0, 0, 0]),   # right
                              held.text: ([0.1, 0.9, 0.0], [0, 1, 0, 0, 0])}, 2)    # wrong
    out = evaluate_grounder(grounder, {"clear": [filler, held]}, Settings(crop_veto=0.0))["clear"]
    assert out["n_held_out_object_words"] == 1
    assert out["target_top1_by_held_out_word"] == {"can": "0/1"}   # the filler's right pick is not the can's


# --- grounding_node ---------------------------------------------------------------------------------------------
@pytest.mark.ros
@pytest.mark.parametrize("name,value", [("min_utterance_confidence", math.nan), ("ask_below", math.nan),
                                        ("reject_above", -3.0), ("dest_ask_below", 1.5), ("crop_veto", -0.1),
                                        ("crop_veto", math.inf), ("max_turns", -2)])
def test_a_dialogue_threshold_out_of_range_fails_configure_in_one_line(ros_context, name, value):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from koba_ros.nodes.grounding_node import GroundingNode

    node = GroundingNode(context=ros_context, parameter_overrides=[Parameter(name, value=value)])
    try:
        assert node.on_configure(None) == TransitionCallbackReturn.FAILURE
        assert node.failure.startswith(f"{name} must be") and "\n" not in node.failure
        assert node.grounder is None and node.action is None   # nothing loaded, nothing created
    finally:
        node.destroy_node()


def test_the_dialogue_thresholds_accept_their_whole_ranges():
    from koba_ros.grounding.dialogue import Settings, check_settings

    check_settings(Settings(), 0.0)
    check_settings(Settings(ask_below=1.0, reject_above=0.0, dest_ask_below=1.0, max_turns=0, crop_veto=0.0),
                            1.0)


class _Future:
    def __init__(self, value):
        self.value, self.callbacks = value, []

    def result(self):
        return self.value

    def add_done_callback(self, callback):
        self.callbacks.append(callback)


class _Handle:
    def __init__(self):
        self.accepted, self.cancels = True, 0
        self.result_future = _Future(SimpleNamespace(status=4, result=SimpleNamespace(success=True, message="")))

    def get_result_async(self):
        return self.result_future

    def cancel_goal_async(self):
        self.cancels += 1


@pytest.fixture
def goal_node(ros_context):
    """A grounding_node whose spoken replies are collected, and that list."""
    from koba_ros.nodes.grounding_node import GroundingNode

    node = GroundingNode(context=ros_context)
    said = []
    node.say = said.append
    yield node, said
    node.destroy_node()


@pytest.mark.ros
def test_an_old_goals_result_does_not_forget_the_goal_now_moving(goal_node):
    """Goal A's result arriving after goal B was accepted set goal_handle = None while B moved: "stop" then said
    "Nothing is moving." and B went on."""
    from koba_ros.nodes.grounding_node import HOLDING_REPLY

    node, said = goal_node
    first, second = _Handle(), _Handle()
    node.on_goal_response(_Future(first), node.contact_lost)
    node.on_goal_response(_Future(second), node.contact_lost)
    assert node.goal_handle is second
    first.result_future.callbacks[0](first.result_future)     # A's result, late
    assert node.goal_handle is second and said == ["Done."]
    node.on_stop("stop")
    assert second.cancels == 1 and said[-1] == HOLDING_REPLY
    second.result_future.callbacks[0](second.result_future)   # B's own result clears it
    assert node.goal_handle is None


@pytest.mark.ros
def test_a_stop_while_the_next_goal_waits_for_acceptance_cancels_that_goal_too(goal_node):
    """Found by a review of the fix above: with goal A's handle still set and goal B sent but not yet accepted, a stop
    cancelled only A (an if/elif), said "Holding still." and B moved once accepted."""
    from koba_ros.nodes.grounding_node import HOLDING_REPLY

    node, said = goal_node
    first, second = _Handle(), _Handle()
    node.on_goal_response(_Future(first), node.contact_lost)
    node.goal_pending, sent = True, node.stops     # B sent (what send_goal does), not yet accepted
    node.on_stop("stop")
    assert first.cancels == 1 and said == [HOLDING_REPLY]
    node.on_goal_response(_Future(second), node.contact_lost, sent)  # B accepted afterwards: cancelled at once
    assert second.cancels == 1


# --- calibration refit --------------------------------------------------------------------------------------------
@pytest.fixture
def refit_model(tmp_path, monkeypatch):
    """A checkpoint refit can read, with the rendering, the grounder and the fit replaced by stand-ins (the test is
    about what happens around them); calls to validation_phrasings are recorded."""
    from koba_ros.grounding import calibration, grounder

    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "config": {"t_target": 1.0, "t_dest": 1.0, "train": {}}}, path)
    rendered = []
    monkeypatch.setattr(calibration, "validation_phrasings", lambda config, draws=None: rendered.append(draws) or [])
    monkeypatch.setattr(grounder, "Grounder", lambda p: object())
    monkeypatch.setattr(calibration, "fit_gate_temperature", lambda g, s, base: (0.5, 2.0, {"clear": 1.0}))
    return path, rendered


@pytest.mark.parametrize("option", [["--threads", "0"], ["--threads", "-1"], ["--draws", "0"], ["--draws", "-2"]])
def test_refit_refuses_a_bad_count_before_any_work(refit_model, tmp_path, capsys, option):
    from koba_ros.grounding.calibration import main

    model, rendered = refit_model
    with pytest.raises(SystemExit) as exc:
        main(["refit", str(model), str(tmp_path / "out.pt"), *option])
    assert exc.value.code == 2 and option[0] in capsys.readouterr().err and rendered == []


def test_refit_checks_out_before_rendering_and_fitting(refit_model, tmp_path):
    from koba_ros.grounding.calibration import main

    model, rendered = refit_model
    (tmp_path / "a_folder").mkdir()
    # a folder; a file where a folder should be; a folder nobody can create files in, whatever its permission bits
    outs = [tmp_path / "a_folder", tmp_path / "model.pt" / "x.pt"] + ([Path("/proc/out.pt")] * Path("/proc").is_dir())
    for out in outs:
        with pytest.raises(SystemExit) as exc:
            main(["refit", str(model), str(out)])
        assert str(exc.value.code).startswith(f"calibration: error: cannot write {out}") and "\n" not in str(
            exc.value.code)
    assert rendered == []


def test_refit_saves_atomically_and_a_failed_save_is_one_line(refit_model, tmp_path, monkeypatch):
    from koba_ros.grounding.calibration import main

    model, _ = refit_model
    out = tmp_path / "out.pt"
    out.write_bytes(b"the previous model")
    real_save = torch.save

    def full_disk(obj, f):
        f.write(b"part of a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as exc:
        main(["refit", str(model), str(out)])
    assert str(exc.value.code) == f"calibration: error: cannot write {out}: No space left on device"
    assert out.read_bytes() == b"the previous model" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.pt", "out.pt"]
    monkeypatch.setattr(torch, "save", real_save)
    main(["refit", str(model), str(out), "--json"])
    saved = torch.load(out, weights_only=True)
    assert saved["config"]["t_target"] == 0.5 and saved["config"]["t_dest"] == 2.0


# --- koba train grounding --crop-epochs ---------------------------------------------------------------------------
def test_crop_epochs_without_crops_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from koba_ros.cli import main
    from koba_ros.grounding import training

    configs = []

    def fake_train(cfg, out, **kw):
        configs.append(cfg)
        return {"weights": str(out / "grounding.pt"), "best_val_clear_acc": 1.0, "seconds": 0.0}

    monkeypatch.setattr(training, "train", fake_train)
    assert main(["train", "grounding", "--crop-epochs", "5", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--crop-epochs" in err and "--crops" in err and "\n" not in err and configs == []
    assert main(["train", "grounding", "--crop-epochs", "20", "--out", str(tmp_path / "b")]) == 2   # the default too
    assert main(["train", "grounding", "--crops", "--crop-epochs", "5", "--out", str(tmp_path / "c")]) == 0
    assert main(["train", "grounding", "--crops", "--out", str(tmp_path / "d")]) == 0
    assert main(["train", "grounding", "--out", str(tmp_path / "e")]) == 0
    assert [(c.crops, c.crop_epochs) for c in configs] == [(True, 5), (True, 20), (False, 20)]


# --- the MiniLM per-text cache ------------------------------------------------------------------------------------
def test_the_minilm_cache_keeps_the_most_recent_texts_and_the_same_states(monkeypatch):
    """A running grounder cached every text it met for good (~24 KB per turn)."""
    from koba_ros.grounding import text_encoders

    monkeypatch.setattr(text_encoders, "CACHE_LIMIT", 3, raising=False)   # (raising: the old code had none)
    enc = text_encoders.MiniLMEncoder()
    enc.prefetch(["a training sentence"])
    texts = [f"put thing number {k} in the top left box" for k in range(6)]
    first = {t: enc([t])[0] for t in texts[:3]}
    enc([texts[0]])                                   # used again: the most recent now
    for t in texts[3:5]:
        enc([t])
    assert list(enc.cache) == [texts[0], texts[3], texts[4]]
    assert "a training sentence" in enc.prefetched    # training's texts are never dropped
    for t in texts[:3]:                               # dropped or kept, the same states as when first encoded
        assert torch.equal(enc([t])[0], first[t])
    assert len(enc.cache) == 3
    states, mask = enc(texts)                         # one call with more new texts than the limit still works
    assert states.shape[0] == 6 and mask.any(1).all() and len(enc.cache) == 3
