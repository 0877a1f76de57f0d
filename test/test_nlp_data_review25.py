"""Session 25 review of the data and configuration path: each test failed on the code before its fix."""
import types

import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.data import batch_generator, dataset_files, encode_documents, load_documents, micro_seed, read_file
from koba_ros.nlp.tokenizer import build_tokenizer, whisper_gpt2_ranks
from koba_ros.nlp.trainer import TrainConfig, check_outputs, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

TEXT = "the red cube is in the top left box. put the brown fluffy toy in the top right box.\n" * 30
TINY = dict(model=dict(d_model=16, n_layers=1, n_heads=2, max_len=16), seq_len=16, batch_size=2, steps=1,
            eval_every=1, eval_batches=1, ckpt_every=1, progress=False, device="cpu")


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    from koba_ros.nlp.bpe_training import train_bpe

    folder = tmp_path_factory.mktemp("bpe")
    (folder / "corpus.txt").write_text(TEXT)
    made = train_bpe(str(folder / "corpus.txt"), 300, folder / "vocab")
    return build_tokenizer("bpe", made["vocab"], made["merges"])


# 1. --split val's bits-per-byte divisor: an end-of-text separator is not 13 bytes of text

@pytest.mark.parametrize("kind", ["byte", "bpe", "gpt2"])
def test_decoded_bytes_counts_the_texts_not_their_end_of_text_separators(tmp_path, bpe, kind):
    from koba_ros.nlp.evaluation import decoded_bytes

    if kind == "gpt2" and whisper_gpt2_ranks() is None:
        pytest.skip("needs openai-whisper's gpt2.tiktoken")
    tokenizer = bpe if kind == "bpe" else build_tokenizer(kind)
    (tmp_path / "docs").mkdir()
    for i in range(5):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"document {i}: put the cube in the box.\n" * (i + 1))
    texts = load_documents(str(tmp_path / "docs"))
    ids = torch.tensor(encode_documents(texts, tokenizer, True))
    assert (ids == tokenizer.eos_id).sum() == 5
    assert decoded_bytes(ids, tokenizer) == sum(len(t.encode()) for t in texts)


# 2. a BPE vocabulary without <|endoftext|> has no pad or bos: id 0 is a real token and may be sampled

