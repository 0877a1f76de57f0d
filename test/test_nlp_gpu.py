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


def test_fp16_training_on_the_gpu_matches_bf16_and_scales_its_loss(tmp_path):
    """precision fp16 on CUDA (the path `auto` takes on a GPU without native bf16): loss scaling on, weights fp32."""
    (tmp_path / "t.txt").write_text("put the red cube in the top left box. " * 200)
    results = {}
    for precision in ("bf16", "fp16"):
        config = TrainConfig.from_dict(dict(model=dict(d_model=64, n_layers=2, n_heads=4, max_len=64),
                                            train_data=str(tmp_path / "t.txt"), seq_len=64, batch_size=16, steps=40,
                                            lr=3e-3, warmup=4, device="cuda", precision=precision,
                                            out=str(tmp_path / precision), progress=False))
        results[precision] = train(config)
    fp16 = results["fp16"]
    assert fp16["precision"] == "fp16 autocast, dynamic loss scaling" and fp16["loss_scale"] >= 1.0
    assert fp16["skipped_steps"] <= 2 and abs(fp16["loss"] - results["bf16"]["loss"]) < 0.1


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


def test_kv_cache_decoding_matches_the_full_forward_on_the_gpu():
    """SDPA picks other kernels for one query than for a full sequence; the logits must still agree."""
    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.kv_cache import KVCache
    from koba_ros.nlp.model import TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=128, n_layers=4, n_heads=4, max_len=64, positions="rope"))
    model = model.cuda().eval()
    ids = torch.randint(0, 256, (2, 40), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        full = model(ids)[0].float()
        cache = KVCache(4, 64)
        parts = [model(ids[:, :16], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(16, 40)]
    assert cache.layers[0].keys.dtype == torch.bfloat16  # stored in the autocast dtype
    assert torch.allclose(torch.cat(parts, dim=1).float(), full, atol=5e-2)


def test_activation_checkpointing_lowers_peak_gpu_memory():
    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.model import TransformerLM

    peaks = []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = TransformerLM(TransformerConfig(d_model=512, n_layers=12, n_heads=8, max_len=512)).cuda().train()
        model.checkpoint_blocks = recompute
        ids = torch.randint(0, 256, (8, 513), device="cuda")
        for p in model.parameters():  # gradients exist before the step, as after the first one: not counted
            p.grad = torch.zeros_like(p)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(ids[:, :-1], ids[:, 1:])[1]
        loss.backward()
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - base)
        del model, loss
        torch.cuda.empty_cache()
    print(f"activation checkpointing: peak {peaks[1] / 2**20:.0f} MiB vs {peaks[0] / 2**20:.0f} MiB "
          f"({peaks[1] / peaks[0]:.3f}x)")
    assert peaks[1] < 0.5 * peaks[0]  # tensors saved for backward, CPU, batch 2, weights included: 29.5 vs 534 MiB


def test_document_mask_on_the_gpu_gives_a_packed_document_its_logits_alone():
    """The explicit [B, T, T] mask takes SDPA's memory-efficient kernel on CUDA (not flash); under bf16 autocast a
    RoPE document packed behind another still computes what it computes alone, within bf16 rounding."""
    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.document_mask import documents_of
    from koba_ros.nlp.model import TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=128, n_layers=4, n_heads=4, max_len=128, positions="rope"))
    model = model.cuda().eval()
    first = torch.randint(0, 256, (30,), device="cuda").tolist() + [258]
    second = torch.randint(0, 256, (50,), device="cuda").tolist()
    packed = torch.tensor([first + second], device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        masked = model(packed, documents=documents_of(packed, 258))[0].float()
        alone = model(torch.tensor([second], device="cuda"))[0].float()
        plain = model(packed)[0].float()
    assert (masked[0, 31:] - alone[0]).abs().max() < 5e-2
    assert (plain[0, 31:] - alone[0]).abs().max() > (masked[0, 31:] - alone[0]).abs().max()


def test_llama_style_blocks_train_under_bf16_and_decode_with_the_grouped_kv_cache(tmp_path):
    """RMSNorm, SwiGLU and grouped-query attention (SDPA's enable_gqa, where the flash kernel may take or refuse the
    grouped keys) on CUDA: training lowers the loss, and KV-cache decoding agrees with the full forward."""
    from koba_ros.nlp.checkpoint import load_checkpoint
    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.kv_cache import KVCache
    from koba_ros.nlp.model import TransformerLM

    llama = dict(norm_type="rmsnorm", ffn="swiglu", n_kv_heads=2, positions="rope", bias=False)
    (tmp_path / "t.txt").write_text("put the red cube in the top left box. " * 200)
    result = train(TrainConfig.from_dict(dict(
        model=dict(d_model=64, n_layers=2, n_heads=4, max_len=64, **llama), train_data=str(tmp_path / "t.txt"),
        seq_len=64, batch_size=16, steps=40, lr=3e-3, warmup=4, device="cuda", out=str(tmp_path / "run"),
        progress=False)))
    assert result["loss"] < 2.5
    model = TransformerLM(TransformerConfig(d_model=64, n_layers=2, n_heads=4, max_len=64, **llama))
    model.load_state_dict(load_checkpoint(tmp_path / "run" / "checkpoint")[0])
    model = model.cuda().eval()
    ids = torch.randint(0, 256, (1, 40), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        full = model(ids)[0].float()
        cache = KVCache(2, 64)
        steps = [model(ids[:, :16], cache=cache)[0]] + [model(ids[:, t:t + 1], cache=cache)[0] for t in range(16, 40)]
    assert (torch.cat(steps, 1).float() - full).abs().max() < 0.1  # bf16 rounding, not a wrong mask or group
    assert cache.layers[0].keys.shape[1] == 2


def test_session21_options_on_the_gpu_match_the_cpu_and_padding_stays_finite():
    """QK-norm, wide heads and a sliding window under CUDA's SDPA kernels (masks pick the memory-efficient one): the
    same logits as on the CPU; an encoder's padded query whose window holds no real key stays finite there too."""
    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.model import TextEncoder, TransformerLM

    torch.manual_seed(0)
    config = TransformerConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_head=32, qk_norm=True,
                               attention_window=8, norm_type="rmsnorm", ffn="geglu", positions="rope", bias=False)
    model = TransformerLM(config).eval()
    ids = torch.randint(0, 256, (2, 40))
    with torch.no_grad():
        cpu = model(ids)[0]
        gpu = model.cuda()(ids.cuda())[0].cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)
    encoder = TextEncoder(TransformerConfig(d_model=64, n_layers=1, n_heads=4, attention_window=3)).cuda().eval()
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 6:] = False  # padded queries far past the last real key
    with torch.no_grad():
        states = encoder(ids[:, :20].cuda(), mask.cuda())
        vectors = encoder.encode(ids[:, :20].cuda(), mask.cuda())
        alone = encoder.encode(ids[1:, :6].cuda())
    assert torch.isfinite(states[0]).all() and torch.isfinite(vectors).all()
    torch.testing.assert_close(vectors[1], alone[0], atol=1e-5, rtol=1e-5)


