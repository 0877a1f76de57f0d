"""Turn-over dropout in the language model (model.turnover_p): each training document trains its own half of every
FFN, the stream knows each token's document, and `koba lm influence --checkpoint` ranks a run's documents."""
import csv
import json
from pathlib import Path

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import TokenStream
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.turnover_dropout import instance_masks
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

SMALL = dict(vocab_size=300, d_model=32, n_layers=2, n_heads=2, max_len=32, positions="rope", pad_id=256)


def test_without_instance_ids_a_turnover_model_is_the_plain_model():
    torch.manual_seed(0)
    plain = TransformerLM(TransformerConfig(**SMALL))
    turnover = TransformerLM(TransformerConfig(**SMALL, turnover_p=0.5))
    turnover.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 256, (2, 16))
    assert torch.equal(plain(ids)[0], turnover(ids)[0])
    assert not torch.allclose(turnover(ids, instances=torch.zeros_like(ids))[0], plain(ids)[0])
    with pytest.raises(KobaError, match="turnover_p > 0"):
        plain(ids, instances=torch.zeros_like(ids))
    with pytest.raises(KobaError, match="turnover_p"):
        TransformerConfig(**SMALL, turnover_p=1.0)


@pytest.mark.parametrize("flip", [False, True])
def test_a_document_trains_only_its_half_of_each_ffn(flip):
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**SMALL, turnover_p=0.5))
    ids = torch.randint(0, 256, (2, 16))
    _, loss = model(ids, ids, instances=torch.full_like(ids, 7), flip=flip)
    loss.backward()
    for layer, block in enumerate(model.blocks):
        kept = instance_masks(torch.tensor([7]), model.config.ff_dim, 0.5, salt=layer)[0]
        kept = ~kept if flip else kept
        assert block.ffn.fc.weight.grad[~kept].abs().max() == 0
        assert block.ffn.proj.weight.grad[:, ~kept].abs().max() == 0
        assert block.ffn.fc.weight.grad[kept].abs().max() > 0


def test_each_token_knows_its_document_in_the_whole_stream():
    eos = 258
    tokens = torch.tensor([1, 2, eos, 3, eos, 4, 5, 6, eos, 7, 8, eos, 9, 10, 11, 12])
    stream = TokenStream(tokens, seq_len=5)
    starts = torch.tensor([0, 3, 4, 8, 10])
    x = torch.stack([tokens[s:s + 5] for s in starts])
    brute = torch.stack([torch.tensor([int((tokens[:s + t] == eos).sum()) for t in range(5)]) for s in starts])
    assert torch.equal(stream.document_ids(starts, x, eos), brute)
    assert stream.eos_positions(eos).tolist() == [2, 4, 8, 11]


def train_args(out: str, steps: int, *settings: str) -> list[str]:
    sets = [a for setting in settings for a in ("--set", setting)]
    return ["lm", "train", "--config", "config/lm/tiny.yaml", "--out", out, "--steps", str(steps), "--json", *sets]


def write_collection(folder: Path) -> tuple[str, str]:
    docs = folder / "docs"
    docs.mkdir()
    for d in range(4):
        (docs / f"command_{d}.txt").write_text("".join(f"put the red block in the {b} box\nopen the gripper\n"
                                                       for b in ("top left", "top right", "lower left")[d % 3:]) * 3)
        (docs / f"prose_{d}.txt").write_text("Return a new dictionary initialized from an optional positional "
                                             f"argument and a possibly empty set of keyword arguments {d}.\n" * 3)
    target = folder / "target.txt"
    target.write_text("put the red block in the lower right box\nopen the gripper\n" * 2)
    return str(docs), str(target)


