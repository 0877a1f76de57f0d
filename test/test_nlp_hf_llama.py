"""Llama-shaped models to and from Hugging Face LlamaForCausalLM (hf_llama.py): the same logits both ways, through
`koba lm export` / `koba lm import` and their files, and transformers' own generate continuing as ours does."""
import json

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import hf_llama
from koba_ros.nlp.checkpoint import load_checkpoint
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.sampling import sample
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.nlp_weights import away_from_init

LLAMA = dict(norm_type="rmsnorm", ffn="swiglu", positions="rope", bias=False)


@pytest.mark.parametrize("kv_heads, tie, bias", [(1, False, False), (2, True, False), (4, False, False),
                                                 (2, False, True)])
def test_ours_to_llama_and_back_gives_the_same_logits_and_weights(kv_heads, tie, bias):
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=kv_heads, max_len=64,
                                            tie_embeddings=tie, **{**LLAMA, "bias": bias})).eval()
    away_from_init(model, 0.05)  # away from the init: unit norm gains and zero biases would hide a swapped tensor
    hf = hf_llama.to_hf(model)
    assert (hf.config.num_key_value_heads, hf.config.tie_word_embeddings) == (kv_heads, tie)
    assert (hf.config.attention_bias, hf.config.mlp_bias) == (bias, bias)
    ids = torch.randint(0, 259, (2, 48))  # long enough that a wrong RoPE pairing would show
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
    back = hf_llama.from_hf(hf)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())


LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}  # scaled bands even at 48 positions


LINEAR_ROPE = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}  # position interpolation (Llama 2 16k)


@pytest.mark.parametrize("theta, rope", [(1e5, None), (5e5, None), (5e5, LLAMA3_ROPE), (1e4, LINEAR_ROPE)])
def test_rope_base_and_llama3_scaling_go_out_and_come_in(theta, rope):
    """SmolLM2 uses RoPE base 1e5, Llama 3 5e5 and Llama 3.1-3.2 also its frequency scaling; Llama 2's long-context
    fine-tunes interpolate positions linearly: the config carries them both ways, and the logits over 48 positions
    (where a wrong base or scaling shows) agree; the same weights with base 10000 and no scaling do not."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    position = dict(rope_parameters=rope) if rope else dict(rope_theta=theta)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      rms_norm_eps=1e-5, **position)).eval()
    with torch.no_grad():  # sharp attention, so where each key sits matters (at init it is nearly uniform)
        for name, p in hf.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.normal_(0, 0.5)
    model = hf_llama.from_hf(hf)
    assert model.config.rope_theta == theta and model.config.rope_scaling == (rope["rope_type"] if rope else "none")
    ids = torch.randint(0, 300, (2, 48))
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
        out = hf_llama.to_hf(model)
        assert out.config.rope_parameters == (rope or {"rope_type": "default", "rope_theta": theta})
        assert (out(input_ids=ids).logits - hf(input_ids=ids).logits).abs().max() < 1e-5
        plain = {"rope_theta": 10000.0} if not rope else {"rope_scaling": "none"}
        wrong = TransformerLM(TransformerConfig(**{**model.config.to_dict(), **plain})).eval()
        wrong.load_state_dict(model.state_dict())
        assert (wrong(ids)[0] - hf(input_ids=ids).logits).abs().max() > 0.05
    with pytest.raises(KobaError, match="rope_theta must be"):
        TransformerConfig(positions="rope", rope_theta=1.0)
    with pytest.raises(KobaError, match="llama3 RoPE scaling needs"):
        TransformerConfig(positions="rope", rope_scaling="llama3", rope_low_freq_factor=4.0)
    with pytest.raises(KobaError, match="linear RoPE scaling needs"):
        TransformerConfig(positions="rope", rope_scaling="linear", rope_factor=0.5)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_the_norms_epsilon_goes_out_and_comes_in(kind):
    """`norm_eps` is GPT-2's layer_norm_epsilon and a Llama's rms_norm_eps (1e-6 in Llama 1 and others). A large
    one (0.1) makes the difference plain: carried both ways the logits agree; the same weights at 1e-5 do not."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from koba_ros.nlp import hf_gpt2

    torch.manual_seed(3)
    if kind == "gpt2":
        hf = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                        layer_norm_epsilon=0.1, bos_token_id=None, eos_token_id=None)).eval()
        model, back = hf_gpt2.from_hf(hf), hf_gpt2.to_hf
    else:
        hf = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, max_position_embeddings=16, rms_norm_eps=0.1)).eval()
        model, back = hf_llama.from_hf(hf), hf_llama.to_hf
    assert model.config.norm_eps == 0.1
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
        assert (back(model)(input_ids=ids).logits - hf(input_ids=ids).logits).abs().max() < 1e-5
        wrong = TransformerLM(TransformerConfig(**{**model.config.to_dict(), "norm_eps": 1e-5})).eval()
        wrong.load_state_dict(model.state_dict())
        assert (wrong(ids)[0] - hf(input_ids=ids).logits).abs().max() > 1e-3
    with pytest.raises(KobaError, match="norm_eps must be"):
        TransformerConfig(norm_eps=0.0)


