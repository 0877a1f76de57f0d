"""LoRA (lora.py, Hu et al. 2021 eq. 3): the adapted model starts as the pre-trained one, trains only A and B, saves
merged weights every reader takes as a plain model, resumes exactly, and refuses what it cannot do in one line."""
import json

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import load_checkpoint, load_model_state
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.lora import add_lora, split_state
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_warm_start import FINETUNE, MODEL, run_config

CONFIG = TransformerConfig(**MODEL)


def test_an_adapted_model_starts_as_the_pre_trained_one_and_trains_only_a_and_b():
    torch.manual_seed(0)
    model = TransformerLM(CONFIG).eval()
    ids = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        before = model(ids)[0]
    trainable = add_lora(model, rank=4, alpha=8.0)
    d, n = CONFIG.d_model, CONFIG.n_layers
    assert trainable == n * 4 * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))  # r (d_in + d_out) per map
    with torch.no_grad():
        assert torch.equal(model(ids)[0], before)  # B = 0: exactly the pre-trained function
    model(ids[:, :-1], ids[:, 1:])[1].backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {name for name, p in model.named_parameters() if name.endswith(("lora_a", "lora_b"))}


LLAMA_STYLE = TransformerConfig(**{**MODEL, "norm_type": "rmsnorm", "ffn": "swiglu", "n_kv_heads": 1, "bias": False})


@pytest.mark.parametrize("config", [CONFIG, LLAMA_STYLE], ids=["gpt2_style", "llama_style"])
def test_the_merged_weights_compute_what_the_adapted_model_computes(config):
    torch.manual_seed(0)
    model = TransformerLM(config).eval()
    add_lora(model, rank=4, alpha=8.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_b"):
                p.normal_(0, 0.1)  # a trained B
    merged, adapters = split_state(model.state_dict(), 8.0 / 4)
    plain = TransformerLM(config).eval()
    plain.load_state_dict(merged)
    ids = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        assert (plain(ids)[0] - model(ids)[0]).abs().max() < 1e-5
    assert len(adapters) == 2 * 4 * config.n_layers


@pytest.fixture
def source(tmp_path):
    train(TrainConfig.from_dict(run_config(tmp_path, "source", steps=30, eval_every=30, ckpt_every=30)))
    return tmp_path / "source"


def test_lora_fine_tuning_lowers_the_loss_keeps_frozen_weights_and_reads_as_a_plain_model(tmp_path, source, capsys):
    summary = train(TrainConfig.from_dict(run_config(tmp_path, "lora", FINETUNE, steps=40, lr=1e-2, lora_rank=4,
                                                     init_from=str(source))))
    assert summary["trainable_parameters"] < summary["parameters"] / 4
    rows = (tmp_path / "lora" / "metrics.csv").read_text().splitlines()
    assert summary["loss"] < float(rows[1].split(",")[3]) - 0.5
    merged, _, meta = load_checkpoint(tmp_path / "lora" / "checkpoint")
    base, _, _ = load_checkpoint(source / "checkpoint")
    assert set(merged) == set(base)  # the plain model's names
    for name in base:  # frozen: embeddings, LayerNorms, biases; adapted: the four maps' weights
        adapted = name.endswith(("qkv.weight", "out.weight", "fc.weight", "proj.weight"))
        assert torch.equal(merged[name], base[name]) != adapted, name
    assert len(load_model_state(tmp_path / "lora" / "checkpoint" / "lora.safetensors")) == 2 * 4 * MODEL["n_layers"]
    assert main(["lm", "eval", "--checkpoint", str(tmp_path / "lora"), "--data", str(tmp_path / "lora.txt"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] < float(rows[1].split(",")[3])


def test_a_stopped_lora_run_resumes_exactly_and_refuses_a_changed_base(tmp_path, source):
    lora = dict(lora_rank=4, init_from=str(source), lr=1e-2)
    straight = train(TrainConfig.from_dict(run_config(tmp_path, "straight", FINETUNE, steps=6, **lora)))
    train(TrainConfig.from_dict(run_config(tmp_path, "stopped", FINETUNE, steps=3, **lora)))
    resumed = train(TrainConfig.from_dict(run_config(tmp_path, "stopped", FINETUNE, steps=6, **lora)))
    assert resumed["parameter_digest"] == straight["parameter_digest"]
    a = load_model_state(tmp_path / "straight" / "checkpoint" / "lora.safetensors")
    b = load_model_state(tmp_path / "stopped" / "checkpoint" / "lora.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    train(TrainConfig.from_dict(run_config(tmp_path, "source", steps=36, eval_every=6, ckpt_every=6)))
    with pytest.raises(KobaError, match="LoRA adapters were trained on other base weights"):
        train(TrainConfig.from_dict(run_config(tmp_path, "stopped", FINETUNE, steps=9, **lora)))


def test_lora_refusals_are_one_line(tmp_path, source):
    for overrides, match in ((dict(lora_rank=4), "lora_rank needs init_from"),
                             (dict(lora_rank=-1, init_from=str(source)), "lora_rank must be >= 0"),
                             (dict(lora_rank=4, lora_alpha=0, init_from=str(source)), "lora_alpha > 0"),
                             (dict(lora_rank=4, init_from=str(source), parallel="fsdp"), "not with parallel fsdp"),
                             (dict(lora_rank=4, init_from=str(source), precision="bf16_master"), "bf16_master")):
        with pytest.raises(KobaError, match=match):
            TrainConfig.from_dict(run_config(tmp_path, "bad", FINETUNE, **overrides))