def test_influence_ranks_the_documents_like_the_target_first(tmp_path, capsys):
    docs, target = write_collection(tmp_path)
    run = str(tmp_path / "run")
    assert main(train_args(run, 60, f"train_data={docs}", f"val_data={target}", "document_mask=true",
                           "model.turnover_p=0.5", "eval_every=60", "ckpt_every=60")) == 0
    capsys.readouterr()
    assert main(["lm", "influence", "--checkpoint", run, "--data", target, "--out", str(tmp_path / "inf"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["documents"] == 8
    with open(result["csv"]) as f:
        rows = list(csv.DictReader(f))
    kinds = [Path(r["name"]).name.split("_")[0] for r in rows]  # most helpful first
    assert kinds[:4] == ["command"] * 4, kinds
    assert all(float(r["influence_on_target"]) > 0 for r in rows[:4])
    assert all(r["self_influence"] not in ("", "nan") for r in rows)


def test_influence_refusals_are_one_line(tmp_path, capsys):
    docs, target = write_collection(tmp_path)
    plain = str(tmp_path / "plain")
    assert main(train_args(plain, 2, f"train_data={docs}", f"val_data={target}", "eval_every=2",
                           "ckpt_every=2")) == 0
    capsys.readouterr()
    assert main(["lm", "influence", "--checkpoint", plain, "--data", target]) != 0
    assert "trained without turn-over dropout" in capsys.readouterr().err
    assert main(["lm", "influence", "--checkpoint", plain]) != 0
    assert "needs --data" in capsys.readouterr().err
    assert main(["lm", "influence", "--checkpoint", plain, "--data", target, "--val", target]) != 0
    assert "--val goes with --train" in capsys.readouterr().err
    single = str(tmp_path / "single")
    assert main(train_args(single, 2, f"train_data={target}", f"val_data={target}", "model.turnover_p=0.5",
                           "seq_len=16", "eval_every=2", "ckpt_every=2")) == 0
    capsys.readouterr()
    assert main(["lm", "influence", "--checkpoint", single, "--data", target]) != 0
    assert "one training document" in capsys.readouterr().err
    assert main(train_args(str(tmp_path / "c"), 2, f"train_data={docs}", "model.turnover_p=0.5",
                           "compile=true")) != 0
    err = capsys.readouterr().err
    assert "turnover_p does not combine with compile" in err and err.count("\n") == 1


def test_the_mask_seed_chooses_other_halves_and_is_checked():
    torch.manual_seed(0)
    first = TransformerLM(TransformerConfig(**SMALL, turnover_p=0.5))
    second = TransformerLM(TransformerConfig(**SMALL, turnover_p=0.5, turnover_seed=1))
    second.load_state_dict(first.state_dict())
    ids, docs = torch.randint(0, 256, (2, 16)), torch.full((2, 16), 3)
    assert torch.equal(first(ids)[0], second(ids)[0])                      # the same weights, no masks: the same
    assert not torch.allclose(first(ids, instances=docs)[0], second(ids, instances=docs)[0])
    with pytest.raises(KobaError, match="turnover_seed"):
        TransformerConfig(**SMALL, turnover_seed=-1)


def test_influence_averages_runs_with_different_mask_seeds(tmp_path, capsys):
    docs, target = write_collection(tmp_path)
    runs = []
    for seed in (0, 1):
        runs.append(str(tmp_path / f"run{seed}"))
        assert main(train_args(runs[-1], 60, f"train_data={docs}", f"val_data={target}", "document_mask=true",
                               "model.turnover_p=0.5", f"model.turnover_seed={seed}", "eval_every=60",
                               "ckpt_every=60")) == 0
    capsys.readouterr()

    def influence(*checkpoints):
        args = [a for c in checkpoints for a in ("--checkpoint", c)]
        assert main(["lm", "influence", *args, "--data", target, "--out", str(tmp_path / "inf"), "--json"]) == 0
        with open(json.loads(capsys.readouterr().out)["csv"]) as f:
            return {r["name"]: (float(r["influence_on_target"]), float(r["self_influence"])) for r in csv.DictReader(f)}

    one, other, both = influence(runs[0]), influence(runs[1]), influence(*runs)
    assert one != other                                                    # other halves: other estimates
    for name, (on_target, own) in both.items():
        assert on_target == pytest.approx((one[name][0] + other[name][0]) / 2, rel=1e-4, abs=1e-6)
        assert own == pytest.approx((one[name][1] + other[name][1]) / 2, rel=1e-4, abs=1e-6)
    ranked = sorted(both, key=lambda n: -both[n][0])
    assert [Path(n).name.split("_")[0] for n in ranked[:4]] == ["command"] * 4

    assert main(["lm", "influence", "--checkpoint", runs[0], "--checkpoint", runs[0], "--data", target]) != 0
    assert "share a model.turnover_seed" in capsys.readouterr().err
    (tmp_path / "elsewhere").mkdir()
    other_docs, _ = write_collection(tmp_path / "elsewhere")
    (Path(other_docs) / "prose_0.txt").write_text("something else entirely\n")
    other_data = str(tmp_path / "other")
    assert main(train_args(other_data, 2, f"train_data={other_docs}", f"val_data={target}", "model.turnover_p=0.5",
                           "model.turnover_seed=2", "eval_every=2", "ckpt_every=2")) == 0
    capsys.readouterr()
    assert main(["lm", "influence", "--checkpoint", runs[0], "--checkpoint", other_data, "--data", target]) != 0
    err = capsys.readouterr().err
    assert "trained on other documents" in err and err.count("\n") == 1
