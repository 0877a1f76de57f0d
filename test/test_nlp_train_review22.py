"""`koba lm train` review 22: min_lr above lr, exact resumes with dropout, changed configs on resume, non-finite
gradients and validation losses, checkpoint writes that fail or are interrupted, damaged state.json, embedding
sizes, out/checkpoint files, finished checkpoints, and the data windows."""
import errno
import json
import math
import shutil
import signal

import pytest
import torch
from safetensors.torch import load_file, save_file

import koba_ros.nlp.checkpoint as ck
import koba_ros.nlp.trainer as trainer_module
from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import load_checkpoint, save_checkpoint
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import TokenStream
from koba_ros.nlp.tokenizer import ByteTokenizer
from koba_ros.nlp.trainer import TrainConfig, check_resumed_config, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_train import TINY_MODEL
from test.test_nlp_train import tiny as plain_tiny


def tiny(tmp_path, model: dict | None = None, **overrides) -> TrainConfig:
    """test_nlp_train's tiny run without TensorBoard; `model` changes some of its model's settings."""
    return plain_tiny(tmp_path, model={**TINY_MODEL, **(model or {})}, tensorboard=False, **overrides)


def files(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def edit_state(checkpoint, change) -> None:
    path = checkpoint / "state.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


# 1 ---------------------------------------------------------------------------------------------------------------


def test_min_lr_above_lr_is_refused_in_one_line(tmp_path):
    with pytest.raises(KobaError, match=r"min_lr 0.0001 is above lr 3e-05; set min_lr <= lr") as caught:
        tiny(tmp_path, lr=3e-5)
    assert "\n" not in str(caught.value)
    assert tiny(tmp_path, lr=3e-5, min_lr=3e-5).min_lr == 3e-5  # equal is allowed


# 2 ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [dict(dropout=0.1), dict(positions="shape", shape_max_shift=8)])
def test_a_resume_with_random_draws_equals_the_uninterrupted_run_bit_for_bit(tmp_path, model):
    kw = dict(schedule="wso", model=model)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    train(tiny(tmp_path / "a", steps=8, **kw))
    train(tiny(tmp_path / "b", steps=4, **kw))
    train(tiny(tmp_path / "b", steps=8, **kw))
    a, _, _ = load_checkpoint(tmp_path / "a" / "run" / "checkpoint")
    b, _, meta = load_checkpoint(tmp_path / "b" / "run" / "checkpoint")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "cpu" in meta["rng"]


def test_a_checkpoint_without_saved_random_state_still_resumes(tmp_path):
    train(tiny(tmp_path, steps=4, model=dict(dropout=0.1)))
    edit_state(tmp_path / "run" / "checkpoint", lambda meta: meta.pop("rng"))
    assert train(tiny(tmp_path, steps=8, model=dict(dropout=0.1)))["steps"] == 8
    edit_state(tmp_path / "run" / "checkpoint", lambda meta: meta.update(rng={"cpu": "AAAA"}))
    with pytest.raises(KobaError, match="saved random state .rng. is damaged"):
        train(tiny(tmp_path, steps=12, model=dict(dropout=0.1)))


# 3 ---------------------------------------------------------------------------------------------------------------


def test_a_resume_refuses_another_model_or_tokenizer_and_names_changed_training_settings(tmp_path, capsys):
    train(tiny(tmp_path, steps=4))
    checkpoint = tmp_path / "run" / "checkpoint"
    before = files(checkpoint)
    for model, field in ((dict(attention_window=8), "attention_window"), (dict(init="small"), "init")):
        with pytest.raises(KobaError, match=f"model {field} is .* here but .* in the checkpoint") as caught:
            train(tiny(tmp_path, steps=8, model=model))
        assert "\n" not in str(caught.value)
    assert files(checkpoint) == before
    meta = load_checkpoint(checkpoint)[2]
    other = TrainConfig(tokenizer="bpe", vocab="vocab.json", merges="merges.txt", model=tiny(tmp_path).model)
    with pytest.raises(KobaError, match="tokenizer is 'bpe' here but 'byte' in the checkpoint"):
        check_resumed_config(other, meta, checkpoint, ByteTokenizer(), False)

    class Hashed(ByteTokenizer):
        digest = "1234"

    with pytest.raises(KobaError, match="digest"):
        check_resumed_config(tiny(tmp_path), {**meta, "tokenizer_digest": "abcd"}, checkpoint, Hashed(), False)
    capsys.readouterr()
    result = train(tiny(tmp_path, steps=8, lr=1e-2, batch_size=8, model=dict(dropout=0.1)))
    notices = [line for line in capsys.readouterr().err.splitlines() if "changed training settings" in line]
    assert len(notices) == 1 and "lr 0.003 -> 0.01" in notices[0] and "batch_size 4 -> 8" in notices[0]
    assert "model.dropout 0.0 -> 0.1" in notices[0]
    # cosine's rate at a step depends on the total (session 24: it changed without a word)
    assert "steps 4 -> 8" in notices[0] and "the cosine schedule's rate now follows the new total" in notices[0]
    tokens = [int(line.split(",")[1]) for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert tokens == [128, 256, 384, 512, 768, 1024, 1280, 1536]  # 4 x 32 tokens a step, then 8 x 32: cumulative
    assert result["tokens"] == 1536


# 4 ---------------------------------------------------------------------------------------------------------------


def test_a_non_finite_gradient_stops_before_the_update_and_keeps_the_finite_checkpoint(tmp_path, monkeypatch):
    real, calls = torch.nn.utils.clip_grad_norm_, []

    def clip(params, max_norm, *a, **k):  # one overflowing gradient element on step 4, the loss still finite
        params = list(params)
        calls.append(1)
        if len(calls) == 4:
            params[0].grad[ord("t"), 0] = float("inf")
        return real(params, max_norm, *a, **k)

    monkeypatch.setattr(trainer_module.torch.nn.utils, "clip_grad_norm_", clip)
    with pytest.raises(KobaError, match=r"the gradient norm is inf at step 4; stopped \(last good checkpoint kept "
                                        r"at .*: step 2, the weights after step 2\); resume from it with a lower lr"):
        train(tiny(tmp_path, steps=8, ckpt_every=2, eval_every=2))
    state, _, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["step"] == 2 and all(torch.isfinite(v).all() for v in state.values())


def test_a_non_finite_validation_loss_is_never_saved(tmp_path, monkeypatch):
    real, calls = trainer_module.evaluate, []

    def evaluate(*a, **k):
        calls.append(1)
        return float("nan") if len(calls) == 2 else real(*a, **k)

    monkeypatch.setattr(trainer_module, "evaluate", evaluate)
    with pytest.raises(KobaError, match=r"the validation loss is nan at step 4; .*step 2, the weights after step 2"):
        train(tiny(tmp_path, steps=8, ckpt_every=2, eval_every=2, keep_best=True))
    assert load_checkpoint(tmp_path / "run" / "checkpoint")[2]["step"] == 2
    assert load_checkpoint(tmp_path / "run" / "best")[2]["step"] == 2


def test_the_nan_loss_message_names_the_checkpoint_step_it_keeps(tmp_path):
    train(tiny(tmp_path, steps=2, ckpt_every=1, schedule="wso", warmup=0))
    # Step 3 breaks the weights (its own loss, from before its update, is finite): caught before its checkpoint.
    with pytest.raises(KobaError, match=r"loss of the updated weights is nan at step 3; stopped \(last good "
                                        r"checkpoint kept at .*: step 2, the weights after step 2\); resume from it "
                                        r"with a lower lr"):
        train(tiny(tmp_path, steps=20, ckpt_every=1, lr=1e30, schedule="wso", warmup=0, clip=0.0))


# 5, 6 ------------------------------------------------------------------------------------------------------------


def test_a_full_disk_while_saving_is_one_line_and_leaves_no_temporary_folder(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    state = {"w": torch.zeros(2)}
    save_checkpoint(tmp_path / "ck", state, None, {"step": 1})
    before = files(tmp_path / "ck")
    for error in (OSError(errno.ENOSPC, "No space left on device"),
                  SafetensorError("Error while serializing: IoError(No space left on device)")):
        def full(tensors, path, *a, error=error, **k):
            path.write_bytes(b"partial")
            raise error

        monkeypatch.setattr(ck, "save_file", full)
        with pytest.raises(KobaError, match=r"cannot write a checkpoint to .*ck: .*No space left on device") as caught:
            save_checkpoint(tmp_path / "ck", state, None, {"step": 2})
        assert "\n" not in str(caught.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"] and files(tmp_path / "ck") == before


def test_ctrl_c_during_a_save_removes_the_temporary_folder_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    state = {"w": torch.zeros(2)}
    save_checkpoint(tmp_path / "ck", state, None, {"step": 1})
    before = files(tmp_path / "ck")
    real = ck.save_file

    def interrupted(tensors, path, *a, **k):
        real(tensors, path, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ck", state, None, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"] and files(tmp_path / "ck") == before


def test_sigint_and_sigterm_are_held_back_while_the_checkpoint_is_swapped_in(tmp_path, monkeypatch):
    import os

    masks = []

    class RecordingOS:
        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, a, b):
            masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
            os.replace(a, b)

    save_checkpoint(tmp_path / "ck", {"w": torch.zeros(2)}, None, {"step": 1})
    monkeypatch.setattr(ck, "os", RecordingOS())
    save_checkpoint(tmp_path / "ck", {"w": torch.ones(2)}, None, {"step": 2})
    assert len(masks) == 2 and all({signal.SIGINT, signal.SIGTERM} <= mask for mask in masks)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # unblocked again
    assert load_checkpoint(tmp_path / "ck")[2]["step"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_a_checkpoint_left_aside_by_an_interrupted_swap_is_put_back_not_trained_over(tmp_path, capsys):
    train(tiny(tmp_path, steps=4))
    run = tmp_path / "run"
    before = files(run / "checkpoint")
    (run / "checkpoint").rename(run / ".checkpoint.replaced-abc123")
    capsys.readouterr()
    result = train(tiny(tmp_path, steps=4))
    assert "already at step 4 >= steps 4" in capsys.readouterr().err and result["steps"] == 4
    assert files(run / "checkpoint") == before and not (run / ".checkpoint.replaced-abc123").exists()
    shutil.copytree(run / "checkpoint", run / ".checkpoint.replaced-1")
    (run / "checkpoint").rename(run / ".checkpoint.replaced-2")
    with pytest.raises(KobaError, match="checkpoint is missing and 2 earlier checkpoints lie beside it"):
        train(tiny(tmp_path, steps=8))
    assert not (run / "checkpoint").exists()


# 7 ---------------------------------------------------------------------------------------------------------------


def _first_parameter_entries(tensors):
    name = sorted(tensors)[0].split("/")[1]
    return {k: v for k, v in tensors.items() if k.split("/")[1] != name}


DAMAGE = {
    "step a string": ("state", lambda m: m.update(step="four"), "step must be a non-negative integer"),
    "step null": ("state", lambda m: m.update(step=None), "step must be a non-negative integer"),
    "step negative": ("state", lambda m: m.update(step=-3), "step must be a non-negative integer"),
    "config not an object": ("state", lambda m: m.update(config="x"), "config is not a JSON object"),
    "optimizer not an object": ("state", lambda m: m.update(optimizer=[1]), "optimizer is not a JSON object"),
    "no parameter groups": ("state", lambda m: m["optimizer"].update(param_groups=[]), "has 0 parameter groups"),
    "loss_scale not an object": ("state", lambda m: m.update(loss_scale=[2]), "loss_scale is not a JSON object"),
    "foreign tensor names": ("optimizer", lambda t: {"weight": torch.zeros(3)}, "not an optimizer state entry"),
    "wrong shape": ("optimizer", lambda t: {**t, sorted(t)[0]: torch.zeros(7)}, "has shape .7,."),
    "a parameter's state missing": ("optimizer", _first_parameter_entries, "no AdamW step and moments for"),
}


def test_a_damaged_state_json_or_optimizer_state_is_refused_in_one_line(tmp_path):
    train(tiny(tmp_path, steps=4))
    good = tmp_path / "good"
    shutil.copytree(tmp_path / "run" / "checkpoint", good)
    for what, (target, damage, message) in DAMAGE.items():
        checkpoint = tmp_path / "run" / "checkpoint"
        shutil.rmtree(checkpoint)
        shutil.copytree(good, checkpoint)
        if target == "state":
            edit_state(checkpoint, damage)
        else:
            save_file(damage(load_file(checkpoint / "optimizer.safetensors")), checkpoint / "optimizer.safetensors")
        before = files(checkpoint)
        with pytest.raises(KobaError, match=message) as caught:
            train(tiny(tmp_path, steps=8))
        assert "\n" not in str(caught.value), what
        assert files(checkpoint) == before, what


# 8 ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("embed_rank", 0, "embed_rank must be an integer >= 1"),
    ("embed_rank", -2, "embed_rank must be an integer >= 1"),
    ("alone_codebooks", 0, "alone_codebooks must be an integer >= 1"),
    ("alone_codes", 1, "alone_codes must be an integer >= 2"),
    ("alone_codes", 0, "alone_codes must be an integer >= 2"),
    ("alone_dim", -1, "alone_dim must be an integer >= 0"),
    ("alone_hidden", -4, "alone_hidden must be an integer >= 0"),
])
def test_embedding_sizes_are_checked_up_front(field, value, message):
    embedding = "factorized" if field == "embed_rank" else "alone"
    with pytest.raises(KobaError, match=f"config: {message}.*got {value}"):
        TransformerConfig(embedding=embedding, **{field: value})
    TransformerConfig(embedding="alone", alone_codes=2, alone_codebooks=1, alone_dim=0, alone_hidden=0)


# 9 ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, extra", [("checkpoint", {}), ("best", dict(keep_best=True))])
def test_a_file_where_a_checkpoint_goes_is_refused_before_training(tmp_path, name, extra):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / name).write_text("mine")
    with pytest.raises(KobaError, match=f"run/{name} exists and is not a checkpoint folder"):
        train(tiny(tmp_path, steps=8, **extra))
    assert (tmp_path / "run" / name).read_text() == "mine"
    assert not (tmp_path / "run" / "metrics.csv").exists()  # refused before any step


# 10 --------------------------------------------------------------------------------------------------------------


def test_a_finished_checkpoint_reports_its_loss_and_says_it_is_already_there(tmp_path, capsys):
    train(tiny(tmp_path, steps=4))
    meta = load_checkpoint(tmp_path / "run" / "checkpoint")[2]
    capsys.readouterr()
    result = train(tiny(tmp_path, steps=2))
    assert result["steps"] == 4 and result["loss"] == round(meta["loss"], 4) and math.isfinite(result["loss"])
    json.dumps(result, allow_nan=False)  # valid JSON: no NaN
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "already at step 4 >= steps 2" in line] and len(err) == 1


# 11 --------------------------------------------------------------------------------------------------------------


def test_the_size_check_says_the_length_it_needs_and_every_window_is_drawn():
    """batch() draws starts in [0, len - seq_len]: the last whole window too (session 23; before, it was never drawn
    and a corpus's last token was never a target), so one window's tokens are enough, and the message says so."""
    stream = TokenStream(torch.arange(8 + 1), 8)
    x, y = stream.batch(3, torch.Generator().manual_seed(0))
    assert x[0].tolist() == list(range(8)) and y[0].tolist() == list(range(1, 9))
    _, _, starts = TokenStream(torch.arange(8 + 3), 8).batch(200, torch.Generator().manual_seed(0), with_starts=True)
    assert set(starts.tolist()) == {0, 1, 2}
    with pytest.raises(KobaError, match=r"has 8 tokens, fewer than one sequence of 8 tokens and its next-token "
                                        r"target \(9\)"):
        TokenStream(torch.arange(8), 8)


def test_val_fraction_0_without_val_data_says_what_to_set(tmp_path):
    with pytest.raises(KobaError, match="set val_fraction > 0 or val_data"):
        tiny(tmp_path, val_fraction=0.0)
