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


TINY_MODEL = dict(d_model=32, n_layers=1, n_heads=2, max_len=32)


def tiny(tmp_path, **overrides) -> TrainConfig:
    data = tmp_path / "train.txt"
    data.write_text(TEXT)
    config = dict(model=dict(TINY_MODEL), train_data=str(data), seq_len=32, batch_size=4, steps=8, lr=3e-3, warmup=2,
                  eval_every=4, eval_batches=2, ckpt_every=4, out=str(tmp_path / "run"), progress=False)
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


def test_resume_continues_exactly_where_training_stopped(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = train(tiny(tmp_path / "a", steps=8, schedule="wso"))  # WSO: the LR does not depend on the total
    train(tiny(tmp_path / "b", steps=4, schedule="wso"))
    capsys.readouterr()
    resumed = train(tiny(tmp_path / "b", steps=8, schedule="wso"))
    assert "changed training settings" not in capsys.readouterr().err   # a longer WSO run changes no rate
    a, _, _ = load_checkpoint(tmp_path / "a" / "run" / "checkpoint")
    b, _, _ = load_checkpoint(tmp_path / "b" / "run" / "checkpoint")
    assert resumed["steps"] == 8
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert math.isclose(straight["loss"], resumed["loss"], abs_tol=1e-4)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    """Two good steps, then a rate that blows the weights up. The step that breaks them still has a finite loss (it
    is the loss before its update): its checkpoint used to be written over the good one, and resuming from that
    "last good checkpoint", as the message advises, met NaN at once. The kept checkpoint must be step 2's, whose
    weights give a finite loss."""
    train(tiny(tmp_path, steps=2, ckpt_every=1, schedule="wso", warmup=0))
    with pytest.raises(KobaError, match="is .* at step .*last good checkpoint kept"):
        train(tiny(tmp_path, steps=20, ckpt_every=1, lr=1e30, schedule="wso", warmup=0, clip=0.0))
    state, _, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["step"] == 2 and math.isfinite(meta["loss"])
    model = TransformerLM(TransformerConfig.from_dict(TINY_MODEL))
    model.load_state_dict(state)
    x = torch.randint(0, 256, (2, 32))
    assert all(torch.isfinite(v).all() for v in state.values()) and torch.isfinite(model(x, x)[1])


@pytest.mark.parametrize("overrides, message", [
    (dict(seq_len=64), "exceeds model max_len"),
    (dict(steps=0), "steps must be positive"),
    (dict(schedule="step"), "schedule"),
    (dict(precision="fp8"), "precision"),
    (dict(dist_timeout=0), "dist_timeout must be > 0"),
    (dict(model=dict(d_model=30, n_heads=4)), "not divisible"),
    (dict(train_data="/nonexistent.txt"), "not found"),
    (dict(steps="many"), "steps must be an integer, got 'many'"),
    (dict(lr="fast"), "lr must be a number, got 'fast'"),
    (dict(compile="yes"), "compile must be true or false"),
    (dict(out=["runs"]), "out must be a string"),
    (dict(model=dict(d_model=32.0, n_heads=2)), "d_model must be an integer"),
    (dict(model=[32]), "model must be a mapping"),
    (dict(init_from=3), "init_from must be a string"),
    (dict(beta1=1.5), "beta1 and beta2 must be in"),
    (dict(min_lr=float("nan")), "min_lr one >= 0"),
    (dict(lr=float("inf")), "lr must be a finite number"),
    (dict(warmup=-1), "warmup must be >= 0"),
    (dict(decay_frac=2.0), "decay_frac in"),
    (dict(clip=-1.0), "clip must be finite"),
    (dict(parallel="zero3"), "parallel must be ddp or fsdp"),
    (dict(out=" "), "out must name a folder"),
])
def test_bad_configs_raise_one_line_errors(tmp_path, overrides, message):
    with pytest.raises(KobaError, match=message):
        train(tiny(tmp_path, **overrides))


def test_a_float_written_3e_4_in_yaml_is_a_number(tmp_path):
    """PyYAML (YAML 1.1) reads `lr: 3e-4` as the string '3e-4'; the config takes it as the number it means."""
    import yaml

    data = yaml.safe_load("lr: 3e-4\nmin_lr: 1e-5\nmodel: {alone_p: 5e-1}\n")
    assert data["lr"] == "3e-4"
    config = TrainConfig.from_dict(data)
    assert (config.lr, config.min_lr, config.model.alone_p) == (3e-4, 1e-5, 0.5)


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
    # The command line's overrides are checked too: --steps 0 and an empty --out are errors, not "use the file's".
    for extra, message in ((["--steps", "0"], "steps must be positive"), (["--out", ""], "out must name a folder"),
                           (["--out", "/proc/koba/run"], "cannot use /proc/koba")):
        assert main(["lm", "train", "--config", str(tmp_path / "c.yaml"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    (tmp_path / "bad.yaml").write_bytes(b"\xff\xfe\x80 steps: 3\n")
    assert main(["lm", "train", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "is not UTF-8 YAML text" in capsys.readouterr().err


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


def test_tensorboard_scalars_match_metrics_csv_and_a_resume_logs_each_step_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny(tmp_path, steps=4, schedule="wso"))
    metrics = tmp_path / "run" / "metrics.csv"
    with metrics.open("a") as f:  # a run that logged steps 5-6 after its step-4 checkpoint, then died
        f.write("5,0,1e-3,9.0,1.0,,0\n6,0,1e-3,9.0,1.0,,0\n")
    train(tiny(tmp_path, steps=8, schedule="wso"))
    rows = [line.split(",") for line in metrics.read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == list(range(1, 9))
    assert all(float(r[3]) < 9.0 for r in rows)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    points = events.Scalars("train/loss")
    assert [p.step for p in points] == list(range(1, 9))
    assert [p.value for p in points] == pytest.approx([float(r[3]) for r in rows], abs=1e-4)
    assert [p.step for p in events.Scalars("val/loss")] == [4, 8]


def test_gradients_are_clipped_before_the_update_and_logged_before_clipping(tmp_path, monkeypatch):
    from koba_ros.nlp import trainer

    seen = []
    make = trainer.make_optimizer

    def recording_optimizer(model, config, device):
        optimizer = make(model, config, device)
        step = optimizer.step

        def step_and_record(*args, **kwargs):
            seen.append(torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None)).item())
            return step(*args, **kwargs)
        optimizer.step = step_and_record
        return optimizer

    monkeypatch.setattr(trainer, "make_optimizer", recording_optimizer)
    train(tiny(tmp_path, steps=3, clip=0.01, grad_accum=2))
    logged = [float(line.split(",")[4]) for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert len(seen) == 3 and max(seen) <= 0.01 * (1 + 1e-4)
    assert min(logged) > 0.1  # the logged norm is the one before clipping


def test_progress_bar_counts_optimiser_steps(tmp_path, capsys):
    train(tiny(tmp_path, steps=3, progress=True))
    err = capsys.readouterr().err
    assert "train" in err and "3/3" in err


@pytest.mark.timeout(900)
def test_inductor_compiled_training_matches_eager(tmp_path):
    """torch.compile with its default backend, inductor: graph capture and C++ code generation on the training path.
    In the default run since session 19 (22 s with a cold compile cache on this CPU, 5 s warm); until then the
    default run used the eager backend (capture only) and inductor was a slow test."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    eager = train(tiny(tmp_path / "a", steps=2))
    compiled = train(tiny(tmp_path / "b", steps=2, compile=True))
    assert compiled["loss"] == pytest.approx(eager["loss"], abs=1e-3)


class NotAWeight:  # a pickled object: weights_only=True must refuse to build it (no code runs on load)
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused_and_a_corrupt_resume_checkpoint_stops_training(tmp_path, capsys):
    torch.save({"w": torch.zeros(2), "evil": NotAWeight()}, tmp_path / "evil.pt")
    with pytest.raises(KobaError, match="corrupt or not a weights file"):
        load_model_state(tmp_path / "evil.pt")
    assert "this must never run" not in capsys.readouterr().out
    train(tiny(tmp_path, steps=2))
    model_file = tmp_path / "run" / "checkpoint" / "model.safetensors"
    model_file.write_bytes(b"\x00" * 64)
    with pytest.raises(KobaError, match="corrupt"):
        train(tiny(tmp_path, steps=4))
    assert model_file.read_bytes() == b"\x00" * 64  # left as it was for the user to inspect


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("auto", torch.float32)])
def test_bf16_autocast_path_runs_on_the_cpu_too(tmp_path, monkeypatch, precision, dtype):
    """The GPU's bf16 autocast code path, exercised on the CPU (precision: bf16); auto is fp32 on a CPU."""
    from koba_ros.nlp import trainer

    seen = set()

    class RecordingLM(TransformerLM):
        def forward(self, ids, targets=None, shift=None):
            logits, loss = super().forward(ids, targets, shift)
            seen.add(logits.dtype)
            return logits, loss

    monkeypatch.setattr(trainer, "TransformerLM", RecordingLM)
    result = train(tiny(tmp_path, steps=6, precision=precision, device="cpu"))
    assert seen == {dtype} and result["precision"] == ("bf16 autocast" if precision == "bf16" else "fp32")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert float(rows[-1].split(",")[3]) < float(rows[0].split(",")[3])  # it still trains
    state, _, _ = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())  # weights stay fp32


def test_bf16_master_trains_resumes_exactly_and_saves_the_fp32_master(tmp_path):
    """precision bf16_master: the model computes with bf16 weights, AdamW updates fp32 master weights
    (master_weights.py); the checkpoint holds the master, so a resume continues exactly."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = train(tiny(tmp_path / "a", steps=8, schedule="wso", precision="bf16_master", device="cpu"))
    assert straight["precision"] == "bf16 weights, fp32 master AdamW"
    rows = (tmp_path / "a" / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert float(rows[-1].split(",")[3]) < float(rows[0].split(",")[3]) - 0.3  # it trains
    train(tiny(tmp_path / "b", steps=4, schedule="wso", precision="bf16_master", device="cpu"))
    resumed = train(tiny(tmp_path / "b", steps=8, schedule="wso", precision="bf16_master", device="cpu"))
    a, optim, _ = load_checkpoint(tmp_path / "a" / "run" / "checkpoint")
    b, _, _ = load_checkpoint(tmp_path / "b" / "run" / "checkpoint")
    assert optim["param_groups"][0]["kind"] == "master_weight_adamw"
    assert all(torch.equal(a[k], b[k]) for k in a) and straight["loss"] == resumed["loss"]
    weights = a["blocks.0.ffn.fc.weight"]
    assert weights.dtype == torch.float32 and not torch.equal(weights, weights.bfloat16().float())  # not rounded
    # An autocast run can start from these weights, but not from this optimizer state: one line, not a crash.
    with pytest.raises(KobaError, match="optimizer|state"):
        train(tiny(tmp_path / "b", steps=10, schedule="wso", precision="bf16", device="cpu"))


def test_bf16_master_with_fsdp_outside_torchrun_is_the_single_process_recipe(tmp_path):
    """parallel only applies under torchrun (two gloo ranks: test_nlp_distributed.py); alone it is the flat master."""
    result = train(tiny(tmp_path, steps=4, precision="bf16_master", parallel="fsdp", device="cpu"))
    assert result["precision"] == "bf16 weights, fp32 master AdamW"
    _, optim, _ = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert optim["param_groups"][0]["kind"] == "master_weight_adamw"


def test_graceful_stop_records_the_first_signal_and_a_second_one_stops_at_once():
    import os
    import signal

    from koba_ros.nlp.graceful_stop import GracefulStop

    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM" and stop.exit_code == 143  # recorded; the process goes on
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored on leaving


def test_sigterm_mid_run_saves_the_step_it_ends_on_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """A cluster's preemption (SIGTERM) or a Ctrl-C must not lose the steps since the last periodic checkpoint: the
    run finishes its step, checkpoints it, prints its summary and exits 143; resuming gives the same weights as never
    stopping (schedule wso: the lr does not depend on the step count left)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "train.txt").write_text(TEXT)
    config = dict(model=dict(d_model=32, n_layers=1, n_heads=2, max_len=32), train_data=str(tmp_path / "train.txt"),
                  seq_len=32, batch_size=4, steps=400, lr=3e-3, warmup=2, schedule="wso", eval_every=1000,
                  eval_batches=1, ckpt_every=1000, out=str(tmp_path / "stopped"), progress=False, device="cpu")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "koba_ros.cli", "lm", "train", "--config", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics, deadline = tmp_path / "stopped" / "metrics.csv", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and \
            (not metrics.is_file() or len(metrics.read_text().splitlines()) < 4):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM: stopping after this step" in err
    summary = json.loads(out.splitlines()[-1])
    assert summary["stopped_by"] == "SIGTERM" and 3 <= summary["steps"] < 400
    _, _, meta = load_checkpoint(tmp_path / "stopped" / "checkpoint")
    assert meta["step"] == summary["steps"]  # the step it ended on, not the last periodic one (there was none)
    assert int(metrics.read_text().splitlines()[-1].split(",")[0]) == summary["steps"]

    resumed = train(TrainConfig.from_dict(config))
    straight = train(TrainConfig.from_dict({**config, "out": str(tmp_path / "straight")}))
    assert resumed["steps"] == straight["steps"] == 400 and resumed["stopped_by"] is None
    a, _, _ = load_checkpoint(tmp_path / "stopped" / "checkpoint")
    b, _, _ = load_checkpoint(tmp_path / "straight" / "checkpoint")
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_a_resume_reads_metrics_written_by_a_version_with_more_columns(tmp_path):
    """metrics.csv from a newer koba_ros (an extra column) must not stop an older one's resume."""
    from koba_ros.nlp.curves import COLUMNS, MetricsLog, read_rows

    path = tmp_path / "metrics.csv"
    path.write_text(",".join(COLUMNS + ("newer",)) + "\n" + "\n".join(
        ",".join([str(step), "0", "1e-3", "2.0", "1.0", "", "10"] + [""] * (len(COLUMNS) - 7) + ["x"])
        for step in (1, 2, 3)) + "\n")
    MetricsLog(path, True, resume_step=2)
    rows = read_rows(path)
    assert [r["step"] for r in rows] == ["1", "2"] and "newer" not in rows[0]


def test_an_incomplete_checkpoint_is_refused_not_trained_over(tmp_path):
    """A resume that finds a checkpoint folder without its weights or its state must not start again from step 0
    and overwrite what is there."""
    train(tiny(tmp_path, steps=4))
    checkpoint = tmp_path / "run" / "checkpoint"
    for missing in ("state.json", "model.safetensors"):
        saved = (checkpoint / missing).read_bytes()
        (checkpoint / missing).unlink()
        before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
        with pytest.raises(KobaError, match=f"incomplete .no {missing}"):
            train(tiny(tmp_path, steps=8))
        assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before
        (checkpoint / missing).write_bytes(saved)
    (checkpoint / "state.json").write_text("[1, 2]")
    with pytest.raises(KobaError, match="not a JSON object"):
        train(tiny(tmp_path, steps=8))


def test_a_checkpoint_is_never_written_over_a_file_or_a_folder_of_other_things(tmp_path):
    """save_checkpoint swaps a finished folder in place of a checkpoint; it refuses anything else there, and its
    temporary names never touch a user's <out>.old or <out>.tmp."""
    from koba_ros.nlp.checkpoint import save_checkpoint

    state = {"w": torch.zeros(2)}
    (tmp_path / "afile").write_text("mine")
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    for target in (tmp_path / "afile", runs):
        with pytest.raises(KobaError, match="is not a checkpoint folder"):
            save_checkpoint(target, state, None, {})
    assert (tmp_path / "afile").read_text() == "mine" and (runs / "a").is_dir()
    for sibling in ("ck.old", "ck.tmp"):
        (tmp_path / sibling).mkdir()
        (tmp_path / sibling / "keep.txt").write_text("keep")
    save_checkpoint(tmp_path / "ck", state, None, {"step": 1})
    save_checkpoint(tmp_path / "ck", state, None, {"step": 2})  # replaces its own checkpoint
    assert load_checkpoint(tmp_path / "ck")[2]["step"] == 2
    assert all((tmp_path / s / "keep.txt").read_text() == "keep" for s in ("ck.old", "ck.tmp"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ck", "ck.old", "ck.tmp", "runs"]
    with pytest.raises(KobaError, match="cannot write a checkpoint to /proc/koba"):
        save_checkpoint("/proc/koba/ck", state, None, {})
