"""precision fp16: autocast in float16 with dynamic loss scaling (mixed_precision.py), run on the CPU, whose autocast
computes in float16 too. The two-rank cases (DDP, and FSDP where only one rank's shard overflows) are in
test_nlp_distributed.py."""
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp import trainer
from koba_ros.nlp.checkpoint import load_checkpoint
from koba_ros.nlp.mixed_precision import LossScaler, autocast_dtype
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.trainer import train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_train import tiny

CPU = torch.device("cpu")


class OverflowGradient(torch.autograd.Function):
    """The identity forward; backward makes every gradient non-finite, as an fp16 overflow does."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def overflowing_lm(overflow_at):
    """A TransformerLM whose training forward number n (from 1) overflows in backward when overflow_at(n) is true."""
    calls = [0]

    class OverflowingLM(TransformerLM):
        def forward(self, ids, targets=None, shift=None, **kw):
            logits, loss = super().forward(ids, targets, shift, **kw)
            if self.training and loss is not None:
                calls[0] += 1
                if overflow_at(calls[0]):
                    loss = OverflowGradient.apply(loss)
            return logits, loss

    return OverflowingLM


def test_autocast_dtype_per_precision_and_device():
    assert autocast_dtype("fp16", CPU) == torch.float16 and autocast_dtype("bf16", CPU) == torch.bfloat16
    assert autocast_dtype("bf16_master", CPU) == torch.bfloat16
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("fp32", CPU) is None


def test_loss_scaling_keeps_gradients_that_fp16_flushes_to_zero():
    """Micikevicius et al. 2018 §3.2: a gradient under fp16's smallest subnormal (6e-8) is lost in an fp16 backward
    unless the loss is scaled first; scaled, then unscaled in fp32, it equals the fp32 gradient."""
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(16, 16), torch.randn(8, 16)

    def weight_gradient(scaler=None, dtype=torch.float16):
        layer.zero_grad()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = layer(x).float().sum() * 1e-8  # dL/dy = 1e-8 per output, in fp16 inside the matmul's backward
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale(torch.optim.SGD(layer.parameters(), lr=0.0))
        return layer.weight.grad.clone()

    reference = weight_gradient(dtype=torch.float32)
    assert reference.abs().min() > 0
    assert torch.count_nonzero(weight_gradient()) == 0  # unscaled: all flushed to zero
    assert torch.count_nonzero(weight_gradient(LossScaler(True, CPU, constant=1.0))) == 0  # loss_scale 1: the same
    for scaler in (LossScaler(True, CPU), LossScaler(True, CPU, constant=1024.0)):
        assert ((weight_gradient(scaler) - reference).norm() / reference.norm()).item() < 1e-2


def test_an_overflowing_step_is_skipped_and_halves_the_scale_and_a_clean_one_updates():
    layer = torch.nn.Linear(4, 4)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = LossScaler(True, CPU)
    before = layer.weight.detach().clone()
    scaler.scale(OverflowGradient.apply(layer(torch.ones(1, 4)).sum())).backward()
    scaler.unscale(optimizer)
    assert scaler.step(optimizer) is False and torch.equal(layer.weight, before)
    assert scaler.value == 2.0 ** 15 and scaler.skipped == 1 and scaler.skipped_in_a_row == 1
    optimizer.zero_grad()
    scaler.scale(layer(torch.ones(1, 4)).sum()).backward()
    scaler.unscale(optimizer)
    assert scaler.step(optimizer) is True and not torch.equal(layer.weight, before)
    assert scaler.skipped == 1 and scaler.skipped_in_a_row == 0
    constant = LossScaler(True, CPU, constant=1024.0)
    constant.scale(OverflowGradient.apply(layer(torch.ones(1, 4)).sum())).backward()
    constant.unscale(optimizer)
    assert constant.step(optimizer) is False and constant.value == 1024.0 and constant.skipped == 1  # stays put
    off = LossScaler(False, CPU)
    assert off.value is None and off.state_dict() == {} and off.scale(torch.tensor(2.0)).item() == 2.0


def test_fp16_trains_like_fp32_with_fp32_weights_and_logs_its_loss_scale(tmp_path, monkeypatch):
    seen = set()

    class RecordingLM(TransformerLM):
        def forward(self, ids, targets=None, shift=None, **kw):
            logits, loss = super().forward(ids, targets, shift, **kw)
            seen.add(logits.dtype)
            return logits, loss

    (tmp_path / "fp32").mkdir()
    fp32 = train(tiny(tmp_path / "fp32", steps=16, device="cpu", precision="fp32"))
    monkeypatch.setattr(trainer, "TransformerLM", RecordingLM)
    fp16 = train(tiny(tmp_path, steps=16, device="cpu", precision="fp16"))
    assert seen == {torch.float16}
    assert fp16["precision"] == "fp16 autocast, dynamic loss scaling" and fp32["precision"] == "fp32"
    assert fp16["skipped_steps"] == 0 and fp16["loss_scale"] == 2.0 ** 16 and fp32["loss_scale"] is None
    assert abs(fp16["loss"] - fp32["loss"]) < 0.05 < fp32["loss"]  # the same training, to fp16's rounding
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].endswith(",loss_scale") and all(r.endswith(",65536") for r in rows[1:])
    norm16 = float(rows[1].split(",")[4])
    norm32 = float((tmp_path / "fp32" / "run" / "metrics.csv").read_text().splitlines()[1].split(",")[4])
    assert abs(norm16 / norm32 - 1) < 0.02  # logged (and clipped) unscaled: the same first step as fp32's
    state, _, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    assert meta["loss_scale"]["scale"] == 2.0 ** 16


def test_fp16_resume_goes_on_with_the_saved_loss_scale(tmp_path, monkeypatch):
    """Step 1 overflows (training forward number 2) in the straight run and in the first half of the resumed one;
    both skip it, so they end on the same weights, and the halved scale survives the checkpoint."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    def run(folder, steps, overflow_at):
        monkeypatch.setattr(trainer, "TransformerLM", overflowing_lm(overflow_at))
        return train(tiny(folder, steps=steps, schedule="wso", precision="fp16", device="cpu"))

    straight = run(tmp_path / "a", 8, lambda n: n == 2)
    first = run(tmp_path / "b", 4, lambda n: n == 2)
    resumed = run(tmp_path / "b", 8, lambda n: False)
    assert straight["skipped_steps"] == first["skipped_steps"] == 1 and resumed["skipped_steps"] == 0
    assert straight["loss_scale"] == resumed["loss_scale"] == 2.0 ** 15
    a, _, _ = load_checkpoint(tmp_path / "a" / "run" / "checkpoint")
    b, _, _ = load_checkpoint(tmp_path / "b" / "run" / "checkpoint")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "a" / "run" / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[-1] for r in rows[:3]] == ["65536", "32768", "32768"]
    assert rows[1].split(",")[4] in ("inf", "nan")  # the skipped step's gradient norm, logged as it was


def test_gradients_that_overflow_step_after_step_stop_the_run_and_keep_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "TransformerLM", overflowing_lm(lambda n: n > 4))  # from step 4 on
    monkeypatch.setattr(trainer, "LossScaler", lambda *args: LossScaler(*args, patience=3))
    with pytest.raises(KobaError, match=r"fp16: the gradients overflowed on 3 steps in a row up to step 7 .*"
                                        r"last good checkpoint kept.*bf16 or fp32"):
        train(tiny(tmp_path, steps=20, ckpt_every=4, precision="fp16", device="cpu"))
    _, _, meta = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert meta["step"] == 4 and meta["loss_scale"]["scale"] == 2.0 ** 16


def test_a_bad_precision_or_loss_scale_is_a_one_line_error(tmp_path):
    with pytest.raises(KobaError, match="precision must be one of auto, bf16, fp16, fp32, bf16_master"):
        tiny(tmp_path, precision="fp8")
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(KobaError, match="loss_scale must be 0 .dynamic. or a positive number"):
            tiny(tmp_path, precision="fp16", loss_scale=bad)