def test_a_bpe_vocabulary_without_end_of_text_has_no_pad_or_bos_and_sample_bans_no_real_token(tmp_path, monkeypatch):
    from tokenizers import ByteLevelBPETokenizer

    from koba_ros.nlp import sampling

    plain = ByteLevelBPETokenizer()
    plain.train_from_iterator(["!a " * 50], vocab_size=256, min_frequency=10**9, show_progress=False)
    plain.save_model(str(tmp_path))
    tok = build_tokenizer("bpe", str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert tok.decode([0]) == "!" and tok.eos_id is None
    assert (tok.pad_id, tok.bos_id) == (None, None)
    assert tok.encode("!a ", bos=True, eos=True) == tok.encode("!a ")
    seen = {}
    monkeypatch.setattr(sampling, "load_trained", lambda *a, **k: types.SimpleNamespace(
        model=types.SimpleNamespace(config=types.SimpleNamespace(vocab_size=tok.vocab_size)), tokenizer=tok))
    monkeypatch.setattr(sampling, "generate", lambda *a, **k: seen.update(k) or [0])
    result = sampling.sample("run", "!a ", max_new_tokens=1)
    assert seen["banned"] == () and result["text"] == "!"


# 3. an empty dataset name is not the current folder

def test_an_empty_or_blank_dataset_name_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    from koba_ros.nlp.bpe_training import train_bpe
    from koba_ros.nlp.prepared import prepare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text(TEXT)
    for name in ("", "  "):
        with pytest.raises(KobaError, match="dataset name is empty"):
            dataset_files(name)
        with pytest.raises(KobaError, match="must name a dataset"):
            TrainConfig.from_dict({"train_data": name})
        with pytest.raises(KobaError, match="dataset name is empty"):
            prepare(name, build_tokenizer("byte"), {"tokenizer": "byte"}, tmp_path / "out.bin")
        with pytest.raises(KobaError, match="dataset name is empty"):
            train_bpe(name, 300, tmp_path / "vocab")
    with pytest.raises(KobaError, match="must name a dataset"):
        TrainConfig.from_dict({"val_data": " "})
    assert TrainConfig.from_dict({"val_data": ""}).val_data == ""  # empty val_data: hold out val_fraction
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# 4. a custom GPT-2 ranks file must number its tokens 0..50255, each once

def test_a_ranks_file_with_a_gap_or_a_repeated_rank_is_refused(tmp_path):
    import base64

    from koba_ros.nlp.tokenizer import _read_ranks

    def ranks(*numbers):
        path = tmp_path / "r.tiktoken"
        path.write_text("".join(f"{base64.b64encode(bytes([i])).decode()} {r}\n" for i, r in enumerate(numbers)))
        return path

    assert _read_ranks(ranks(1, 0, 2)) == {b"\0": 1, b"\1": 0, b"\2": 2}
    for numbers, what in (((0, 1, 5), "rank 5 is out of range"), ((0, 1, 1), "rank 1 is given twice"),
                          ((0, -1, 1), "rank -1 is out of range")):
        with pytest.raises(KobaError, match=what):
            _read_ranks(ranks(*numbers))


@pytest.mark.skipif(whisper_gpt2_ranks() is None, reason="needs openai-whisper's gpt2.tiktoken")
@pytest.mark.parametrize("rank", [60000, 299, 50256, -1])
def test_a_custom_gpt2_ranks_file_with_a_bad_rank_is_refused_in_one_line(tmp_path, rank):
    pytest.importorskip("tiktoken")
    lines = whisper_gpt2_ranks().read_text(encoding="ascii").splitlines()
    lines[300] = f"{lines[300].split()[0]} {rank}"
    path = tmp_path / "custom.tiktoken"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    with pytest.raises(KobaError, match=f"rank {rank} is (out of range|given twice)"):
        build_tokenizer("gpt2", str(path))


# 5. a large seed no longer overflows torch's generator mid-run; ordinary seeds draw as before

def test_a_large_seed_draws_without_overflow_and_ordinary_seeds_are_unchanged():
    assert micro_seed(7, 3, 1) == 7 * 1_000_003 + 3 * 7919 + 1
    big = 2**63 - 1
    draws = torch.randint(0, 1000, (4,), generator=batch_generator(big, 10, 3))
    again = torch.randint(0, 1000, (4,), generator=batch_generator(big, 10, 3))
    assert draws.tolist() == again.tolist()
    torch.manual_seed(micro_seed(big + 2, 10, 3))
    for seed in (-2**63 - 1, 2**63, True):
        with pytest.raises(KobaError, match="seed must be an integer"):
            TrainConfig.from_dict({"seed": seed})
    # a negative seed, which torch wraps, still works and draws as it did (micro_seed's modulo is torch's wrap)
    assert TrainConfig.from_dict({"seed": -1}).seed == -1
    old = torch.Generator().manual_seed(-1 * 1_000_003 + 3 * 7919 + 1)
    assert torch.equal(torch.randint(0, 1000, (4,), generator=old),
                       torch.randint(0, 1000, (4,), generator=batch_generator(-1, 3, 1)))
    with pytest.raises(KobaError, match="shape_max_shift must be from 0 to 2"):
        TrainConfig.from_dict({"model": {"positions": "shape", "shape_max_shift": 10**20}})
    with pytest.raises(KobaError, match="shape_inference_shift must be an integer from 0 to 2"):
        TrainConfig.from_dict({"model": {"positions": "shape", "shape_inference_shift": 2**64}})


# 6. prepare --out: folders are refused before the work, and no file is left without its description

@pytest.mark.parametrize("folder", ["x.bin", "x.bin.json", "x.bin.partial"])
def test_prepare_refuses_an_output_path_that_is_a_folder_before_tokenising(tmp_path, monkeypatch, folder):
    from koba_ros.nlp import prepared

    (tmp_path / "a.txt").write_text(TEXT)
    (tmp_path / folder).mkdir()
    monkeypatch.setattr(prepared, "_write_tokens", lambda *a: pytest.fail("tokenised before the refusal"))
    with pytest.raises(KobaError, match=f"{folder} is a folder"):
        prepared.prepare(str(tmp_path / "a.txt"), build_tokenizer("byte"), {"tokenizer": "byte"}, tmp_path / "x.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.txt", folder])


