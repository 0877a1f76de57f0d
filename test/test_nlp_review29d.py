"""Session 29's review of feature interactions: `koba lm train --out` before the init_from merge, influence on a
fine-tune of a turn-over run, tokenizer paths that name the same files, an hf digest that covers the special tokens,
a RoPE context extended by init_from, and turn-over dropout on one document. Each test fails on the code before the
fix."""
import json
import shutil

import pytest
import torch
import yaml

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.data import TokenStream
from koba_ros.nlp.lm_influence import load_runs
from koba_ros.nlp.prepared import open_tokens, prepare
from koba_ros.nlp.tokenizer import HFTokenizer
from koba_ros.nlp.trainer import TrainConfig, document_count, train
from koba_ros.nlp.warm_start import TURNOVER_KEY, check_agrees, tokenizer_difference
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_train import TEXT, TINY_MODEL, tiny

QUICK = dict(steps=2, eval_every=2, ckpt_every=2, eval_batches=1, tensorboard=False, progress=False)


def state(run) -> dict:
    return json.loads((run / "checkpoint" / "state.json").read_text())


def fine_tune(tmp_path, name, **overrides) -> dict:
    """A fine-tune's raw config: no model section (the source's), the tiny run's training settings."""
    config = dict(train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=4, lr=3e-3, warmup=1, **QUICK,
                  out=str(tmp_path / name))
    config.update(overrides)
    return config


def collection(folder, texts) -> str:
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"{i}.txt").write_text(text)
    return str(folder)


