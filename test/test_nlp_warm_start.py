"""init_from (a run that starts from another run's weights), `koba lm train --set`, and `koba lm expand` followed by
training on: the CLI path of fine-tuning and of growing a model family."""
import json

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import expand_checkpoint as expand_module
from koba_ros.nlp.checkpoint import load_checkpoint, save_checkpoint
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.trainer import TrainConfig, apply_overrides, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

PRETRAIN = "the red cube is in the top left box. put the brown fluffy toy in the top right box.\n" * 60
FINETUNE = "move left five centimeters. open the gripper. go home. stop.\n" * 60
MODEL = dict(d_model=32, n_layers=2, n_heads=2, max_len=32, positions="rope")


def run_config(tmp_path, name, text=PRETRAIN, **overrides) -> dict:
    data = tmp_path / f"{name}.txt"
    data.write_text(text)
    config = dict(model=dict(MODEL), train_data=str(data), seq_len=32, batch_size=4, steps=6, lr=3e-3, warmup=1,
                  schedule="wso", eval_every=3, eval_batches=1, ckpt_every=3, out=str(tmp_path / name),
                  progress=False)
    config.update(overrides)
    return config


def weights(folder) -> dict:
    return load_checkpoint(folder / "checkpoint")[0]


def max_difference(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture
def source(tmp_path):
    """A pre-trained run (30 steps on the picking text) to start others from."""
    train(TrainConfig.from_dict(run_config(tmp_path, "source", steps=30, eval_every=30, ckpt_every=30)))
    return tmp_path / "source"


def test_a_warm_started_run_begins_at_the_sources_weights_with_its_model(tmp_path, source):
    fresh = TransformerLM(TransformerConfig(**MODEL)).state_dict()
    assert max_difference(weights(source), fresh) > 1e-3  # training moved it: a run that ignored init_from differs
    config = run_config(tmp_path, "tuned", FINETUNE, steps=1, lr=1e-9, min_lr=0.0, weight_decay=0.0,
                        init_from=str(source))
    del config["model"]  # the source's model
    config = TrainConfig.from_dict(config)
    assert config.model == TransformerConfig(**MODEL) and config.tokenizer == "byte"
    summary = train(config)
    assert summary["init_from"] == str(source) and summary["steps"] == 1
    assert max_difference(weights(tmp_path / "tuned"), weights(source)) < 1e-6  # one step of lr 1e-9 moves ~1e-9
    assert load_checkpoint(tmp_path / "tuned" / "checkpoint")[2]["config"]["init_from"] == str(source)


def test_fine_tuning_starts_from_what_pre_training_learned(tmp_path, source):
    """The first step's loss on a new text: well below a fresh model's (the bytes' statistics carry over)."""
    tuned = run_config(tmp_path, "tuned", FINETUNE, steps=1, init_from=str(source))
    scratch = run_config(tmp_path, "scratch", FINETUNE, steps=1)
    train(TrainConfig.from_dict(tuned))
    train(TrainConfig.from_dict(scratch))
    first = {name: float((tmp_path / name / "metrics.csv").read_text().splitlines()[1].split(",")[3])
             for name in ("tuned", "scratch")}
    assert first["scratch"] > 5.0 and first["tuned"] < first["scratch"] - 1.0, first


def test_a_stopped_warm_started_run_resumes_its_own_checkpoint_not_the_source(tmp_path, source):
    straight = train(TrainConfig.from_dict(run_config(tmp_path, "straight", FINETUNE, steps=4,
                                                      init_from=str(source))))
    train(TrainConfig.from_dict(run_config(tmp_path, "stopped", FINETUNE, steps=2, init_from=str(source))))
    # The source trains on meanwhile: a resume that read init_from again would start from other weights.
    train(TrainConfig.from_dict(run_config(tmp_path, "source", steps=36, eval_every=6, ckpt_every=6)))
    resumed = train(TrainConfig.from_dict(run_config(tmp_path, "stopped", FINETUNE, steps=4, init_from=str(source))))
    assert resumed["steps"] == 4 and resumed["parameter_digest"] == straight["parameter_digest"]
    assert max_difference(weights(tmp_path / "stopped"), weights(tmp_path / "straight")) < 1e-6


def test_a_warm_start_that_does_not_fit_the_source_is_one_line_and_writes_nothing(tmp_path, source):
    def refused(match, **overrides):
        config = run_config(tmp_path, "bad", FINETUNE, init_from=str(source))
        config.update(overrides)
        with pytest.raises(KobaError, match=match):
            train(TrainConfig.from_dict(config))
        assert not (tmp_path / "bad" / "checkpoint").exists()

    refused("model norm is 'b2t' here but 'pre'", model={**MODEL, "norm": "b2t"})
    refused("model d_model is 64 here but 32", model={**MODEL, "d_model": 64})
    refused("tokenizer is 'gpt2' here but 'byte'", tokenizer="gpt2")
    refused("checkpoint .*nowhere not found", init_from=str(tmp_path / "nowhere"))
    bare = tmp_path / "bare"
    save_checkpoint(bare, weights(source), None, {"step": 3})  # weights without the config that says what they are
    refused("has no training config", init_from=str(bare))
    # Built without from_dict (no merge): the weights are still checked against the model before loading.
    direct = TrainConfig.from_dict(run_config(tmp_path, "bad", FINETUNE))
    direct.init_from, direct.model = str(source), TransformerConfig(**{**MODEL, "positions": "learned"})
    with pytest.raises(KobaError, match="model positions is 'learned' here but 'rope'"):
        train(direct)
    # Training-only fields may differ: dropout here, none in pre-training.
    tuned = train(TrainConfig.from_dict(run_config(tmp_path, "drop", FINETUNE, steps=1, init_from=str(source),
                                                   model={**MODEL, "dropout": 0.1})))
    assert tuned["steps"] == 1


def test_set_overrides_config_keys_as_yaml_values(tmp_path):
    data = {"model": {"d_model": 32}, "lr": 1e-3}
    out = apply_overrides(data, ["lr=3e-4", "model.dropout=0.1", "steps=7", "val_data=", "model.norm=b2t"])
    assert out == {"model": {"d_model": 32, "dropout": 0.1, "norm": "b2t"}, "lr": "3e-4", "steps": 7, "val_data": ""}
    assert TrainConfig.from_dict(out).lr == 3e-4  # YAML 1.1 reads 3e-4 as a string; the config takes it as a number
    assert data == {"model": {"d_model": 32}, "lr": 1e-3}  # the caller's dict is untouched
    assert "model" not in apply_overrides({}, ["lr=1"])  # no model section made up (init_from takes the source's)
    for bad, match in (("lr", "needs KEY=VALUE"), ("optim.lr=1", "needs KEY=VALUE"), ("model.a.b=1", "KEY=VALUE"),
                       ("lr=[", "not a YAML value")):
        with pytest.raises(KobaError, match=match):
            apply_overrides({}, [bad])


def test_koba_lm_train_set_reaches_the_run_and_unknown_keys_are_refused(tmp_path, capsys):
    import yaml

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run_config(tmp_path, "cli")))
    assert main(["lm", "train", "--config", str(path), "--set", "steps=2", "--set", "model.n_layers=1",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2
    assert load_checkpoint(tmp_path / "cli" / "checkpoint")[2]["config"]["model"]["n_layers"] == 1
    assert main(["lm", "train", "--config", str(path), "--set", "learning_rate=1"]) == 2
    assert "unknown keys ['learning_rate']" in capsys.readouterr().err


def expand_cli(capsys, *args) -> dict:
    assert main(["lm", "expand", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_koba_lm_expand_preserves_the_loss_and_training_on_starts_from_it(tmp_path, source, capsys):
    text = str(tmp_path / "source.txt")
    grown = tmp_path / "grown"
    result = expand_cli(capsys, "--checkpoint", str(source), "--out", str(grown), "--width-factor", "2",
                        "--layers", "4", "--data", text)
    assert result["d_model"] == [32, 64] and result["n_layers"] == [2, 4]
    assert result["parameters_after"] > 4 * result["parameters_before"] > 0
    assert result["loss_change"] <= 1e-4 and result["loss_before"] < 4.0
    assert result["suggested_lr"] == pytest.approx(3e-3 * (32 / 64) ** 0.5)
    # sample/eval read the grown folder like any run: the same score as the source's on another text
    other = tmp_path / "other.txt"
    other.write_text(FINETUNE)
    scores = []
    for folder in (source, grown):
        assert main(["lm", "eval", "--checkpoint", str(folder), "--data", str(other), "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out)["loss"])
    assert abs(scores[0] - scores[1]) <= 1e-4
    # Training on from the grown weights, at the suggested LR: the first step already has the source's loss.
    config = run_config(tmp_path, "trained_on", steps=3, lr=result["suggested_lr"], init_from=str(grown))
    del config["model"]
    summary = train(TrainConfig.from_dict(config))
    assert summary["parameters"] == result["parameters_after"]
    first = float((tmp_path / "trained_on" / "metrics.csv").read_text().splitlines()[1].split(",")[3])
    assert first < result["loss_before"] + 0.3


def test_koba_lm_expand_writes_nothing_when_the_loss_would_change(tmp_path, source, monkeypatch, capsys):
    real = expand_module.expand

    def broken(*args, **kwargs):  # a growth operator with a bug: one weight off
        model = real(*args, **kwargs)
        with torch.no_grad():
            model.blocks[0].ffn.fc.weight.mul_(1.5)
        return model

    monkeypatch.setattr(expand_module, "expand", broken)
    args = ["lm", "expand", "--checkpoint", str(source), "--out", str(tmp_path / "grown"), "--width-factor", "2",
            "--data", str(tmp_path / "source.txt")]
    assert main(args) == 2
    assert "the grown model's loss is" in capsys.readouterr().err and not (tmp_path / "grown").exists()


def test_koba_lm_expand_refusals_are_one_line(tmp_path, source, capsys):
    def refused(match, *args, out="grown"):
        assert main(["lm", "expand", "--checkpoint", str(source), "--out", str(tmp_path / out), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err

    refused("nothing to grow")
    refused("nothing to grow", "--layers", "2")
    refused("width factor must be >= 1", "--width-factor", "0")
    refused("the new depth >= the old depth", "--layers", "1")
    refused("already holds a checkpoint", "--width-factor", "2", out="source")
    refused("eval_tokens must be >= 2", "--width-factor", "2", "--eval-tokens", "1")
    b2t = run_config(tmp_path, "b2t", steps=1, model={**MODEL, "norm": "b2t"})
    train(TrainConfig.from_dict(b2t))
    assert main(["lm", "expand", "--checkpoint", str(tmp_path / "b2t"), "--out", str(tmp_path / "g2"),
                 "--layers", "4"]) == 2
    assert "only for Pre-LN" in capsys.readouterr().err


def test_keep_best_keeps_the_lowest_validation_loss_across_a_resume(tmp_path, source):
    """Fine-tuning on a tiny text overfits: out/best holds the weights of the lowest validation loss seen, also when
    the run is stopped and resumed, and sample/eval read it like any checkpoint."""
    val = tmp_path / "val.txt"
    val.write_text("close the gripper slowly. go home now.\n" * 40)
    tuned = dict(steps=24, eval_every=2, ckpt_every=2, lr=1e-2, init_from=str(source), val_data=str(val),
                 keep_best=True)
    straight = train(TrainConfig.from_dict(run_config(tmp_path, "straight", FINETUNE, **tuned)))
    rows = [r.split(",") for r in (tmp_path / "straight" / "metrics.csv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    vals = [(int(r[0]), float(r[header.index("val_loss")])) for r in rows if r[header.index("val_loss")]]
    best_step, best_val = min(vals, key=lambda sv: sv[1])
    state, _, meta = load_checkpoint(tmp_path / "straight" / "best")
    assert meta["step"] == best_step and abs(meta["val_loss"] - best_val) < 1e-4
    assert straight["best"]["val_loss"] == pytest.approx(best_val, abs=1e-4)
    assert best_step < 24 and vals[-1][1] > best_val + 0.3  # it overfits (measured: best 2.963 at step 12, 3.775 at 24)

    train(TrainConfig.from_dict(run_config(tmp_path, "resumed", FINETUNE, **{**tuned, "steps": 16})))
    train(TrainConfig.from_dict(run_config(tmp_path, "resumed", FINETUNE, **tuned)))
    resumed_state, _, resumed_meta = load_checkpoint(tmp_path / "resumed" / "best")
    assert resumed_meta["step"] == best_step
    assert max_difference(resumed_state, state) < 1e-6
    from koba_ros.nlp.evaluation import evaluate_checkpoint

    assert evaluate_checkpoint(tmp_path / "straight" / "best", str(val))["loss"] > 0
