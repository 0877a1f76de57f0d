"""gqa_conversion.pool_kv_heads (Ainslie et al. 2023 §2.1): key/value heads mean-pooled in groups, nothing else
changed; a model whose heads already agree within each group keeps its function exactly."""
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.gqa_conversion import pool_kv_heads
from koba_ros.nlp.model import TransformerLM
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)


def mha(**kw) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=4, max_len=32, positions="rope",
                                           **kw)).eval()


def test_pooling_averages_each_groups_key_and_value_heads_and_keeps_the_rest():
    model = mha()
    pooled = pool_kv_heads(model, 2)
    assert pooled.config.n_kv_heads == 2
    old, new = model.state_dict(), pooled.state_dict()
    for name in old:
        if "attn.qkv" not in name:
            assert torch.equal(old[name], new[name]), name
    k_old = old["blocks.0.attn.qkv.weight"][32:64].view(4, 8, 32)
    k_new = new["blocks.0.attn.qkv.weight"][32:48].view(2, 8, 32)
    torch.testing.assert_close(k_new[1], (k_old[2] + k_old[3]) / 2)  # query heads 2, 3 share the new head 1
    v_bias_old = old["blocks.1.attn.qkv.bias"][64:].view(4, 8)
    torch.testing.assert_close(pooled.state_dict()["blocks.1.attn.qkv.bias"][48:].view(2, 8)[0],
                               (v_bias_old[0] + v_bias_old[1]) / 2)
    torch.testing.assert_close(old["blocks.0.attn.qkv.weight"][:32], new["blocks.0.attn.qkv.weight"][:32])


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_heads_that_agree_within_their_group_pool_to_the_same_function(kv_heads):
    model = mha()
    with torch.no_grad():
        for block in model.blocks:  # make every group's key and value heads equal to its first
            w, b = block.attn.qkv.weight, block.attn.qkv.bias
            for t in (w, b):
                groups = t[32:].view(2, kv_heads, 4 // kv_heads, 8, *t.shape[1:])  # (k|v, group, head in group)
                groups.copy_(groups[:, :, :1].clone().expand_as(groups))
    ids = torch.randint(0, 256, (2, 24))
    torch.testing.assert_close(pool_kv_heads(model, kv_heads)(ids)[0], model(ids)[0], atol=1e-5, rtol=1e-5)


def test_a_count_that_does_not_divide_the_heads_is_refused():
    for bad in (0, 3, 8):
        with pytest.raises(KobaError, match="divide"):
            pool_kv_heads(mha(), bad)


def test_koba_lm_gqa_converts_a_run_that_init_from_uptrains_and_refuses_in_one_line(tmp_path, capsys):
    import json

    from koba_ros.cli import main
    from koba_ros.nlp.trainer import TrainConfig, train

    (tmp_path / "t.txt").write_text("put the brown fluffy toy in the top right box.\n" * 60)
    run = dict(model=dict(d_model=32, n_layers=2, n_heads=4, max_len=32, positions="rope"), seq_len=32,
               train_data=str(tmp_path / "t.txt"), batch_size=4, steps=40, eval_every=40, ckpt_every=40, lr=3e-3,
               out=str(tmp_path / "mha"), progress=False)
    train(TrainConfig.from_dict(run))
    assert main(["lm", "gqa", "--checkpoint", str(tmp_path / "mha"), "--out", str(tmp_path / "gqa"),
                 "--kv-heads", "1", "--data", str(tmp_path / "t.txt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kv_heads"] == [4, 1] and result["parameters_after"] < result["parameters_before"]
    assert result["loss_after"] > result["loss_before"]  # what uptraining has to win back
    uptrained = train(TrainConfig.from_dict({**run, "model": None, "init_from": str(tmp_path / "gqa"), "steps": 10,
                                             "out": str(tmp_path / "up")}))
    assert uptrained["steps"] == 10 and uptrained["loss"] < result["loss_after"]
    assert main(["lm", "gqa", "--checkpoint", str(tmp_path / "mha"), "--out", str(tmp_path / "x"),
                 "--kv-heads", "3"]) == 2
    assert "divide" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_document_masked_run_is_scored_with_its_mask_as_koba_lm_eval_scores_it(tmp_path, capsys):
    """`koba lm gqa --data` let tokens attend across documents where the run was trained (and `eval` scores) with
    them kept apart, so its loss_before was not eval's loss."""
    import json

    from koba_ros.cli import main
    from koba_ros.nlp.trainer import TrainConfig, train

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"{i}.txt").write_text(f"document {i}: put the {'red blue green'.split()[i % 3]} cube away.\n" * 8)
    train(TrainConfig.from_dict(dict(model=dict(d_model=32, n_layers=2, n_heads=4, max_len=32, positions="rope"),
                                     seq_len=32, train_data=str(docs), batch_size=4, steps=20, eval_every=20,
                                     ckpt_every=20, lr=3e-3, out=str(tmp_path / "run"), progress=False,
                                     document_mask=True)))
    assert main(["lm", "eval", "--checkpoint", str(tmp_path / "run"), "--data", str(docs), "--split", "all",
                 "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert main(["lm", "gqa", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "gqa"), "--kv-heads",
                 "4", "--data", str(docs), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loss_before"] == pytest.approx(evaluated["loss"], abs=1e-5)