def test_session22_options_on_the_gpu_match_the_cpu_and_train_under_bf16(tmp_path):
    """Gemma 2's and 3's options (sandwich norms, soft-capped attention and logits written out, an attention scale,
    windows on some layers with their own RoPE base), YaRN, and GPT-NeoX's parallel layers with partial RoPE: the
    same logits on CUDA as on the CPU, the per-layer cache there, and a bf16 run of the soft-capped shape."""
    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.kv_cache import KVCache
    from koba_ros.nlp.model import TransformerLM

    torch.manual_seed(0)
    gemma = dict(d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, d_head=32, norm="sandwich", norm_type="rmsnorm",
                 ffn="geglu", positions="rope", bias=False, embed_scale=True, qk_norm=True, attention_window=8,
                 sliding_layers=[0, 2], attn_softcap=20.0, logit_softcap=15.0, attn_scale_dim=24,
                 rope_local_theta=1e4, rope_theta=1e6, rope_scaling="yarn", rope_factor=4.0,
                 rope_original_max_len=16)
    neox = dict(d_model=64, n_layers=2, n_heads=4, norm_type="layernorm", positions="rope", ffn="gelu_erf",
                parallel_residual=True, rotary_dim=4)
    ids = torch.randint(0, 256, (2, 40))
    for settings in (gemma, neox):
        model = TransformerLM(TransformerConfig(**settings)).eval()
        with torch.no_grad():
            cpu = model(ids)[0]
            model.cuda()
            gpu = model(ids.cuda())[0].cpu()
            cache = KVCache(model.config.n_layers, 40, model.config.layer_windows)
            stepped = torch.cat([model(ids[:, :5].cuda(), cache=cache)[0]] +
                                [model(ids[:, i:i + 1].cuda(), cache=cache)[0] for i in range(5, 40)], dim=1).cpu()
        torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(stepped, gpu, atol=1e-4, rtol=1e-4)
    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 200)
    config = dict(model={**gemma, "max_len": 64, "loss_chunk": 64}, train_data=str(tmp_path / "train.txt"),
                  seq_len=64, batch_size=8, steps=60, eval_every=60, ckpt_every=60, out=str(tmp_path / "run"),
                  progress=False, lr=3e-3, precision="bf16", device="cuda")
    assert train(TrainConfig.from_dict(config))["loss"] < 2.5
