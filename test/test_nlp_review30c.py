"""Session 30: three gaps left by session 29. The instance-based classifiers take NgramBags; `koba lm expand` and
`koba lm gqa` carry their source's turn-over record; a LoRA resume does not repeat the RoPE-context notice. Each test
fails on the code before the fix."""
import json

import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.expand_checkpoint import expand_checkpoint
from koba_ros.nlp.gqa_conversion import convert_checkpoint
from koba_ros.nlp.instance_based import InstanceConfig, fit_instance_based, fit_softmax, predict
from koba_ros.nlp.lm_influence import load_runs
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.text_classifier import ClassifierConfig, NgramBags, encode_bags, encode_texts, fit_classifier
from koba_ros.nlp.tokenizer import build_tokenizer
from koba_ros.nlp.trainer import TrainConfig, train
from koba_ros.nlp.warm_start import TURNOVER_KEY, read_weights
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_review29d import QUICK, collection, fine_tune, state
from test.test_nlp_train import TEXT, TINY_MODEL, tiny


def same_weights(a, b) -> None:
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_the_instance_based_classifiers_take_ngram_bags_and_refuse_empty_bags_and_ids_past_the_buckets():
    """BagEncoder handed NgramBags to its EmbeddingBag as one tensor (an AttributeError); it now embeds them as
    TurnOverClassifier does (text_classifier.embed_bags), to the same numbers as the padded ids."""
    texts = ["put the duck in the box", "the red cup", " ".join(f"w{i}" for i in range(40)), "the blue cup", "!!"]
    labels = torch.tensor([0, 1, 0, 1, 1])
    config = InstanceConfig(buckets=512, embed=8, hidden=8, epochs=2, batch=2, memory=4)
    bags, padded = encode_bags(texts, 512), encode_texts(texts, 512)
    a, b = fit_instance_based(padded, labels, 2, config), fit_instance_based(bags, labels, 2, config)
    same_weights(a, b)
    for x, y in zip(predict(a, padded, padded, labels, 2), predict(b, bags, bags, labels, 2), strict=True):
        assert torch.equal(x, y)
    same_weights(fit_softmax(padded, labels, 2, config), fit_softmax(bags, labels, 2, config))
    # Bad input, one line for every bag classifier: ids from other buckets (was a raw IndexError), an empty bag (it
    # averaged to zeros without a word), given as bags or padded.
    empty = NgramBags(bags.ids[:5], torch.tensor([0, 2, 2, 5]))
    plain = ClassifierConfig(buckets=512, embed=8, hidden=8, epochs=1, batch=2)
    for fit in (lambda x, y: fit_instance_based(x, y, 2, config), lambda x, y: fit_softmax(x, y, 2, config),
                lambda x, y: fit_classifier(x, y, 2, plain)):
        with pytest.raises(ValueError, match=r"n-gram id \d+ is outside 0..511; encode the texts with the "):
            fit(encode_bags(texts, 4096), labels)
        for x in (empty, empty.padded()):
            with pytest.raises(ValueError, match="an empty bag of n-grams"):
                fit(x, labels[:3])
    with pytest.raises(ValueError, match="outside 0..511"):
        predict(a, encode_texts(texts, 4096), padded, labels, 2)