def test_koba_lm_train_out_chooses_the_run_before_init_froms_source_is_merged(tmp_path, monkeypatch, capsys):
    """--out was set after from_dict had taken model fields from the checkpoint at the YAML's out (another run's
    dropout here), and a resume with --out read its moved source; --set out= did neither."""
    monkeypatch.chdir(tmp_path)
    train(tiny(tmp_path, **QUICK, out=str(tmp_path / "src")))
    train(tiny(tmp_path, **QUICK, out=str(tmp_path / "other"), model=dict(TINY_MODEL, dropout=0.3)))
    config = tmp_path / "ft.yaml"
    config.write_text(yaml.safe_dump(fine_tune(tmp_path, "other", init_from=str(tmp_path / "src"), device="cpu")))
    assert main(["lm", "train", "--config", str(config), "--out", "new", "--no-progress", "--json"]) == 0
    assert state(tmp_path / "new")["config"]["model"]["dropout"] == 0.0  # the source's, not the other run's 0.3
    shutil.move(tmp_path / "src", tmp_path / "src_moved")
    capsys.readouterr()
    assert main(["lm", "train", "--config", str(config), "--out", "new", "--steps", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3  # resumed its own checkpoint; the source is not read


def test_influence_refuses_a_run_whose_weights_started_from_a_turnover_run(tmp_path):
    """The fine-tune inherited the source's turnover_p and seed, so its document d got the source's document d's
    mask, and influence credited it with what the source's document taught."""
    docs = collection(tmp_path / "docs", [TEXT[:1700], TEXT[1700:3400], TEXT[3400:]])
    src, plain = tmp_path / "src", tmp_path / "plain"
    train(tiny(tmp_path, **QUICK, train_data=docs, out=str(src), model=dict(TINY_MODEL, turnover_p=0.5)))
    train(tiny(tmp_path, **QUICK, train_data=docs, out=str(plain)))
    for name, model in (("same_seed", None), ("new_seed", {"turnover_seed": 1})):
        train(TrainConfig.from_dict(fine_tune(tmp_path, name, train_data=docs, init_from=str(src), steps=1,
                                              **({"model": model} if model else {}))))
        assert state(tmp_path / name)[TURNOVER_KEY] == [{"run": str(src), "turnover_seed": 0}]
        with pytest.raises(KobaError, match=f"were trained with turn-over dropout by {src}, .* from scratch"):
            load_runs([str(tmp_path / name)], "cpu")
    # A run written before the record: its source is read now.
    meta = state(tmp_path / "new_seed")
    del meta[TURNOVER_KEY]
    (tmp_path / "new_seed" / "checkpoint" / "state.json").write_text(json.dumps(meta))
    with pytest.raises(KobaError, match="were trained with turn-over dropout"):
        load_runs([str(tmp_path / "new_seed")], "cpu")
    # The source itself, and a turn-over fine-tune of a plain run, are read as before.
    train(TrainConfig.from_dict(fine_tune(tmp_path, "of_plain", train_data=docs, init_from=str(plain), steps=1,
                                          model={"turnover_p": 0.5})))
    assert state(tmp_path / "of_plain")[TURNOVER_KEY] == []
    for run in (src, tmp_path / "of_plain"):
        assert len(load_runs([str(run)], "cpu")[1]) == 3


def hf_folder(folder, text=TEXT, eos="</s>") -> HFTokenizer:
    """A small BPE tokenizer.json with <unk> <s> </s>, and a tokenizer_config.json naming bos and `eos` (none: no
    config file)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(text.splitlines(), trainers.BpeTrainer(vocab_size=80,
                                                                  special_tokens=["<unk>", "<s>", "</s>"]))
    folder.mkdir(exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    if eos is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": eos}))
    return HFTokenizer(folder / "tokenizer.json")


def test_a_fine_tune_or_resume_may_name_its_tokenizer_by_another_path_to_the_same_files(tmp_path, monkeypatch):
    """An hf source's recorded vocab is its checkpoint's copy, so naming the file it trained with was refused, as was
    any other spelling of a path (tok/../tok/vocab.json); paths are now resolved, and another file with the source's
    digest is taken."""
    monkeypatch.chdir(tmp_path)
    hf = hf_folder(tmp_path / "tok")
    tokenizer = dict(tokenizer="hf", vocab="tok/tokenizer.json")
    model = dict(TINY_MODEL, vocab_size=hf.vocab_size, pad_id=0)
    train(tiny(tmp_path, **QUICK, **tokenizer, out="src", model=model))
    train(TrainConfig.from_dict(fine_tune(tmp_path, "ft", init_from="src", steps=1, **tokenizer)))
    assert state(tmp_path / "ft")["config"]["vocab"] == "tok/tokenizer.json"  # the config's own path
    shutil.copytree(tmp_path / "tok", tmp_path / "copy")  # another path, the same files: the digest says so
    train(TrainConfig.from_dict(fine_tune(tmp_path, "ft2", init_from="src", steps=1, tokenizer="hf",
                                          vocab="copy/../copy/tokenizer.json")))
    hf_folder(tmp_path / "other", TEXT.upper())  # another vocabulary of the same size
    with pytest.raises(KobaError, match="init_from src: vocab is 'other/tokenizer.json' here but"):
        TrainConfig.from_dict(fine_tune(tmp_path, "bad", init_from="src", tokenizer="hf",
                                        vocab="other/tokenizer.json"))
    # A resume with another spelling of the run's own path.
    assert train(tiny(tmp_path, **dict(QUICK, steps=3), tokenizer="hf", vocab="tok/../tok/tokenizer.json", out="src",
                      model=model))["steps"] == 3
    assert tokenizer_difference({"vocab": "tok/../tok/vocab.json", "merges": str(tmp_path / "tok/merges.txt")},
                                {"tokenizer": "bpe", "vocab": "tok/vocab.json", "merges": "tok/merges.txt"}) is None


def test_an_hf_digest_covers_the_special_tokens_and_an_older_digest_is_refused_unless_the_copy_shows_it(
        tmp_path, monkeypatch):
    """The digest covered tokenizer.json alone, so a token file or checkpoint made with other eos / bos passed."""
    monkeypatch.chdir(tmp_path)
    with_eos = hf_folder(tmp_path / "a")
    (tmp_path / "b").mkdir()
    shutil.copyfile(tmp_path / "a" / "tokenizer.json", tmp_path / "b" / "tokenizer.json")  # no config: no eos
    other_eos = HFTokenizer(tmp_path / "b" / "tokenizer.json")
    assert other_eos.eos_id is None and with_eos.file_digest == other_eos.file_digest
    assert with_eos.digest != other_eos.digest
    (tmp_path / "b" / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "<unk>"}))
    assert HFTokenizer(tmp_path / "b" / "tokenizer.json").digest != with_eos.digest
    (tmp_path / "train.txt").write_text(TEXT)
    prepare("train.txt", with_eos, {"tokenizer": "hf", "vocab": "a/tokenizer.json", "merges": ""}, "t.bin")
    with pytest.raises(KobaError, match="another tokenizer.json of the same size .* or other special tokens"):
        open_tokens("t.bin", "hf", HFTokenizer(tmp_path / "b" / "tokenizer.json"))
    meta = json.loads((tmp_path / "t.bin.json").read_text())
    (tmp_path / "t.bin.json").write_text(json.dumps({**meta, "tokenizer_digest": with_eos.file_digest}))
    with pytest.raises(KobaError, match="by an older version, whose digest did not cover the special tokens"):
        open_tokens("t.bin", "hf", with_eos)
    # A checkpoint with the older digest resumes where its own copy of the tokenizer files gives this digest.
    model = dict(TINY_MODEL, vocab_size=with_eos.vocab_size, pad_id=0)
    run = dict(QUICK, tokenizer="hf", vocab="a/tokenizer.json", out="run", model=model)
    train(tiny(tmp_path, **run))
    path = tmp_path / "run" / "checkpoint" / "state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "tokenizer_digest": with_eos.file_digest}))
    assert train(tiny(tmp_path, **dict(run, steps=3)))["steps"] == 3
    assert state(tmp_path / "run")["tokenizer_digest"] == with_eos.digest
    path.write_text(json.dumps({**json.loads(path.read_text()), "tokenizer_digest": with_eos.file_digest}))
    (tmp_path / "a" / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "<unk>"}))
    with pytest.raises(KobaError, match="recorded by an older version, whose hf digest covered tokenizer.json alone"):
        train(tiny(tmp_path, **dict(run, steps=4)))


def test_init_from_may_extend_a_rope_models_context_and_nothing_else(tmp_path, capsys):
    """YaRN / position interpolation change no weight, but init_from refused their fields, so the context-extension
    fine-tune README measures had no `koba lm train` path."""
    rope = dict(TINY_MODEL, positions="rope", max_len=16)
    train(tiny(tmp_path, **QUICK, seq_len=16, out=str(tmp_path / "src"), model=rope))
    capsys.readouterr()
    yarn = {"rope_scaling": "yarn", "rope_factor": 4.0, "rope_original_max_len": 16, "max_len": 64}
    train(TrainConfig.from_dict(fine_tune(tmp_path, "long", init_from=str(tmp_path / "src"), seq_len=64, steps=1,
                                          model=yarn)))
    assert "the RoPE context differs from the source's (max_len 16 -> 64, rope_scaling 'none' -> 'yarn'" \
        in capsys.readouterr().err
    recorded = state(tmp_path / "long")["config"]["model"]
    assert {key: recorded[key] for key in yarn} == yarn
    # A resume still trains its checkpoint's model; the head must fit LongRoPE's factors; learned positions are
    # weights.
    with pytest.raises(KobaError, match="model max_len is 128 here but 64 in the checkpoint"):
        train(TrainConfig.from_dict(fine_tune(tmp_path, "long", init_from=str(tmp_path / "src"), seq_len=64,
                                              steps=2, model={**yarn, "max_len": 128})))
    with pytest.raises(KobaError, match="longrope RoPE scaling needs rope_short_factor: a list of 8"):
        TrainConfig.from_dict(fine_tune(tmp_path, "lr", init_from=str(tmp_path / "src"), model={
            "rope_scaling": "longrope", "rope_short_factor": [1.0], "rope_long_factor": [1.0]}))
    with pytest.raises(KobaError, match="model max_len is 64 here but 32 in the source's config"):
        check_agrees("src", {"max_len": 64}, dict(TINY_MODEL))


def test_turnover_on_one_document_is_noted_at_the_start(tmp_path, capsys):
    """One document trains through one fixed mask; only `koba lm influence` said so, after the training."""
    train(tiny(tmp_path, **dict(QUICK, steps=1), model=dict(TINY_MODEL, turnover_p=0.5)))
    assert "training text is one document" in capsys.readouterr().err
    docs = collection(tmp_path / "docs", [TEXT[:2500], TEXT[2500:]])
    train(tiny(tmp_path, **dict(QUICK, steps=1), train_data=docs, out=str(tmp_path / "col"),
               model=dict(TINY_MODEL, turnover_p=0.5)))
    assert "one document" not in capsys.readouterr().err
    E = 9
    for tokens, eos_starts, count in (([1, 2, 3], False, 1), ([1, E], False, 1), ([1, E, 2], False, 2),
                                      ([E, 1], True, 1), ([E, 1, E, 2], True, 2), ([1, E, 2, E], False, 2)):
        assert document_count(TokenStream(torch.tensor(tokens), 1), E, eos_starts) == count, (tokens, eos_starts)
