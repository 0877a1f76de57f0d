"""AdamW over fp32 master weights (master_weights.py): the same update as torch's AdamW, bf16 weights that are the
rounded master, tied weights updated once, and the bench variant that uses it trains."""
import pytest
import torch

from koba_ros.nlp.bench import SHAPES, build, make_optimizer
from koba_ros.nlp.master_weights import MasterWeightAdamW


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def test_fp32_master_adamw_matches_torch_adamw():
    ours, ref = _model(), _model()
    opt = MasterWeightAdamW(ours.parameters(), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1,
                                foreach=False)
    x = torch.randn(16, 6)
    for step in range(6):
        if step == 3:  # a new learning rate takes effect without rebuilding anything
            opt.set_lr(3e-3)
            ref_opt.param_groups[0]["lr"] = 3e-3
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            model(x).pow(2).mean().backward()
            o.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(opt.step_count) == 6


def test_bf16_weights_are_the_rounded_master_and_tied_weights_update_once():
    model = _model().to(torch.bfloat16)
    model[2].weight = torch.nn.Parameter(torch.zeros(3, 8, dtype=torch.bfloat16))
    tied = torch.nn.Linear(8, 3, bias=False).to(torch.bfloat16)
    tied.weight = model[2].weight
    params = [*model.parameters(), tied.weight]
    opt = MasterWeightAdamW(params, lr=1e-3)
    assert opt.master.numel() == sum(p.numel() for p in model.parameters())  # the tied weight counted once
    before = opt.master.clone()
    model(torch.randn(4, 6, dtype=torch.bfloat16)).float().pow(2).mean().backward()
    opt.step()
    assert not torch.equal(opt.master, before)
    assert torch.equal(opt.flat, opt.master.to(torch.bfloat16))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in model.parameters()]), opt.flat)


def test_master_weights_refuse_mixed_dtypes_and_no_parameters():
    with pytest.raises(ValueError, match="one dtype"):
        MasterWeightAdamW([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2).bfloat16())])
    with pytest.raises(ValueError, match="one dtype"):
        MasterWeightAdamW([])


def test_bench_bf16_master_variant_trains_the_tiny_gpt():
    model, loss_fn = build("ours_bf16_master", SHAPES["tiny"], torch.device("cpu"))
    opt, step = make_optimizer("ours_bf16_master", model, cuda=False)
    assert next(model.parameters()).dtype == torch.bfloat16
    torch.manual_seed(0)
    ids = torch.randint(0, SHAPES["tiny"]["vocab_size"], (4, SHAPES["tiny"]["seq"] + 1))
    losses = []
    for _ in range(8):  # the same batch: the loss must fall
        loss = loss_fn(model, ids)
        loss.backward()
        step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
