"""A LoRA run resumed with another adapter rank or scale (review 25): refused in one line, the checkpoint intact.
Another lora_alpha reloaded the saved A and B under a new scale, a different model announced as a changed training
setting; another lora_rank crashed in load_state_dict. Damaged adapters are refused the same way."""
import shutil

import pytest
from safetensors.torch import load_file, save_file

from koba_ros.errors import KobaError
from koba_ros.nlp.trainer import TrainConfig, train
from test.test_nlp_warm_start import FINETUNE, run_config


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    train(TrainConfig.from_dict(run_config(tmp, "source", steps=3, eval_every=3, ckpt_every=3)))
    lora = dict(steps=3, eval_every=3, ckpt_every=3, lora_rank=4, init_from=str(tmp / "source"))
    train(TrainConfig.from_dict(run_config(tmp, "lora", FINETUNE, **lora)))
    return tmp, lora


@pytest.mark.parametrize("change", [{"lora_alpha": 64.0}, {"lora_rank": 2}])
def test_a_lora_resume_with_another_rank_or_scale_is_refused(lora_run, change):
    tmp, lora = lora_run
    before = (tmp / "lora" / "checkpoint" / "lora.safetensors").read_bytes()
    key = next(iter(change))
    with pytest.raises(KobaError, match=f"{key} is .* here but .* in the checkpoint"):
        train(TrainConfig.from_dict(run_config(tmp, "lora", FINETUNE, **{**lora, "steps": 6, **change})))
    assert (tmp / "lora" / "checkpoint" / "lora.safetensors").read_bytes() == before


def test_a_lora_resume_with_the_same_settings_trains_on_and_switching_lora_off_is_refused(lora_run, tmp_path):
    tmp, lora = lora_run
    shutil.copytree(tmp / "lora", tmp_path / "lora")
    assert train(TrainConfig.from_dict(run_config(tmp_path, "lora", FINETUNE, **{**lora, "steps": 4})))["steps"] == 4
    off = {k: v for k, v in lora.items() if k != "lora_rank"}
    with pytest.raises(KobaError, match="lora_rank is 0 here but 4 in the checkpoint"):
        train(TrainConfig.from_dict(run_config(tmp_path, "lora", FINETUNE, **{**off, "steps": 6})))


def test_damaged_adapters_are_refused_in_one_line(lora_run, tmp_path):
    tmp, lora = lora_run
    shutil.copytree(tmp / "lora", tmp_path / "lora")
    path = tmp_path / "lora" / "checkpoint" / "lora.safetensors"
    adapters = load_file(path)
    name = next(k for k in adapters if k.endswith(".lora_a"))
    adapters[name] = adapters[name][:2]  # a rank-2 A among rank-4 adapters
    save_file(adapters, path)
    with pytest.raises(KobaError, match="lora.safetensors does not fit this model"):
        train(TrainConfig.from_dict(run_config(tmp_path, "lora", FINETUNE, **{**lora, "steps": 6})))