def test_prepare_that_cannot_write_the_description_keeps_the_old_token_file_whole(tmp_path, monkeypatch):
    from pathlib import Path

    from koba_ros.nlp.prepared import open_tokens, prepare

    (tmp_path / "a.txt").write_text(TEXT)
    byte = build_tokenizer("byte")
    prepare(str(tmp_path / "a.txt"), byte, {"tokenizer": "byte"}, tmp_path / "x.bin")
    before = (tmp_path / "x.bin").read_bytes(), (tmp_path / "x.bin.json").read_bytes()
    (tmp_path / "a.txt").write_text(TEXT * 2)
    write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if ".json" in self.name:
            raise OSError(28, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(KobaError, match="No space left on device"):
        prepare(str(tmp_path / "a.txt"), byte, {"tokenizer": "byte"}, tmp_path / "x.bin")
    monkeypatch.undo()
    assert ((tmp_path / "x.bin").read_bytes(), (tmp_path / "x.bin.json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "x.bin", "x.bin.json"]
    assert len(open_tokens(tmp_path / "x.bin", "byte", byte)[0]) == len(TEXT)


# 7. out/tensorboard: checked before training, and a folder of other things is never deleted

def test_a_tensorboard_path_that_is_a_file_or_holds_other_things_is_refused_before_training(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    (tmp_path / "t.txt").write_text(TEXT)
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    (out / "tensorboard" / "notes.txt").write_text("mine")
    config = TrainConfig.from_dict({**TINY, "train_data": str(tmp_path / "t.txt"), "out": str(out)})
    with pytest.raises(KobaError, match="not a TensorBoard folder"):
        train(config)
    assert (out / "tensorboard" / "notes.txt").read_text() == "mine" and not (out / "metrics.csv").exists()
    (out / "tensorboard" / "notes.txt").unlink()
    (out / "tensorboard").rmdir()
    (out / "tensorboard").write_text("a file")
    with pytest.raises(KobaError, match="not a TensorBoard folder"):
        check_outputs(out, False, True)
    check_outputs(out, False, False)  # tensorboard off: nothing is written there
    (out / "tensorboard").unlink()
    assert train(config)["steps"] == 1  # its own event files: rewritten on the next run
    assert train(TrainConfig.from_dict({**config.to_dict(), "steps": 2}))["steps"] == 2


def test_write_tensorboard_never_deletes_a_folder_of_other_things(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    from koba_ros.nlp.curves import write_tensorboard

    (tmp_path / "metrics.csv").write_text("step,loss\n1,2.0\n")
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "keep.txt").write_text("mine")
    with pytest.raises(KobaError, match="not a TensorBoard folder"):
        write_tensorboard(tmp_path / "metrics.csv", tmp_path / "tb")
    assert (tmp_path / "tb" / "keep.txt").read_text() == "mine"


# 8. a temperature too small for float32 samples the most likely token, not a NaN traceback

@pytest.mark.parametrize("temperature", [1e-46, 1e-300])
def test_a_temperature_that_rounds_to_zero_in_the_logits_dtype_is_greedy(temperature):
    from koba_ros.nlp.sampling import next_token

    logits = torch.tensor([1.0, 3.0, 2.0, -float("inf")])
    assert next_token(logits, temperature, 0, 1.0, torch.Generator().manual_seed(0)) == 1
    assert next_token(logits, 1e-40, 0, 1.0, torch.Generator().manual_seed(0)) == 1  # float32 subnormal: as before


# 9. dist_timeout must be a finite, representable wait

@pytest.mark.parametrize("timeout", [float("inf"), 1e300, float("nan"), 0])
def test_an_infinite_or_huge_dist_timeout_is_refused(timeout):
    with pytest.raises(KobaError, match="dist_timeout must be > 0 and <="):
        TrainConfig.from_dict({"dist_timeout": timeout})
    assert TrainConfig.from_dict({"dist_timeout": 86400.0}).dist_timeout == 86400.0


# 10. koba lm tokenizer refuses a token file as prepare does; NUL bytes or undecodable bytes are not text

def test_the_tokenizer_command_refuses_a_token_file_as_prepare_does(tmp_path):
    from koba_ros.nlp.bpe_training import train_bpe
    from koba_ros.nlp.prepared import prepare

    (tmp_path / "a.txt").write_text(TEXT)
    prepare(str(tmp_path / "a.txt"), build_tokenizer("byte"), {"tokenizer": "byte"}, tmp_path / "a.bin")
    with pytest.raises(KobaError, match="tokenizer: .*a.bin is a token file"):
        train_bpe(str(tmp_path / "a.bin"), 300, tmp_path / "vocab")
    assert not (tmp_path / "vocab").exists()


def test_files_with_nul_bytes_or_mostly_undecodable_bytes_are_refused_by_every_reader(tmp_path):
    from koba_ros.nlp.bpe_training import train_bpe
    from koba_ros.nlp.prepared import prepare

    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"put the cube\0\0\1\0 in the box\n" * 20)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1") * 20)
    for path, what in ((binary, "holds NUL bytes"), (latin, "is not UTF-8 text")):
        with pytest.raises(KobaError, match=f"{path.name} {what}"):
            read_file(path)
        with pytest.raises(KobaError, match=f"{path.name} {what}"):
            train_bpe(str(path), 300, tmp_path / "vocab")
        with pytest.raises(KobaError, match=f"{path.name} {what}"):  # a block at a time, as prepare reads
            prepare(str(path), build_tokenizer("byte"), {"tokenizer": "byte"}, tmp_path / "x.bin", chunk_bytes=64)
        with pytest.raises(KobaError, match=f"{path.name} {what}"):
            train(TrainConfig.from_dict({**TINY, "train_data": str(path), "out": str(tmp_path / "run")}))
    assert not (tmp_path / "vocab").exists() and not list(tmp_path.glob("x.bin*"))
    few = tmp_path / "few.txt"  # a stray byte in a long text (under 1% of it) is still read, as U+FFFD
    few.write_bytes(TEXT.encode() + b"\xff\n")
    assert read_file(few).endswith("\ufffd\n")
    made = prepare(str(few), build_tokenizer("byte"), {"tokenizer": "byte"}, tmp_path / "few.bin", chunk_bytes=64)
    assert made["tokens"] == len(read_file(few).encode())
