"""document_mask: tokens attend only within their own eos-separated document. With RoPE a document packed behind
another computes exactly what it computes alone; without the mask it does not (the control); training and
`koba lm eval` use the mask the run was trained with."""
import json

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.document_mask import documents_of, same_document_causal
from koba_ros.nlp.evaluation import score
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

EOS = 258


def test_document_numbers_and_the_mask():
    ids = torch.tensor([[5, 6, EOS, 7, EOS, EOS, 8]])
    assert documents_of(ids, EOS).tolist() == [[0, 0, 0, 1, 1, 2, 3]]  # an eos belongs to the document it ends
    mask = same_document_causal(documents_of(ids, EOS))[0]
    assert mask[3].tolist() == [False, False, False, True, False, False, False]
    assert mask[4].tolist() == [False, False, False, True, True, False, False]
    assert mask[2].tolist() == [True, True, True, False, False, False, False]
    assert not mask.triu(1).any()  # causal


def model(positions="rope", **overrides) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=4, max_len=64, positions=positions,
                                           **overrides)).eval()


@pytest.mark.parametrize("norm", ["pre", "b2t"])
def test_with_rope_a_packed_document_computes_what_it_computes_alone(norm):
    m = model(norm=norm)
    first = torch.randint(0, 256, (9,)).tolist() + [EOS]
    second = torch.randint(0, 256, (12,)).tolist()
    packed = torch.tensor([first + second])
    with torch.no_grad():
        masked = m(packed, documents=documents_of(packed, EOS))[0]
        plain = m(packed)[0]
        alone_first = m(torch.tensor([first]))[0]
        alone_second = m(torch.tensor([second]))[0]
    assert (masked[0, :10] - alone_first[0]).abs().max() < 1e-5
    assert (masked[0, 10:] - alone_second[0]).abs().max() < 1e-5
    # the control, 100x the tolerance: unmasked, the second document reads the first one
    assert (plain[0, 10:] - alone_second[0]).abs().max() > 1e-3


def test_with_learned_positions_the_earlier_document_has_no_influence():
    m = model("learned")
    a = torch.tensor([[1, 2, 3, EOS, 9, 8, 7, 6]])
    b = torch.tensor([[4, 4, 4, EOS, 9, 8, 7, 6]])  # another first document, the same second one
    with torch.no_grad():
        la, lb = (m(x, documents=documents_of(x, EOS))[0] for x in (a, b))
        assert torch.equal(la[0, 4:], lb[0, 4:])
        assert (m(a)[0][0, 4:] - m(b)[0][0, 4:]).abs().max() > 1e-3


def test_misuse_is_one_line():
    m = model()
    ids = torch.tensor([[1, EOS, 2]])
    with pytest.raises(KobaError, match="KV cache is for causal decoding"):
        from koba_ros.nlp.kv_cache import KVCache

        m(ids, documents=documents_of(ids, EOS), cache=KVCache(2, 8))


def test_scoring_a_masked_text_adds_up_document_by_document():
    """score() with eos_id on 'A eos B' = score('A eos') + score('B') + the nats of B's first token after 'A eos'."""
    m = model()
    a = torch.randint(0, 256, (15,)).tolist() + [EOS]
    b = torch.randint(0, 256, (20,)).tolist()
    packed, _ = score(m, torch.tensor(a + b), 64, 64, eos_id=EOS)
    alone_a, _ = score(m, torch.tensor(a), 64, 64)
    alone_b, _ = score(m, torch.tensor(b), 64, 64)
    with torch.no_grad():
        bridge = -torch.log_softmax(m(torch.tensor([a]))[0][0, -1], dim=-1)[b[0]].item()
    assert packed == pytest.approx(alone_a + alone_b + bridge, abs=1e-3)
    unmasked, _ = score(m, torch.tensor(a + b), 64, 64)
    assert abs(unmasked - packed) > 1e-2


def test_training_with_document_mask_and_eval_scores_as_trained(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, line in enumerate(["move left five centimeters.", "open the gripper.", "put the cube in the box."]):
        (corpus / f"{i}.txt").write_text((line + " ") * 3)
    config = dict(model=dict(d_model=32, n_layers=1, n_heads=2, max_len=64, positions="rope"),
                  train_data=str(corpus), val_data=str(corpus), seq_len=48, batch_size=4, steps=30, lr=3e-3,
                  warmup=2, eval_every=30, eval_batches=2, ckpt_every=30, out=str(tmp_path / "run"),
                  progress=False, document_mask=True)
    summary = train(TrainConfig.from_dict(config))
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert summary["loss"] < float(rows[1].split(",")[3]) - 1.0  # it trains
    assert main(["lm", "eval", "--checkpoint", str(tmp_path / "run"), "--data", str(corpus), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["document_mask"] is True and result["loss"] < float(rows[1].split(",")[3]) - 1.0

    bpe_without_eos = TrainConfig.from_dict({**config, "out": str(tmp_path / "bad")})
    bpe_without_eos.tokenizer = "byte"
    from koba_ros.nlp import trainer

    original = trainer.build_tokenizer

    def no_eos(*args):
        tok = original(*args)
        tok.eos_id = None
        return tok

    trainer.build_tokenizer = no_eos
    try:
        with pytest.raises(KobaError, match="document_mask needs a tokenizer with an end-of-text id"):
            train(bpe_without_eos)
    finally:
        trainer.build_tokenizer = original


def test_activation_checkpointing_recomputes_under_the_same_mask():
    ids = torch.tensor([[1, 2, EOS, 3, 4, 5, EOS, 6, 7]])
    grads = []
    for recompute in (False, True):
        m = model().train()
        m.checkpoint_blocks = recompute
        loss = m(ids[:, :-1], ids[:, 1:], documents=documents_of(ids[:, :-1], EOS))[1]
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in m.parameters()]))
    assert grads[0][0] == grads[1][0]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1], strict=True))