def test_expand_and_gqa_carry_the_sources_turnover_record_so_influence_refuses_them(tmp_path):
    """Both wrote `init_from: ""` and no record, so influence read from a gqa folder (trained on nothing, but holding
    the source's masks), or from a turn-over fine-tune of a folder whose source had its weights from a turn-over
    run, was not refused. (expand refuses a turn-over model itself: its masks depend on each layer's index and
    width.)"""
    docs = collection(tmp_path / "docs", [TEXT[:1700], TEXT[1700:3400], TEXT[3400:]])
    src = tmp_path / "src"
    train(tiny(tmp_path, **QUICK, train_data=docs, out=str(src), model=dict(TINY_MODEL, turnover_p=0.5)))
    record = [{"run": str(src), "turnover_seed": 0}]
    refused = f"were trained with turn-over dropout by {src}, .* from scratch"
    convert_checkpoint(str(src), tmp_path / "gqa", 1)
    meta = json.loads((tmp_path / "gqa" / "state.json").read_text())
    assert meta[TURNOVER_KEY] == record and meta["config"]["init_from"] == ""
    with pytest.raises(KobaError, match=refused):
        load_runs([str(tmp_path / "gqa")], "cpu")
    # Its uptraining names the run whose masks trained the weights, not the folder (step 0: it trained nothing).
    train(TrainConfig.from_dict(fine_tune(tmp_path, "uptrained", train_data=docs, init_from=str(tmp_path / "gqa"),
                                          steps=1)))
    assert state(tmp_path / "uptrained")[TURNOVER_KEY] == record
    with pytest.raises(KobaError, match=refused):
        load_runs([str(tmp_path / "uptrained")], "cpu")
    # What the source records is carried too: a source fine-tuned without turn-over dropout from a turn-over run.
    train(TrainConfig.from_dict(fine_tune(tmp_path, "plain_ft", train_data=docs, init_from=str(src), steps=1,
                                          model={"turnover_p": 0.0})))
    expand_checkpoint(str(tmp_path / "plain_ft"), tmp_path / "grown", n_layers=2)
    convert_checkpoint(str(tmp_path / "plain_ft"), tmp_path / "gqa2", 1)
    for folder in ("grown", "gqa2"):
        assert json.loads((tmp_path / folder / "state.json").read_text())[TURNOVER_KEY] == record
    train(TrainConfig.from_dict(fine_tune(tmp_path, "turnover_ft", train_data=docs, steps=1,
                                          init_from=str(tmp_path / "grown"), model={"turnover_p": 0.5})))
    assert state(tmp_path / "turnover_ft")[TURNOVER_KEY] == record
    with pytest.raises(KobaError, match=refused):
        load_runs([str(tmp_path / "turnover_ft")], "cpu")


def test_a_lora_resume_does_not_repeat_the_rope_context_notice(tmp_path, capsys):
    """LoRA reads its source's weights again at each resume, and read_weights printed the notice each time; the
    trainer now says when it is a resume (trainer.starting_weights passes `resuming`)."""
    rope = dict(TINY_MODEL, positions="rope", max_len=16)
    train(tiny(tmp_path, **QUICK, seq_len=16, out=str(tmp_path / "src"), model=rope))
    config = TrainConfig.from_dict(fine_tune(tmp_path, "ft", init_from=str(tmp_path / "src"), seq_len=16,
                                             model={"max_len": 64, "rope_theta": 40000.0}))
    tokenizer = build_tokenizer(config.tokenizer, config.vocab, config.merges)
    capsys.readouterr()
    for resuming in (False, True):
        read_weights(config.model, TransformerLM(config.model), config.init_from, tokenizer, resuming=resuming)
        assert ("the RoPE context differs from the source's (max_len 16 -> 64, rope_theta 10000.0 -> 40000.0)"
                in capsys.readouterr().err) is not resuming


def test_a_lora_fine_tune_gives_the_rope_context_notice_once_not_at_each_resume(tmp_path, capsys):
    """LoRA reads its source's weights again at each resume, and the notice came again each time."""
    rope = dict(TINY_MODEL, positions="rope", max_len=16)
    train(tiny(tmp_path, **QUICK, seq_len=16, out=str(tmp_path / "src"), model=rope))
    lora = fine_tune(tmp_path, "ft", init_from=str(tmp_path / "src"), seq_len=16, lora_rank=2,
                     model={"max_len": 64, "rope_theta": 40000.0})
    capsys.readouterr()
    train(TrainConfig.from_dict(lora))
    assert "the RoPE context differs from the source's" in capsys.readouterr().err
    assert train(TrainConfig.from_dict({**lora, "steps": 3}))["steps"] == 3  # a resume
    assert "RoPE context" not in capsys.readouterr().err
