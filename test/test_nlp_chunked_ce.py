"""Chunked linear + cross-entropy (chunked_cross_entropy.py, config loss_chunk): the same loss and gradients as the
head + F.cross_entropy, the same training, under bf16, bf16_master, torch.compile and in the bench variant."""
import csv

import pytest
import torch
import torch.nn.functional as F

from koba_ros.errors import KobaError
from koba_ros.nlp.bench import SHAPES, build, variant_optimizer
from koba_ros.nlp.chunked_cross_entropy import chunked_cross_entropy
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

V, T, B = 97, 16, 3  # 48 target rows: chunks of 7 do not divide them


def lm(loss_chunk: int, tie: bool = False, dtype=torch.float32) -> TransformerLM:
    torch.manual_seed(0)  # the same weights for every loss_chunk
    return TransformerLM(TransformerConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=2, max_len=T, pad_id=0,
                                           tie_embeddings=tie, loss_chunk=loss_chunk)).to(dtype)


def batch(seed: int = 0):
    ids = torch.randint(0, V, (B, T + 1), generator=torch.Generator().manual_seed(seed))
    targets = ids[:, 1:].clone()
    targets[0, :5] = -100  # padding-like ignored positions
    targets[2, 9] = -100
    return ids[:, :-1], targets


def loss_and_grads(model, ids, targets, autocast: bool = False):
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits, loss = model(ids, targets)
    loss.backward()
    return logits, loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def assert_grads_close(ours: dict, ref: dict, rel: float) -> None:
    assert ours.keys() == ref.keys()
    for name in ref:
        scale = ref[name].float().abs().max().item()
        torch.testing.assert_close(ours[name].float(), ref[name].float(), rtol=0, atol=rel * scale + 1e-12,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("chunk", [1, 7, 48, 500])  # one row, not dividing 48, exactly one chunk, more than N
def test_fp32_loss_and_every_gradient_equal_the_head_and_f_cross_entropy(chunk, tie):
    """Tied: the head is the embedding table, so its gradient is the embedding's plus the head's, as in the plain
    model (named_parameters lists the shared tensor once, under embed)."""
    ids, targets = batch()
    _, ref_loss, ref = loss_and_grads(lm(0, tie), ids, targets)
    logits, loss, ours = loss_and_grads(lm(chunk, tie), ids, targets)
    assert logits is None  # never materialised
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
    assert_grads_close(ours, ref, rel=1e-5)
    if tie:
        assert "head.weight" not in ours and ours["embed.weight"].abs().sum() > 0


def test_bf16_weights_and_bf16_autocast_match_within_a_few_bf16_roundings():
    """Tolerance: the bf16 logits and the fp32 log-sum-exp and loss are the same numbers, so the losses agree to fp32
    summation order. The gradients differ by rounding only: the head's weight gradient is summed over chunks in fp32
    and rounded to bf16 once, the plain head's comes out of one bf16 GEMM, and that difference flows back through the
    bf16 layers. bf16 keeps 8 significant bits (one rounding: at most 2^-8 of the value), so we allow 2^-6 (four
    roundings) of each tensor's largest entry; measured here: at most 0.5 %."""
    ids, targets = batch(1)
    for dtype, autocast in ((torch.bfloat16, False), (torch.float32, True)):
        for tie in (False, True):
            _, ref_loss, ref = loss_and_grads(lm(0, tie, dtype), ids, targets, autocast)
            _, loss, ours = loss_and_grads(lm(7, tie, dtype), ids, targets, autocast)
            assert loss.dtype == ref_loss.dtype == torch.float32
            torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
            assert_grads_close(ours, ref, rel=2 ** -6)


def test_all_targets_ignored_gives_zero_loss_and_zero_gradients_where_f_cross_entropy_gives_nan():
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(V, 8, requires_grad=True)
    ignored = torch.full((10,), -100)
    reference = F.cross_entropy(hidden @ weight.t(), ignored)
    reference.backward()
    assert torch.isnan(reference) and not hidden.grad.any() and not weight.grad.any()  # 0 / 0; gradients 0
    hidden.grad, weight.grad = None, None
    loss = chunked_cross_entropy(hidden, weight, ignored, chunk=3)
    loss.backward()
    assert loss.item() == 0.0 and not hidden.grad.any() and not weight.grad.any()
    with torch.no_grad():
        assert chunked_cross_entropy(hidden, weight, ignored, chunk=3).item() == 0.0


def test_evaluation_without_gradients_gives_the_same_loss_and_logits_still_come_without_targets():
    ids, targets = batch(2)
    plain, chunked = lm(0).eval(), lm(5).eval()
    with torch.no_grad():
        ref_logits, ref_loss = plain(ids, targets)
        logits, loss = chunked(ids, targets)
        assert logits is None and loss.grad_fn is None
        torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(chunked(ids)[0], ref_logits)  # no targets: logits as before, no loss
        assert chunked(ids)[1] is None


def test_only_the_gradients_asked_for_are_computed_and_the_upstream_gradient_scales_them():
    torch.manual_seed(0)
    hidden = torch.randn(9, 8, requires_grad=True)
    weight = torch.randn(V, 8)  # frozen head
    targets = torch.randint(0, V, (9,))
    (3.0 * chunked_cross_entropy(hidden, weight, targets, chunk=4)).backward()
    reference = hidden.detach().clone().requires_grad_()
    (3.0 * F.cross_entropy(reference @ weight.t(), targets)).backward()
    assert_grads_close({"hidden": hidden.grad}, {"hidden": reference.grad}, rel=1e-5)
    assert weight.grad is None


def test_bad_chunk_and_shapes_are_refused_in_one_line():
    with pytest.raises(KobaError, match="loss_chunk must be 0"):
        TransformerConfig(loss_chunk=-1)
    with pytest.raises(KobaError, match="loss_chunk must be an integer, got 2.5"):
        TransformerConfig.from_dict({"loss_chunk": 2.5})
    with pytest.raises(KobaError, match="needs hidden"):
        chunked_cross_entropy(torch.randn(4, 8), torch.randn(V, 6), torch.zeros(4, dtype=torch.long), chunk=2)
    with pytest.raises(KobaError, match="needs hidden"):
        chunked_cross_entropy(torch.randn(4, 8), torch.randn(V, 8), torch.zeros(5, dtype=torch.long), chunk=2)
    with pytest.raises(KobaError, match="chunk must be a positive"):
        chunked_cross_entropy(torch.randn(4, 8), torch.randn(V, 8), torch.zeros(4, dtype=torch.long), chunk=0)


def _train_losses(tmp_path, loss_chunk: int, **overrides) -> tuple[list, list, dict]:
    out = tmp_path / f"chunk{loss_chunk}"
    (tmp_path / "train.txt").write_text("put the red cube in the top left box. the teddy bear is brown.\n" * 60)
    config = TrainConfig.from_dict(dict(
        model=dict(d_model=32, n_layers=1, n_heads=2, max_len=32, loss_chunk=loss_chunk),
        train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=6, lr=3e-3, warmup=2,
        eval_every=3, eval_batches=2, ckpt_every=6, out=str(out), progress=False, tensorboard=False, **overrides))
    result = train(config)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [float(r["loss"]) for r in rows], [float(r["val_loss"]) for r in rows if r["val_loss"]], result


def test_training_with_chunked_loss_gives_the_same_losses_fp32(tmp_path):
    """6 steps of AdamW (the trainer's loop, evaluation included): the logged losses (4 decimals) agree."""
    plain, plain_val, _ = _train_losses(tmp_path, 0)
    chunked, chunked_val, _ = _train_losses(tmp_path, 37)  # 128 rows per batch: 37 does not divide them
    assert plain[-1] < plain[0] - 0.3  # it trains
    assert chunked == pytest.approx(plain, abs=2e-4) and chunked_val == pytest.approx(plain_val, abs=2e-4)


def test_bf16_master_training_with_chunked_loss_trains_like_without(tmp_path):
    """bf16 weights + fp32 master AdamW (master_weights.py): the runs round differently from the first weight
    gradient on, so the losses are not identical; measured here 1e-4 apart at most, against a fall of 0.57 in the
    6 steps. The tolerance, 5e-3, leaves room for another CPU's bf16 GEMMs and is still 100x below that fall."""
    plain, _, _ = _train_losses(tmp_path, 0, precision="bf16_master", device="cpu")
    chunked, _, result = _train_losses(tmp_path, 40, precision="bf16_master", device="cpu")
    assert result["precision"] == "bf16 weights, fp32 master AdamW"
    assert chunked[-1] < chunked[0] - 0.3
    assert chunked == pytest.approx(plain, abs=5e-3)


@pytest.mark.parametrize("backend", [
    "aot_eager",  # dynamo + AOTAutograd trace the Function into forward and backward graphs; no code generation
    "inductor",  # what the GPU bench runs; C++ code generation: 16 s with a cold compile cache here (session 19)
])
def test_torch_compile_traces_the_chunked_loss_in_one_graph_and_matches_eager(backend):
    """fullgraph=True: any graph break in the chunk loop or the autograd.Function fails the test."""
    torch._dynamo.reset()
    ids, targets = batch(3)
    _, ref_loss, ref = loss_and_grads(lm(7, tie=True), ids, targets)
    compiled = torch.compile(lm(7, tie=True), backend=backend, fullgraph=True)
    _, loss, ours = loss_and_grads(compiled, ids, targets)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert_grads_close({k.removeprefix("_orig_mod."): v for k, v in ours.items()}, ref, rel=1e-4)


def test_bench_variant_bf16_master_chunked_ce_trains_the_tiny_gpt_like_bf16_master():
    """The bench's candidate: same model and recipe as ours_bf16_master, the loss in 4 chunks of 64 rows; the same
    batch repeated, so both losses fall (by 0.1 in 6 steps), and stay within bf16 rounding of each other (measured:
    1e-4; allowed 5e-3)."""
    shape, cpu = SHAPES["tiny"], torch.device("cpu")
    ids = torch.randint(0, shape["vocab_size"], (shape["batch"], shape["seq"] + 1),
                        generator=torch.Generator().manual_seed(0))
    losses = {}
    for variant in ("ours_bf16_master", "ours_bf16_master_chunked_ce"):
        torch.manual_seed(0)
        model, loss_fn = build(variant, shape, cpu)
        opt, step = variant_optimizer(variant, model, cuda=False)
        losses[variant] = []
        for _ in range(6):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(model, ids)
            loss.backward()
            step()
            opt.zero_grad()
            losses[variant].append(loss.item())
        assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config.loss_chunk == shape["batch"] * shape["seq"] // 4
    chunked, plain = losses["ours_bf16_master_chunked_ce"], losses["ours_bf16_master"]
    assert chunked[-1] < chunked[0] - 0.05
    assert chunked == pytest.approx(plain, abs=5e-3)



@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_gpu_the_compiled_chunked_loss_under_bf16_autocast_matches_the_eager_head():
    """The bench's path on CUDA: inductor's Triton kernels for the chunk loop under bf16 autocast, against the eager
    head + F.cross_entropy. Looser than on the CPU: the compiled model also fuses the blocks differently, and cuBLAS
    may pick another algorithm for a chunk's shape, so a logit may round to a neighbouring bf16 value (2^-8)."""
    torch._dynamo.reset()
    ids, targets = (t.cuda() for t in batch(4))
    _, ref_loss, ref = loss_and_grads(lm(0, tie=True).cuda(), ids, targets, autocast=True)
    compiled = torch.compile(lm(7, tie=True).cuda(), fullgraph=True)
    logits, loss, ours = loss_and_grads(compiled, ids, targets, autocast=True)
    assert logits is None
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-2)
    assert_grads_close({k.removeprefix("_orig_mod."): v for k, v in ours.items()}, ref, rel=2 ** -5)
