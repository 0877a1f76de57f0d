"""Activation checkpointing (Transformer.checkpoint_blocks, training's `activation_checkpointing`): the blocks run
again in the backward pass, and loss, gradients and a whole training run are what they are without it."""
import pytest
import torch

from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.trainer import train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_train import tiny


def lm(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(d_model=32, n_layers=3, n_heads=4, max_len=16, **overrides))


@pytest.mark.parametrize("overrides", [{"dropout": 0.1}, {"norm": "b2t", "positions": "rope", "dropout": 0.1},
                                       {"embedding": "alone", "norm": "post"}], ids=["pre", "b2t_rope", "alone_post"])
def test_same_loss_and_gradients_with_the_blocks_recomputed(overrides):
    ids = torch.randint(0, 256, (2, 13), generator=torch.Generator().manual_seed(1))
    results = []
    for recompute in (False, True):
        model = lm(**overrides).train()
        model.checkpoint_blocks = recompute
        torch.manual_seed(7)  # the same dropout masks; checkpoint replays them in the recomputation
        loss = model(ids[:, :-1], ids[:, 1:])[1]
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all(torch.allclose(grads_a[n], grads_b[n], atol=1e-6, rtol=0) for n in grads_a)


def test_the_blocks_run_twice_per_training_step_and_once_otherwise():
    model = lm()
    model.checkpoint_blocks = True
    calls = []
    for block in model.blocks:
        block.register_forward_pre_hook(lambda module, inputs: calls.append(module))  # recomputation may stop early
    ids = torch.randint(0, 256, (2, 9))
    model.train()
    model(ids[:, :-1], ids[:, 1:])[1].backward()
    assert len(calls) == 2 * 3  # forward, then again in backward
    calls.clear()
    with torch.no_grad():
        model(ids)
    model.eval()
    model(ids)
    assert len(calls) == 2 * 3  # no gradients or eval mode: nothing stored, nothing recomputed
    calls.clear()
    model.checkpoint_blocks = False
    model.train()
    model(ids[:, :-1], ids[:, 1:])[1].backward()
    assert len(calls) == 3


def test_a_training_run_with_it_ends_with_the_same_weights(tmp_path, monkeypatch):
    checkpointed = []
    original = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint",
                        lambda *args, **kwargs: checkpointed.append(1) or original(*args, **kwargs))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = train(tiny(tmp_path / "a", steps=6, model=dict(d_model=32, n_layers=2, n_heads=2, max_len=32)))
    assert not checkpointed
    recomputed = train(tiny(tmp_path / "b", steps=6, activation_checkpointing=True,
                            model=dict(d_model=32, n_layers=2, n_heads=2, max_len=32)))
    assert len(checkpointed) == 6 * 2  # every training step, both blocks (evaluation runs without gradients)
    assert recomputed["parameter_digest"] == plain["parameter_digest"] and recomputed["loss"] == plain["loss"]


def test_compiled_with_recompute_equals_eager_without(tmp_path, monkeypatch):
    # torch.compile traces the checkpointed blocks; aot_eager: inductor's capture and autograd split without
    # its C++ code generation, which takes minutes on this CPU.
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compile_(model, backend="aot_eager"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = train(tiny(tmp_path / "a", steps=3))
    compiled = train(tiny(tmp_path / "b", steps=3, compile=True, activation_checkpointing=True))
    assert compiled["loss"] == pytest.approx(plain["loss"], abs=1e-5)
