"""Grounding models in and out, against bad input (found by a review): a model file of another architecture or with
unusable temperatures is one line; training on too little data, or into NaN, saves nothing; `koba train` never trains
over a model file already in --out unless told to."""
import math

import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.grounding.grounder import Grounder, default_model_path
from koba_ros.grounding.training import TrainConfig, train
from koba_ros.paths import models_dir


def variant(tmp_path, name, change):
    ckpt = torch.load(models_dir() / "grounding" / "grounding.pt", weights_only=True)
    change(ckpt)
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("name, change, message", [
    ("wider.pt", lambda c: c["config"].update(hidden=64), "loading state_dict"),
    ("bare.pt", lambda c: c.pop("state_dict"), "state_dict"),
    ("byte.pt", lambda c: c["config"].update(encoder="byte", byte={"foo": 1}), "foo"),
    ("negative.pt", lambda c: c["config"].update(t_target=-1.0), "temperatures must be finite and > 0"),
    ("nan.pt", lambda c: c["config"].update(t_target=math.nan), "temperatures must be finite and > 0"),
])
def test_a_model_file_of_another_architecture_or_with_unusable_temperatures_is_one_line(tmp_path, name, change,
                                                                                        message):
    with pytest.raises(KobaError, match=message) as info:
        Grounder(variant(tmp_path, name, change))
    assert "\n" not in str(info.value) and str(info.value).startswith("cannot read grounding model")


def test_an_ensemble_temperature_must_be_finite():
    members = [str(default_model_path().parent / "grounding.pt")]
    with pytest.raises(KobaError, match="finite and positive"):
        Grounder(members, temperature=(math.inf, 1.0))


def test_too_little_data_or_a_nan_loss_saves_nothing_and_leaves_an_earlier_model(tmp_path):
    earlier = tmp_path / "grounding.pt"
    earlier.write_bytes(b"an earlier run")
    for cfg, message in ((TrainConfig(scenes=5, per_scene=1, epochs=1), "0 optimizer steps"),
                         (TrainConfig(scenes=5, per_scene=30, epochs=4, lr=1e6), "loss became nan")):
        with pytest.raises(KobaError, match=message):
            train(cfg, tmp_path, progress=False, log=lambda *_: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grounding.pt"] and earlier.read_bytes() == b"an earlier run"


@pytest.mark.parametrize("what, name", [("grounding", "grounding.pt"), ("crop-kinds", "crop_kinds.pt")])
def test_koba_train_does_not_train_over_a_model_already_in_out_unless_forced(tmp_path, capsys, monkeypatch, what,
                                                                            name):
    from koba_ros import cli
    from koba_ros.grounding import crop_kinds, training

    trained = []
    for module, function in ((training, "train"), (crop_kinds, "train_crop_kinds")):
        monkeypatch.setattr(module, function, lambda *a, **k: trained.append(1) or pytest.skip("stop here"))
    (tmp_path / name).write_bytes(b"the committed model")
    assert cli.main(["train", what, "--scenes", "5", "--out", str(tmp_path)]) == 2
    assert "already exists; give another --out, or --force" in capsys.readouterr().err and not trained
    with pytest.raises(pytest.skip.Exception):  # --force gets as far as training
        cli.main(["train", what, "--scenes", "5", "--out", str(tmp_path), "--force"])
    assert trained == [1]
