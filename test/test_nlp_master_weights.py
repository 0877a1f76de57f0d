"""AdamW over fp32 master weights (master_weights.py): the same update as torch's AdamW, bf16 weights that are the
rounded master, tied weights updated once, its state converted to torch's per-parameter layout (FSDP's) and back
without changing the run, and the bench variant that uses it trains."""
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.bench import SHAPES, build, variant_optimizer
from koba_ros.nlp.master_weights import MasterWeightAdamW, flat_to_param_state, param_state_to_flat
from koba_ros.nlp.trainer import TrainConfig, named_groups, restore_optimizer


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def test_fp32_master_adamw_matches_torch_adamw():
    ours, ref = _model(), _model()
    # Two groups, as the trainer makes them: weight decay on the matrices only.
    def groups(model):
        return [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]

    opt = MasterWeightAdamW(groups(ours), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, dtype=torch.float32)
    ref_opt = torch.optim.AdamW(groups(ref), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, foreach=False)
    x = torch.randn(16, 6)
    for step in range(6):
        if step == 3:  # a new learning rate takes effect without rebuilding anything
            opt.set_lr(3e-3)
            for group in ref_opt.param_groups:
                group["lr"] = 3e-3
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            model(x).pow(2).mean().backward()
            o.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(opt.step_count) == 6


def test_bf16_weights_are_the_rounded_master_and_tied_weights_update_once():
    model = _model()
    exact = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    tied = torch.nn.Linear(8, 3, bias=False)
    tied.weight = model[2].weight
    opt = MasterWeightAdamW([*model.parameters(), tied.weight], lr=1e-3)
    assert opt.master.numel() == sum(p.numel() for p in model.parameters())  # the tied weight counted once
    assert torch.equal(opt.master, exact)  # the fp32 values before rounding, not their bf16 copies
    before = opt.master.clone()
    model(torch.randn(4, 6, dtype=torch.bfloat16)).float().pow(2).mean().backward()
    opt.step()
    assert not torch.equal(opt.master, before)
    assert torch.equal(opt.flat, opt.master.to(torch.bfloat16))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in model.parameters()]), opt.flat)


def test_state_round_trips_and_a_foreign_state_is_refused():
    model, twin = _model(), _model()
    opt, twin_opt = MasterWeightAdamW(model.parameters()), MasterWeightAdamW(twin.parameters())
    model(torch.randn(4, 6, dtype=torch.bfloat16)).float().sum().backward()
    opt.step()
    full = opt.full_precision_state(model)
    assert full["0.weight"].dtype == torch.float32 and torch.equal(full["0.weight"].reshape(-1), opt.master[:48])
    twin_opt.load_state_dict(opt.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))
    assert float(twin_opt.step_count) == 1
    with pytest.raises(KobaError, match="not this model"):
        MasterWeightAdamW(torch.nn.Linear(2, 2).parameters()).load_state_dict(opt.state_dict())
    with pytest.raises(KobaError, match="not this model"):
        opt.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())
    with pytest.raises(KobaError, match="no parameters"):
        MasterWeightAdamW([])


