"""Training end to end on a tiny config: curves, checkpoints, resume, and every kind of bad input."""
import json
import math

import pytest
import torch
import yaml

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import check_compatible, load_checkpoint, load_model_state
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.schedules import lr_at
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

TEXT = "the red cube is in the top left box. put the brown fluffy toy in the top right box.\n" * 60


def tiny(tmp_path, **overrides) -> TrainConfig:
    data = tmp_path / "train.txt"
    data.write_text(TEXT)
    config = dict(model=dict(d_model=32, n_layers=1, n_heads=2, max_len=32), train_data=str(data), seq_len=32,
                  batch_size=4, steps=8, lr=3e-3, warmup=2, eval_every=4, eval_batches=2, ckpt_every=4,
                  out=str(tmp_path / "run"), progress=False)
    config.update(overrides)
    return TrainConfig.from_dict(config)


def test_training_lowers_loss_writes_curves_and_a_loadable_checkpoint(tmp_path):
    result = train(tiny(tmp_path, steps=20, eval_every=10, ckpt_every=10))
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 21
    first, last = float(rows[1].split(",")[3]), result["loss"]
    assert last < first - 1.0
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    state, optim, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["step"] == 20 and optim["state"]
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=1, n_heads=2, max_len=32))
    check_compatible(model, state, "ckpt")
    model.load_state_dict(state)


def test_resume_continues_exactly_where_training_stopped(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = train(tiny(tmp_path / "a", steps=8, schedule="wso"))  # WSO: the LR does not depend on the total
    train(tiny(tmp_path / "b", steps=4, schedule="wso"))
    resumed = train(tiny(tmp_path / "b", steps=8, schedule="wso"))
    a, _, _ = load_checkpoint(tmp_path / "a" / "run" / "checkpoint")
    b, _, _ = load_checkpoint(tmp_path / "b" / "run" / "checkpoint")
    assert resumed["steps"] == 8
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert math.isclose(straight["loss"], resumed["loss"], abs_tol=1e-4)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny(tmp_path, steps=20, ckpt_every=1, lr=1e30, warmup=0, clip=0.0)
    with pytest.raises(KobaError, match="loss is .* at step .*last good checkpoint kept"):
        train(config)
    state, _, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["step"] >= 1 and math.isfinite(meta["loss"])


@pytest.mark.parametrize("overrides, message", [
    (dict(seq_len=64), "exceeds model max_len"),
    (dict(steps=0), "steps must be positive"),
    (dict(schedule="step"), "schedule"),
    (dict(model=dict(d_model=30, n_heads=4)), "not divisible"),
    (dict(train_data="/nonexistent.txt"), "not found"),
])
def test_bad_configs_raise_one_line_errors(tmp_path, overrides, message):
    with pytest.raises(KobaError, match=message):
        train(tiny(tmp_path, **overrides))


def test_empty_and_too_short_datasets(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(KobaError, match="empty"):
        train(tiny(tmp_path, train_data=str(tmp_path / "empty.txt")))
    (tmp_path / "short.txt").write_text("hello")
    with pytest.raises(KobaError, match="fewer than one sequence"):
        train(tiny(tmp_path, train_data=str(tmp_path / "short.txt")))


def test_corrupt_and_foreign_checkpoints_are_refused_and_the_model_kept(tmp_path):
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=1, n_heads=2, max_len=32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(KobaError, match="corrupt"):
        load_model_state(tmp_path / "bad.safetensors")
    torch.save({"other.weight": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(KobaError, match="foreign"):
        check_compatible(model, load_model_state(tmp_path / "foreign.pt"), "foreign.pt")
    (tmp_path / "pickle.pt").write_bytes(b"not a zip or pickle")
    with pytest.raises(KobaError):
        load_model_state(tmp_path / "pickle.pt")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_resume_refuses_a_checkpoint_of_another_shape(tmp_path):
    train(tiny(tmp_path, steps=2))
    with pytest.raises(KobaError, match="does not fit this model"):
        train(tiny(tmp_path, steps=4, model=dict(d_model=64, n_layers=1, n_heads=2, max_len=32)))


def test_cli_train_prints_json_and_rejects_a_missing_config(tmp_path, capsys):
    config = tiny(tmp_path).to_dict()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["lm", "train", "--config", str(tmp_path / "c.yaml"), "--steps", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 3 and out["parameters"] > 0
    assert main(["lm", "train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd", "wso"])
def test_schedules_warm_up_then_follow_their_shape(schedule):
    lrs = [lr_at(s, 100, 1.0, warmup=10, schedule=schedule, min_lr=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    if schedule == "wso":
        assert min(lrs[10:]) == 1.0
    else:
        assert lrs[-1] < 0.2 and all(a >= b - 1e-12 for a, b in zip(lrs[10:], lrs[11:], strict=False))
    if schedule == "wsd":
        assert lrs[79] == 1.0 and lrs[85] < 1.0
