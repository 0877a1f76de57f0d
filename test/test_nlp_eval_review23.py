"""`koba lm eval` / `sample` defects a review found (session 23): a token file made with another bpe vocabulary (or
gpt2 ranks file) of the same size was accepted, eval on the run's own train_data scored the training split silently,
a damaged token-file description gave tracebacks, and sample printed the prompt before refusing its arguments."""
import json

import pytest

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.prepared import open_tokens, prepare, token_stream
from koba_ros.nlp.tokenizer import build_tokenizer, whisper_gpt2_ranks
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.nlp_weights import away_from_init
from test.test_nlp_lm_command_review22 import TEXT, refused, tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny byte-level run on TEXT with the default val_fraction (0.05): it held the last 5 % out."""
    return tiny_run(tmp_path_factory.mktemp("tiny23"))


# 1. a token file records the digest of the files that made its ids (bpe, gpt2), and another one is refused

def two_bpe_vocabularies(tmp_path):
    from koba_ros.nlp.bpe_training import train_bpe

    words = {"a": "pick up the red cube and put it in the bottom right box ", "b": "zebras and owls sleep quietly "}
    made = {}
    for name, text in words.items():
        (tmp_path / f"{name}.txt").write_text(text * 200)
        made[name] = train_bpe(str(tmp_path / f"{name}.txt"), 280, tmp_path / f"tok_{name}", min_frequency=1)
    assert made["a"]["vocab_size"] == made["b"]["vocab_size"]  # the size check alone cannot tell them apart
    return [build_tokenizer("bpe", made[n]["vocab"], made[n]["merges"]) for n in ("a", "b")]


def test_a_token_file_of_another_bpe_vocabulary_of_the_same_size_is_refused_and_an_older_one_still_opens(tmp_path):
    tok_a, tok_b = two_bpe_vocabularies(tmp_path)
    made_with_b = tmp_path / "b.bin"
    prepare(str(tmp_path / "a.txt"), tok_b, {"tokenizer": "bpe"}, made_with_b)
    with pytest.raises(KobaError, match="another vocab.json \\+ merges.txt of the same size"):
        open_tokens(made_with_b, "bpe", tok_a)
    with pytest.raises(KobaError, match="another vocab.json"):  # training reads token files through it too
        token_stream(str(made_with_b), tok_a, "bpe", 16)
    assert len(open_tokens(made_with_b, "bpe", tok_b)[0]) > 0
    # A token file prepared before bpe had a digest records none: it opens on the kind and size check, as before.
    meta_path = tmp_path / "b.bin.json"
    meta = json.loads(meta_path.read_text())
    del meta["tokenizer_digest"]
    meta_path.write_text(json.dumps(meta))
    assert len(open_tokens(made_with_b, "bpe", tok_a)[0]) > 0


@pytest.mark.skipif(whisper_gpt2_ranks() is None, reason="needs openai-whisper's gpt2.tiktoken")
def test_a_token_file_made_with_a_custom_gpt2_ranks_file_is_refused_by_a_run_on_gpt2s_own(tmp_path):
    lines = whisper_gpt2_ranks().read_text(encoding="ascii").splitlines()
    (first, r0), (second, r1) = (line.split() for line in lines[300:302])
    lines[300:302] = [f"{first} {r1}", f"{second} {r0}"]  # two merges' ranks swapped: same size, other ids
    custom = tmp_path / "custom.tiktoken"
    custom.write_text("\n".join(lines) + "\n", encoding="ascii")
    (tmp_path / "t.txt").write_text(TEXT)
    prepare(str(tmp_path / "t.txt"), build_tokenizer("gpt2", str(custom)), {"tokenizer": "gpt2"}, tmp_path / "t.bin")
    with pytest.raises(KobaError, match="another ranks file"):
        open_tokens(tmp_path / "t.bin", "gpt2", build_tokenizer("gpt2"))


# 2. eval on the run's own train_data scores the held-out part unless told otherwise, and says so

def test_eval_on_the_runs_train_data_scores_its_held_out_split_and_all_is_marked_as_overlapping(run, capsys):
    from koba_ros.nlp.evaluation import evaluate_checkpoint

    train_txt = run.parent / "train.txt"
    n = len(TEXT.encode())  # byte tokenizer: one token per byte
    held = evaluate_checkpoint(run, str(train_txt))
    assert held["split"] == "val" and held["val_fraction"] == 0.05 and not held["overlaps_training"]
    assert held["tokens"] == n - int(n * 0.95) and "notice" not in held
    tail = run.parent / "tail.txt"  # the held-out tail as a text of its own scores exactly the same
    tail.write_bytes(TEXT.encode()[int(n * 0.95):])
    alone = evaluate_checkpoint(run, str(tail))
    assert (alone["split"], alone["overlaps_training"]) == ("all", False)
    assert (held["loss"], held["bits_per_byte"], held["bytes"]) == (alone["loss"], alone["bits_per_byte"],
                                                                     alone["bytes"])
    capsys.readouterr()
    assert main(["lm", "eval", "--checkpoint", str(run), "--data", str(train_txt), "--split", "all", "--json"]) == 0
    out, err = capsys.readouterr()
    everything = json.loads(out)
    assert everything["split"] == "all" and everything["overlaps_training"] and everything["tokens"] == n
    assert len(err.splitlines()) == 1 and "notice" in err and "--split val" in err, err
    refused(capsys, ["eval", "--checkpoint", str(run), "--data", str(tail), "--split", "val"], "other data")


def test_eval_on_train_data_a_run_held_nothing_out_of_records_the_overlap_with_a_notice(tmp_path, capsys):
    (tmp_path / "val.txt").write_text("lift the cube and turn around.\n" * 20)
    run = tiny_run(tmp_path, val_data=str(tmp_path / "val.txt"))
    capsys.readouterr()
    assert main(["lm", "eval", "--checkpoint", str(run), "--data", str(tmp_path / "train.txt"), "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["split"] == "all" and result["overlaps_training"] and "trained on all of it" in result["notice"]
    assert len(err.splitlines()) == 1 and "notice" in err, err
    refused(capsys, ["eval", "--checkpoint", str(run), "--data", str(tmp_path / "train.txt"), "--split", "val"],
            "held no part")


# 3. a damaged token-file description: one line, exit 2, for eval and for training

@pytest.mark.parametrize("key, value, message", [
    ("text_bytes", None, "text_bytes must be a positive integer"),
    ("text_bytes", 0, "text_bytes must be a positive integer"),
    ("text_bytes", "many", "text_bytes must be a positive integer"),
    ("tokenizer", "byte", "tokenizer must be an object"),
    ("tokens", "lots", "tokens must be a positive integer"),
])
def test_a_damaged_token_file_description_is_refused_in_one_line(run, tmp_path, capsys, key, value, message):
    (tmp_path / "val.txt").write_text(TEXT)
    assert main(["lm", "prepare", "--data", str(tmp_path / "val.txt"), "--out", str(tmp_path / "val.bin"),
                 "--json"]) == 0
    meta_path = tmp_path / "val.bin.json"
    meta = json.loads(meta_path.read_text())
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    meta_path.write_text(json.dumps(meta))
    refused(capsys, ["eval", "--checkpoint", str(run), "--data", str(tmp_path / "val.bin")], message)
    with pytest.raises(KobaError, match=message):  # what training reads a token file with
        token_stream(str(tmp_path / "val.bin"), build_tokenizer("byte"), "byte", 16)


# 4. sample checks its arguments before loading the checkpoint or printing the prompt

@pytest.mark.parametrize("bad", [["--temperature", "-1"], ["--top-p", "0"], ["--tokens", "-5"], ["--top-k", "-1"],
                                 ["--temperature", "nan"]])
def test_sample_refuses_bad_arguments_before_printing_the_prompt_or_loading(run, capsys, monkeypatch, bad):
    import koba_ros.nlp.sampling as sampling

    def no_load(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the arguments were checked")

    monkeypatch.setattr(sampling, "load_trained", no_load)
    capsys.readouterr()
    assert main(["lm", "sample", "--checkpoint", str(run), "--prompt", "move left", *bad]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("koba lm: error: sample:"), (out, err)


# 5. a second review (of this session's diff): four more faults of the eval split and LongRoPE scoring

def test_a_longrope_models_score_does_not_depend_on_the_batch_size():
    """A window shorter than rope_original_max_len is scored with the short factors, as it would be alone: batched
    with longer windows it had been padded to their length and scored with the long ones."""
    import torch

    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.evaluation import score
    from koba_ros.nlp.model import TransformerLM
    from test.test_nlp_longrope import LLAMA

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=64, pad_id=0, d_model=32, n_layers=1, n_heads=2, max_len=64,
                                            rope_scaling="longrope", rope_factor=4.0, rope_original_max_len=16,
                                            rope_short_factor=[1.0] * 8, rope_long_factor=[4.0] * 8, **LLAMA))
    away_from_init(model, 0.3)  # sharper attention than at initialisation, so that positions matter
    tokens = torch.randint(0, 64, (75,))  # windows of 32, 32 and 10 tokens: the last is under the threshold
    alone, batched = (score(model, tokens, 32, 32, batch_size=b) for b in (1, 8))
    assert alone[1] == batched[1] == 74
    assert abs(alone[0] - batched[0]) < 1e-6 * alone[0]  # before the fix: 2 % apart


def test_the_held_out_split_is_scored_when_it_is_shorter_than_the_windows(tmp_path, capsys):
    run = tiny_run(tmp_path, model=dict(positions="rope"))  # a 176-token tail; RoPE scores windows past max_len
    assert main(["lm", "eval", "--checkpoint", str(run), "--data", str(tmp_path / "train.txt"), "--seq-len", "200",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "val" and result["tokens"] == 3520 - int(3520 * 0.95)


def test_a_token_file_prepared_from_a_relative_path_is_known_as_the_runs_training_text_anywhere(run, tmp_path,
                                                                                                 monkeypatch, capsys):
    monkeypatch.chdir(run.parent)
    assert main(["lm", "prepare", "--data", "train.txt", "--out", str(tmp_path / "train.bin"), "--json"]) == 0
    monkeypatch.chdir(tmp_path)  # another folder: "train.txt" alone would name a file that is not there
    capsys.readouterr()
    assert main(["lm", "eval", "--checkpoint", str(run), "--data", "train.bin", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"


@pytest.mark.parametrize("value", ["abc", [0.1], 1.5, -0.2, True])
def test_a_damaged_recorded_val_fraction_is_refused_in_one_line(run, tmp_path, capsys, value):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    state = copy / "checkpoint" / "state.json"
    meta = json.loads(state.read_text())
    meta["config"]["val_fraction"] = value
    state.write_text(json.dumps(meta))
    refused(capsys, ["eval", "--checkpoint", str(copy), "--data", str(run.parent / "train.txt")], "val_fraction")