def _named_groups(model, lr=1e-2):
    """The trainer's two groups (named_groups), as optimizer parameter groups."""
    matrices, rest = ([p for _, p in group] for group in named_groups(model))
    return [{"params": matrices, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]


MASTER = TrainConfig(precision="bf16_master")
MASTER_META = {"config": {"precision": "bf16_master"}}


def test_state_converts_to_torch_adamw_layout_and_back_and_the_run_goes_on_unchanged():
    """precision bf16_master under FSDP keeps torch.optim.AdamW's per-parameter state (the fp32 shards are the
    master), without FSDP the flat state: restore_optimizer converts either into the other. With fp32 weights the
    two optimizers compute the same AdamW, so a run continued after a conversion must match one never converted."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    x = torch.randn(16, 6)

    def steps(model, opt, n):
        for _ in range(n):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()

    def adamw(model):
        return torch.optim.AdamW(_named_groups(model), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, foreach=False)

    def master(model):
        return MasterWeightAdamW(_named_groups(model), lr=1e-2, betas=(0.8, 0.95), eps=1e-6, dtype=torch.float32)

    # flat -> per-parameter: 3 steps with the flat optimizer, 3 more with torch's AdamW, against 6 flat ones.
    straight, first = _model(), _model()
    steps(straight, master(straight), 6)
    opt = master(first)
    steps(first, opt, 3)
    layout = [(name, p.shape) for group in named_groups(first) for name, p in group]
    per_param = flat_to_param_state(opt.state_dict(), layout)
    assert set(per_param) == {"0.weight", "0.bias", "2.weight", "2.bias"} and float(per_param["2.bias"]["step"]) == 3
    second = _model()
    second.load_state_dict(first.state_dict())
    second_opt = adamw(second)
    restore_optimizer(second_opt, second, opt.state_dict(), MASTER_META, MASTER)
    steps(second, second_opt, 3)
    for a, b in zip(second.parameters(), straight.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    fresh = _model()  # the check can fail: without the moments the same 3 steps end elsewhere
    fresh.load_state_dict(first.state_dict())
    steps(fresh, adamw(fresh), 3)
    assert (fresh[0].weight - straight[0].weight).abs().max() > 1e-3

    # per-parameter -> flat: 3 torch AdamW steps, then 3 flat ones, against 6 of torch's.
    straight, first = _model(), _model()
    steps(straight, adamw(straight), 6)
    first_opt = adamw(first)
    steps(first, first_opt, 3)
    saved = get_optimizer_state_dict(first, first_opt, options=StateDictOptions(full_state_dict=True))
    second = _model()
    second.load_state_dict(first.state_dict())
    second_opt = master(second)
    restore_optimizer(second_opt, second, saved, MASTER_META, MASTER)
    assert float(second_opt.step_count) == 3
    steps(second, second_opt, 3)
    for a, b in zip(second.parameters(), straight.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_conversion_refuses_states_that_do_not_fit_in_one_line():
    model = _model()
    opt = MasterWeightAdamW(_named_groups(model), dtype=torch.float32)
    layout = [(name, p.shape) for group in named_groups(model) for name, p in group]
    with pytest.raises(KobaError, match="does not fit"):
        flat_to_param_state(opt.state_dict(), layout[:-1])
    per_param = flat_to_param_state(opt.state_dict(), layout)
    with pytest.raises(KobaError, match="no AdamW moments for 2.bias"):
        param_state_to_flat({k: v for k, v in per_param.items() if k != "2.bias"}, layout, opt.master)
    per_param["0.bias"]["step"] = torch.tensor(4.0)
    with pytest.raises(KobaError, match="stepped"):
        param_state_to_flat(per_param, layout, opt.master)
    # a run of another precision: refused whichever layout its state has
    with pytest.raises(KobaError, match="precision"):
        restore_optimizer(opt, model, torch.optim.AdamW(model.parameters()).state_dict(),
                          {"config": {"precision": "bf16"}}, MASTER)
    with pytest.raises(KobaError, match="precision"):
        restore_optimizer(torch.optim.AdamW(model.parameters()), model, opt.state_dict(), {}, TrainConfig())


@pytest.mark.parametrize("variant", ["ours_bf16_master", "hf_bf16_master"])
def test_bench_bf16_master_variants_train_the_tiny_gpt(variant):
    """Ours and the Hugging Face baseline get the same precision recipe, so the bench compares models, not recipes."""
    if variant.startswith("hf"):
        pytest.importorskip("transformers", reason="the Hugging Face baseline needs transformers")
    model, loss_fn = build(variant, SHAPES["tiny"], torch.device("cpu"))
    opt, step = variant_optimizer(variant, model, cuda=False)
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


def test_gradients_accumulate_into_the_flat_buffer_and_a_replaced_gradient_still_counts():
    model = _model()
    opt = MasterWeightAdamW(model.parameters(), lr=1e-2, dtype=torch.float32)
    x = torch.randn(4, 6)
    model(x).sum().backward()
    assert torch.equal(torch.cat([p.grad.reshape(-1) for p in model.parameters()]), opt.flat_grad)  # in place
    expected = opt.flat_grad.clone()
    model[0].bias.grad = model[0].bias.grad.clone()  # as a user or a wrapper might: no longer our view
    opt.step()
    assert torch.equal(opt.flat_grad, expected)
    opt.zero_grad()
    assert not opt.flat_grad.any() and model[0].bias.grad.data_ptr() == opt.flat_grad[48:].data_ptr()


def test_compiled_update_equals_the_eager_one_and_never_recompiles():
    """The GPU path compiles the update (inductor); on the CPU it must give the eager result, in one graph, through a
    learning-rate change (lr and step are tensors)."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # other tests in this process may have compiled graphs
    models = [_model(), _model()]
    opts = [MasterWeightAdamW(models[0].parameters(), lr=1e-2, compile=True),
            MasterWeightAdamW(models[1].parameters(), lr=1e-2)]
    x = torch.randn(16, 6, dtype=torch.bfloat16)
    for step in range(4):
        for model, opt in zip(models, opts, strict=True):
            if step == 2:
                opt.set_lr(1e-3)
            opt.zero_grad()
            model(x).float().pow(2).mean().backward()
            opt.step()
    torch.testing.assert_close(opts[0].master, opts[1].master, rtol=0, atol=1e-6)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
