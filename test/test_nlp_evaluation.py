"""`koba lm eval` (evaluation.py): every token after the first scored once, with the context its window gives;
loss, perplexity and bits per byte; a model trained on one sentence is near-certain of it and not of other text."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.evaluation import score, windows
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

SENTENCE = "pick up the red cube and put it in the bottom right box. "


def random_lm() -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, max_len=16)).eval()


@pytest.mark.parametrize("n,seq_len,stride", [(50, 16, 16), (50, 16, 5), (50, 16, 1), (17, 16, 16), (2, 16, 4),
                                              (100, 7, 3)])
def test_windows_score_every_target_once(n, seq_len, stride):
    scored = []
    for begin, end, first in windows(n, seq_len, stride):
        assert 0 <= first < end - begin <= seq_len and end <= n - 1
        targets = list(range(begin + 1 + first, end + 1))
        assert all(t - begin - 1 >= (seq_len - stride if begin else 0) for t in targets)  # the promised context
        scored += targets
    assert scored == list(range(1, n))


def brute_force(model, tokens, context: int) -> float:
    """Sum of -log p(x_t | the `context` tokens before t), one forward pass per target."""
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(tokens)):
            x = torch.tensor([tokens[max(0, t - context):t]])
            total += float(F.cross_entropy(model(x)[0][0, -1:], torch.tensor([tokens[t]])))
    return total


def test_stride_one_is_the_full_context_loss_and_no_overlap_equals_chunk_by_chunk():
    model = random_lm()
    tokens = torch.randint(0, 256, (40,), generator=torch.Generator().manual_seed(3))
    # stride 1: every target after the first window sees exactly seq_len - 1 earlier tokens (fewer at the start)
    total, count = score(model, tokens, seq_len=16, stride=1, batch_size=5)
    assert count == 39 and total == pytest.approx(brute_force(model, tokens.tolist(), 16), rel=1e-5)
    # stride = seq_len: disjoint windows; one batch or one window per batch gives the same sum
    total, count = score(model, tokens, seq_len=16, stride=16, batch_size=8)
    chunks = 0.0
    with torch.no_grad():
        for begin in range(0, 39, 16):
            x, y = tokens[begin:min(begin + 16, 39)], tokens[begin + 1:min(begin + 17, 40)]
            chunks += float(F.cross_entropy(model(x[None])[0][0], y, reduction="sum"))
    assert count == 39 and total == pytest.approx(chunks, rel=1e-5)
    assert score(model, tokens, 16, 16, batch_size=1)[0] == pytest.approx(total, rel=1e-5)
    # more context per token: a different (here: random-model) loss, same count
    assert score(model, tokens, 16, 4)[1] == 39


def test_broken_weights_give_a_one_line_error_not_a_nan_result():
    model = random_lm()
    with torch.no_grad():
        model.head.weight[3, 0] = float("nan")
    with pytest.raises(KobaError, match="not finite"):
        score(model, torch.arange(30), seq_len=16, stride=16)


def test_bad_windows_are_one_line_errors():
    for args in ((1, 16, 16), (50, 16, 0), (50, 16, 17), (50, 0, 1)):
        with pytest.raises(KobaError, match="eval"):
            windows(*args)


@pytest.fixture(scope="module")
def sentence_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval_run")
    (folder / "train.txt").write_text(SENTENCE * 80)
    torch.set_num_threads(1)
    train(TrainConfig.from_dict(dict(
        model=dict(d_model=64, n_layers=2, n_heads=2, max_len=64), train_data=str(folder / "train.txt"),
        seq_len=64, batch_size=8, steps=200, lr=1e-2, warmup=10, eval_every=200, eval_batches=1, ckpt_every=200,
        out=str(folder / "run"), progress=False, device="cpu")))
    return folder


def test_a_model_trained_on_a_sentence_is_sure_of_it_and_not_of_other_text(sentence_run, capsys):
    (sentence_run / "same.txt").write_text(SENTENCE * 10)
    (sentence_run / "other.txt").write_text("The quick brown fox jumps over the lazy dog. " * 12)
    results = {}
    for name in ("same", "other"):
        assert main(["lm", "eval", "--checkpoint", str(sentence_run / "run"), "--data",
                     str(sentence_run / f"{name}.txt"), "--json"]) == 0
        results[name] = json.loads(capsys.readouterr().out)
    same, other = results["same"], results["other"]
    assert same["seq_len"] == 64 and same["stride"] == 64  # the run's training length, windows not overlapping
    assert same["scored_tokens"] == same["tokens"] - 1 == len(SENTENCE) * 10 - 1  # bytes: one token each
    assert same["loss"] < 0.1 and other["loss"] > 2.0
    assert same["perplexity"] == pytest.approx(math.exp(same["loss"]), rel=1e-3)
    assert same["bits_per_byte"] == pytest.approx(same["loss"] * same["scored_tokens"] / math.log(2) / same["bytes"],
                                                  rel=1e-3)
    # a smaller stride gives the same scored count; the plain form is one line
    assert main(["lm", "eval", "--checkpoint", str(sentence_run / "run" / "checkpoint"), "--data",
                 str(sentence_run / "same.txt"), "--seq-len", "32", "--stride", "8"]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and f"over {same['scored_tokens']} tokens (windows of 32, stride 8)" in line


def test_eval_cli_refuses_what_it_cannot_use(sentence_run, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "one.txt").write_text("a")
    run = str(sentence_run / "run")
    for args, message in (
            (["--data", str(tmp_path / "empty.txt")], "is empty"),
            (["--data", str(tmp_path / "missing.txt")], "not found"),
            (["--data", str(tmp_path / "one.txt")], "at least 2"),
            (["--data", str(sentence_run / "train.txt"), "--seq-len", "65"], "learned positions"),
            (["--data", str(sentence_run / "train.txt"), "--stride", "100"], "stride"),
            (["--data", str(sentence_run / "train.txt"), "--batch-size", "0"], "batch size")):
        assert main(["lm", "eval", "--checkpoint", run, *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (args, err)
    assert main(["lm", "eval", "--checkpoint", str(tmp_path), "--data", str(tmp_path / "one.txt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_scoring_builds_no_autograd_graph():
    """score runs under no_grad (a decorator once slid onto the generator inserted above it, and every eval, expand
    check and reproduction built a graph it never used: memory, time, and a requires_grad warning)."""
    model, grad_modes = random_lm(), []
    model.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    score(model, torch.randint(0, 256, (40,)), seq_len=16, stride=8)
    assert grad_modes and not any(grad_modes)
