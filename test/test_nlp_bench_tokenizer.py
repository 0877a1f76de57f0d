"""`koba lm bench` on a tiny shape (the CPU proof that the GPU benchmark runs) and BPE tokenizer loading."""
import json

import pytest

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import bench
from koba_ros.nlp.tokenizer import BPETokenizer, build_tokenizer


def test_bench_tiny_compares_ours_and_hugging_face(capsys, tmp_path):
    pytest.importorskip("transformers", reason="the Hugging Face baseline needs transformers")
    out = tmp_path / "bench.json"
    assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--steps", "1", "--variants", "ours,hf",
                 "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["variants"]) == {"ours", "hf"}
    ours, hf = result["variants"]["ours"], result["variants"]["hf"]
    assert abs(ours["parameters"] - hf["parameters"]) / hf["parameters"] < 0.05  # the same GPT-2 shape
    assert ours["tokens_per_s"] > 0 and 0 <= ours["mfu"] < 1 and ours["loss"] > 5  # ~ln(512) at init
    assert json.loads(out.read_text())["size"] == "tiny" and json.loads(out.read_text())["complete"]


def test_bench_tiny_llama_style_variants_are_the_same_model_and_reported_apart(capsys):
    """Ours and transformers' LlamaForCausalLM in the Llama-style variants have the same parameters to the one (the
    same blocks, tied embeddings), and their ratio is kept out of the GPT-2 aim's `ours_over_best_hf` / `best_mfu`."""
    pytest.importorskip("transformers", reason="the Hugging Face baseline needs transformers")
    assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--steps", "1", "--variants",
                 "ours,ours_llama,hf_llama", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ours, hf = result["variants"]["ours_llama"], result["variants"]["hf_llama"]
    assert ours["parameters"] == hf["parameters"] and ours["loss"] > 5 and hf["loss"] > 5
    assert "llama_ours_over_best_hf" in result and "ours_over_best_hf" not in result  # no GPT-2 baseline ran
    assert result["best_mfu"] == result["variants"]["ours"]["mfu"]


