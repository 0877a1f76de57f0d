"""GPU checks (skipped without CUDA): bf16 autocast training and the bench on the tiny shape."""
import pytest
import torch

from koba_ros.nlp.bench import EXTRA_VARIANTS, run_bench
from koba_ros.nlp.trainer import TrainConfig, train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_bf16_training_on_the_gpu_lowers_the_loss(tmp_path):
    (tmp_path / "t.txt").write_text("put the red cube in the top left box. " * 200)
    config = TrainConfig.from_dict(dict(model=dict(d_model=64, n_layers=2, n_heads=4, max_len=64),
                                        train_data=str(tmp_path / "t.txt"), seq_len=64, batch_size=16, steps=40,
                                        lr=3e-3, warmup=4, device="cuda", out=str(tmp_path / "run"), progress=False))
    result = train(config)
    assert result["device"].startswith("cuda") and result["loss"] < 2.5


def test_bench_runs_on_the_gpu():
    result = run_bench(size="tiny", device="cuda", steps=2, variants=["ours", "hf"])
    assert result["dtype"] == "bf16 autocast" and result["variants"]["ours"]["tokens_per_s"] > 0


def test_bench_candidate_speedups_train_the_same_model():
    """The candidates change kernels, the optimizer or the precision, not the model: same parameters, same loss
    within bf16 rounding; on the GPU the profiler finds cuBLAS kernels."""
    result = run_bench(size="tiny", device="cuda", steps=2,
                       variants=["ours", "hf", *EXTRA_VARIANTS], profile_steps=1)
    assert result["variants"]["ours"]["profile"]["ms_per_step"]["gemm"] > 0  # the profiler finds cuBLAS kernels
    for name in EXTRA_VARIANTS:
        base = result["variants"][name.split("_")[0]]  # ours_* against ours, hf_* against hf
        assert result["variants"][name]["parameters"] == base["parameters"]
        assert abs(result["variants"][name]["loss"] - base["loss"]) < 0.05  # bf16 kernels differ in rounding only