@pytest.mark.parametrize("bias", [False, True])
def test_a_llama_from_transformers_runs_the_same_here(bias):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                      num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=32,
                                      rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=bias,
                                      mlp_bias=bias)).eval()
    if bias:  # transformers starts biases at zero, which would hide a bias left behind or misplaced
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if name.endswith(".bias"):
                    p.normal_(0, 0.1)
    model = hf_llama.from_hf(hf)
    assert (model.config.n_kv_heads, model.config.d_ff, model.config.bias) == (3, 80, bias)
    prompt = torch.randint(0, 300, (8,))
    with torch.no_grad():
        assert (model(prompt[None])[0] - hf(input_ids=prompt[None]).logits).abs().max() < 1e-5
        theirs = hf.generate(prompt[None], max_new_tokens=16, do_sample=False, pad_token_id=0)[0, 8:].tolist()
    from koba_ros.nlp.sampling import generate
    assert generate(model, prompt.tolist(), 16, temperature=0.0) == theirs


def test_a_llama_style_run_exports_imports_and_generates_like_sample(tmp_path, capsys):
    from transformers import pipeline

    (tmp_path / "train.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    train(TrainConfig.from_dict(dict(
        model=dict(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_len=64, **LLAMA),
        train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, steps=40, eval_every=40, ckpt_every=40,
        out=str(tmp_path / "run"), progress=False, lr=3e-3)))
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf"), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["architecture"] == "llama" and exported["max_logit_difference"] < 1e-5
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "llama"
    ours = sample(tmp_path / "run", "put the", max_new_tokens=30, temperature=0.0, top_k=0)
    theirs = pipeline("text-generation", model=str(tmp_path / "hf"), device="cpu")(
        "put the", max_new_tokens=30, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert ours["new_tokens"] > 10 and theirs == ours["text"]

    assert main(["lm", "import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokenizer"] == "byte"
    state, _, _ = load_checkpoint(tmp_path / "run" / "checkpoint")
    imported, _, meta = load_checkpoint(tmp_path / "back")
    assert all(torch.equal(imported[k], state[k]) for k in state) and meta["config"]["model"]["n_kv_heads"] == 2


def test_models_neither_gpt2_nor_llama_shaped_and_unsupported_llamas_are_refused_in_one_line(tmp_path, capsys):
    from transformers import LlamaConfig

    (tmp_path / "train.txt").write_text("open the gripper\n" * 40)
    train(TrainConfig.from_dict(dict(model=dict(d_model=16, n_layers=1, n_heads=2, max_len=16, norm_type="rmsnorm"),
                                     train_data=str(tmp_path / "train.txt"), seq_len=16, batch_size=2, steps=2,
                                     out=str(tmp_path / "run"), progress=False)))
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 2
    assert "neither GPT-2-shaped" in capsys.readouterr().err and not (tmp_path / "hf").exists()
    for bad, message in ((dict(hidden_act="gelu"), "hidden_act"), (dict(attention_bias=True), "mlp_bias"),
                         (dict(rope_parameters={"rope_theta": 10000.0, "rope_type": "dynamic", "factor": 4.0}),
                          "RoPE")):
        config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, rms_norm_eps=1e-5, **bad)
        with pytest.raises(KobaError, match=message):
            hf_llama.our_config(config)


def test_an_imported_long_context_llama_keeps_its_context_and_evaluates_in_2048_token_windows(tmp_path, capsys):
    """max_len stays the model's (8192 here; a Llama 3.2's is 131072), but `koba lm eval`'s default window, the
    recorded seq_len, is at most 2048 tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=8192,
                                 rms_norm_eps=1e-5)).save_pretrained(tmp_path / "long")
    assert main(["lm", "import", "--hf", str(tmp_path / "long"), "--out", str(tmp_path / "in"),
                 "--tokenizer", "byte"]) == 0
    _, _, meta = load_checkpoint(tmp_path / "in")
    assert meta["config"]["model"]["max_len"] == 8192 and meta["config"]["seq_len"] == 2048
    (tmp_path / "text.txt").write_text("open the gripper. " * 200)
    assert main(["lm", "eval", "--checkpoint", str(tmp_path / "in"), "--data", str(tmp_path / "text.txt"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["seq_len"] == 2048


def test_a_qwen2_with_biases_on_q_k_v_only_comes_in_and_goes_out(tmp_path, capsys):
    """Qwen2's attention has biases on q, k and v but none on o, and its MLP none: `bias: false, qkv_bias: true`.
    Random biases (transformers starts them at zero) so a misplaced one shows; 1e-6 norms and base 1e6 as in
    Qwen2.5."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(4)
    hf = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.5)
    model = hf_llama.from_hf(hf)
    assert (model.config.bias, model.config.qkv_bias, model.config.norm_eps) == (False, True, 1e-6)
    assert model.blocks[0].attn.out.bias is None and model.blocks[0].attn.qkv.bias is not None
    ids = torch.randint(0, 300, (2, 40))
    with torch.no_grad():
        assert (model(ids)[0] - hf(input_ids=ids).logits).abs().max() < 1e-5
        back = hf_llama.to_hf(model)
        assert type(back).__name__ == "Qwen2ForCausalLM"
        assert (back(input_ids=ids).logits - hf(input_ids=ids).logits).abs().max() < 1e-5
    hf.save_pretrained(tmp_path / "qwen")  # and through the command, folder to checkpoint and back
    assert main(["lm", "import", "--hf", str(tmp_path / "qwen"), "--out", str(tmp_path / "in"), "--tokenizer", "byte",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_logit_difference"] < 1e-5
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "qwen2"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "qwen2"
    no_bias = TransformerLM(TransformerConfig(**{**model.config.to_dict(), "qkv_bias": None})).eval()
    assert not any(name.endswith(".bias") for name, _ in no_bias.named_parameters())
    with pytest.raises(KobaError, match="neither a Llama's nor a Qwen2's"):
        hf_llama.to_hf(TransformerLM(TransformerConfig(**{**model.config.to_dict(), "bias": True,
                                                          "qkv_bias": False})))


def test_a_mistral_without_a_sliding_window_comes_in_as_a_llama(tmp_path, capsys):
    """Mistral's tensors are a Llama's. A window that covers the whole context changes nothing, so such a model
    imports as a Llama with full attention (and exports as a Llama); a shorter window: test_nlp_sliding_window.py."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(5)
    shape = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5)
    MistralForCausalLM(MistralConfig(**shape, sliding_window=None)).save_pretrained(tmp_path / "full")
    assert main(["lm", "import", "--hf", str(tmp_path / "full"), "--out", str(tmp_path / "in"), "--tokenizer", "byte",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_logit_difference"] < 1e-5
    assert hf_llama.from_hf(MistralForCausalLM(MistralConfig(**shape, sliding_window=64))).config.attention_window == 0