@pytest.mark.parametrize("variant", ["ours", "hf", "ours_llama", "hf_llama"])
def test_mfu_counts_the_matrix_products_a_training_step_really_does(variant):
    """flops_per_token (PaLM's 6·N + 12·L·d·T) against torch's FLOP counter over one forward + backward: the counter's
    matrix products per token plus the attention term (SDPA on the CPU is not counted) must give the same number to
    within the vector parameters (LayerNorm gains, biases: 0.2 % / 1.2 % at this tiny width, far less at GPT-2's).
    Counting the position table as a product, as before session 11, is 2.8 % over here. The Llama-style variants
    (SwiGLU, grouped-query attention, RoPE) have no position table to leave out."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from koba_ros.nlp.bench import SHAPES, build, flops_per_token

    if variant.startswith("hf"):
        pytest.importorskip("transformers", reason="the Hugging Face baseline needs transformers")
    shape = SHAPES["tiny"]
    torch.manual_seed(0)
    model, loss_fn = build(variant, shape, torch.device("cpu"))
    ids = torch.randint(0, shape["vocab_size"], (shape["batch"], shape["seq"] + 1))
    with FlopCounterMode(display=False) as counter:
        loss_fn(model, ids).backward()
    counted = counter.get_total_flops() / (shape["batch"] * shape["seq"])
    attention = 12 * shape["n_layers"] * shape["d_model"] * shape["seq"]
    formula = flops_per_token(sum(p.numel() for p in model.parameters()), shape, position_table="llama" not in variant)
    assert 0 <= formula - (counted + attention) < 0.015 * formula


def test_bench_rejects_unknown_variants_and_cudnn_attention_without_cuda(capsys, monkeypatch):
    assert main(["lm", "bench", "--size", "tiny", "--variants", "ours,megatron"]) == 2
    assert "variants" in capsys.readouterr().err
    assert main(["lm", "bench", "--size", "tiny", "--variants", ","]) == 2  # ran nothing and called itself complete
    assert "one or more" in capsys.readouterr().err
    with monkeypatch.context() as patch:
        patch.setattr(bench, "time_variant", lambda *a: pytest.fail("timed before checking --out"))
        assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--variants", "ours",
                     "--out", "/proc/koba_bench/b.json"]) == 2
    assert "cannot use /proc/koba_bench" in capsys.readouterr().err
    assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--variants", "ours,ours_cudnn"]) == 2
    assert "need a CUDA device" in capsys.readouterr().err
    assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--variants", "ours_cudagraphs"]) == 2
    assert "need a CUDA device" in capsys.readouterr().err
    assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--profile-steps", "-1"]) == 2


def test_bench_profile_breaks_a_step_into_kernel_categories(capsys):
    assert main(["lm", "bench", "--size", "tiny", "--device", "cpu", "--steps", "1", "--variants", "ours",
                 "--profile-steps", "2", "--json"]) == 0
    profile = json.loads(capsys.readouterr().out)["variants"]["ours"]["profile"]
    assert "error" not in profile, profile
    assert profile["steps"] == 2 and profile["busy_ms"] > 0 and profile["step_ms"] > 0
    assert profile["ms_per_step"]["gemm"] > 0 and profile["top_kernels_ms"]  # the matmuls are found and named
    assert abs(sum(profile["ms_per_step"].values()) - profile["busy_ms"]) < 0.01 + 0.01 * profile["busy_ms"]


@pytest.mark.parametrize("name, expected", [
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_kernel_cublas", "gemm"),
    ("nvjet_tst_192x192_64x4_2x1_v_bz_coopB_TNT", "gemm"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4>>", "attention"),
    ("triton_per_fused_add_native_layer_norm_0", "fused_triton"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor>", "optimizer"),
    ("void at::native::(anonymous namespace)::embedding_backward_feature_kernel<float>", "embedding"),
    ("aten::addmm", "gemm"), ("aten::mul", "other"), ("aten::mmx", "other"),
])
def test_kernel_names_fall_in_their_category(name, expected):
    from koba_ros.nlp.kernel_profile import category

    assert category(name) == expected


def test_bpe_loads_gpt2_style_files_and_round_trips(tmp_path):
    tokenizers = pytest.importorskip("tokenizers", reason="BPE loading goes through the tokenizers package")
    trainer = tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator(["put the red cube in the top left box"] * 50, vocab_size=300,
                                special_tokens=["<|endoftext|>"])
    trainer.save_model(str(tmp_path))
    tok = BPETokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    ids = tok.encode("put the red cube", eos=True)
    assert tok.decode(ids[:-1]) == "put the red cube" and ids[-1] == tok.eos_id
    assert len(ids) < len("put the red cube")  # merges applied


def test_missing_bpe_files_and_unknown_tokenizer_kind(tmp_path):
    with pytest.raises(KobaError, match="not found"):
        BPETokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    with pytest.raises(KobaError, match="byte, gpt2, bpe, hf"):
        build_tokenizer("sentencepiece")


def test_gpt2_bpe_gives_gpt2_ids_from_the_ranks_whisper_ships(tmp_path):
    pytest.importorskip("tiktoken", reason="the gpt2 tokenizer reads its ranks through tiktoken")
    from koba_ros.nlp.tokenizer import GPT2Tokenizer, whisper_gpt2_ranks

    if whisper_gpt2_ranks() is None:
        pytest.skip("openai-whisper (which ships GPT-2's BPE ranks) is not installed")
    tok = build_tokenizer("gpt2")
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's ids
    assert tok.encode("The quick brown fox", eos=True) == [464, 2068, 7586, 21831, 50256]
    text = "put the brown fluffy toy in the top right box <|endoftext|> ok"
    assert tok.decode(tok.encode(text)) == text and tok.vocab_size == 50257
    (tmp_path / "bad.tiktoken").write_text("not base64 at all\n")
    with pytest.raises(KobaError, match="not a .tiktoken ranks file"):
        GPT2Tokenizer(tmp_path / "bad.tiktoken")
    with pytest.raises(KobaError, match="not found"):
        GPT2Tokenizer(tmp_path / "missing.tiktoken")


def test_training_with_gpt2_bpe_checks_the_vocabulary(tmp_path):
    pytest.importorskip("tiktoken", reason="the gpt2 tokenizer reads its ranks through tiktoken")
    from koba_ros.nlp.tokenizer import whisper_gpt2_ranks
    from koba_ros.nlp.trainer import TrainConfig, train

    if whisper_gpt2_ranks() is None:
        pytest.skip("openai-whisper (which ships GPT-2's BPE ranks) is not installed")
    (tmp_path / "t.txt").write_text("put the red cube in the top left box. " * 100)
    config = dict(model=dict(d_model=16, n_layers=1, n_heads=2, max_len=16), train_data=str(tmp_path / "t.txt"),
                  tokenizer="gpt2", seq_len=16, batch_size=4, steps=2, eval_every=2, eval_batches=1,
                  out=str(tmp_path / "run"), progress=False, device="cpu")
    with pytest.raises(KobaError, match="vocab_size 259 < tokenizer's 50257"):
        train(TrainConfig.from_dict(config))
    config["model"].update(vocab_size=50304, pad_id=50256)
    assert train(TrainConfig.from_dict(config))["steps"] == 2
