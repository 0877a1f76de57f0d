"""Session 28's second review, of training's edges: fp16 loss scaling with loss_chunk, init_from's tokenizer digest
and a moved source on resume, `koba lm prepare`'s cut rule on CRLF and blank-line text, a resumed GradScaler's
settings and an infinite lora_alpha, then the follow-up review of those fixes (b921846). Each test fails on the code
before the fix."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from koba_ros.errors import KobaError
from koba_ros.nlp.bpe_training import train_bpe
from koba_ros.nlp.chunked_cross_entropy import chunked_cross_entropy
from koba_ros.nlp.data import encode_documents, is_collection, load_documents
from koba_ros.nlp.mixed_precision import LossScaler
from koba_ros.nlp.prepared import cut_for, prepare, read_pieces
from koba_ros.nlp.tokenizer import build_tokenizer, whisper_gpt2_ranks
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

BASE = dict(seq_len=16, batch_size=2, steps=2, lr=1e-3, warmup=1, schedule="wso", eval_every=2, eval_batches=1,
            ckpt_every=2, progress=False)
MODEL = dict(d_model=16, n_layers=1, n_heads=2, max_len=16)
TEXT = "the red cube is in the top left box. put the toy in the box.\n" * 40


def _grads(h, w, t, kind, scale):
    h.grad = w.grad = None
    with torch.autocast("cpu", dtype=torch.float16):
        loss = F.cross_entropy(F.linear(h, w).float(), t) if kind == "plain" else chunked_cross_entropy(h, w, t, 256)
    (loss * scale).backward()
    return h.grad / scale, w.grad / scale


def test_fp16_loss_scaling_reaches_the_chunked_cross_entropys_gradients():
    torch.manual_seed(0)
    h = torch.randn(2048, 32).requires_grad_()
    w = (torch.randn(256, 32) * 0.5).requires_grad_()
    t = (h.detach() @ w.detach().t()).argmax(1)
    F.cross_entropy(h @ w.t(), t).backward()
    ref = h.grad.clone(), w.grad.clone()

    def error(g):
        return max(float((a - b).norm() / b.norm()) for a, b in zip(g, ref, strict=True))

    plain, chunked = _grads(h, w, t, "plain", 2.0 ** 16), _grads(h, w, t, "chunked", 2.0 ** 16)
    unscaled = _grads(h, w, t, "chunked", 1.0)
    # The scale now changes the chunked gradient (it was applied after the fp16 rounding: no effect at all) ...
    assert not all(torch.equal(a, b) for a, b in zip(chunked, unscaled, strict=True))
    # ... and with it the chunked path is as close to fp32 as the plain F.cross_entropy path.
    assert error(chunked) <= 1.5 * error(plain) + 1e-4
    lost = [float(((a == 0) & (b != 0)).float().mean()) for a, b in zip(chunked, ref, strict=True)]
    assert max(lost) < 1e-3


@pytest.mark.parametrize("source", ["src", "src/best"])   # a run's best/ records the digest too (keep_best)
def test_init_from_refuses_a_tokenizer_whose_files_changed_since_the_source_trained(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(TEXT)
    (tmp_path / "b.txt").write_text("move left five centimeters. open the gripper. go home now.\n" * 40)
    train_bpe("a.txt", 300, "tok")
    bpe = dict(tokenizer="bpe", vocab="tok/vocab.json", merges="tok/merges.txt")
    train(TrainConfig.from_dict(dict(BASE, model=dict(MODEL, vocab_size=300), train_data="a.txt", out="src",
                                     keep_best=True, **bpe)))
    folder = {"src": "src/checkpoint", "src/best": "src/best"}[source]
    assert "tokenizer_digest" in json.loads((tmp_path / folder / "state.json").read_text())
    shutil.rmtree("tok")
    train_bpe("b.txt", 300, "tok")  # another vocabulary of the same size at the same paths
    with pytest.raises(KobaError, match=rf"init_from {source}: the tokenizer's files \(digest\) are .* in the source"):
        train(TrainConfig.from_dict(dict(BASE, train_data="b.txt", init_from=source, out="tuned")))


def test_a_fine_tuning_run_resumes_its_own_checkpoint_after_the_source_moved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(TEXT)
    train(TrainConfig.from_dict(dict(BASE, model=MODEL, train_data="a.txt", out="src")))
    train(TrainConfig.from_dict(dict(BASE, train_data="a.txt", init_from="src", out="tuned")))
    shutil.rmtree("src")
    summary = train(TrainConfig.from_dict(dict(BASE, train_data="a.txt", init_from="src", out="tuned", steps=4)))
    assert summary["steps"] == 4
    recorded = json.loads((tmp_path / "tuned" / "checkpoint" / "state.json").read_text())["config"]
    assert recorded["init_from"] == "src" and recorded["model"]["d_model"] == 16
    # A run without its own checkpoint still needs the source.
    with pytest.raises(KobaError, match="checkpoint src not found"):
        TrainConfig.from_dict(dict(BASE, train_data="a.txt", init_from="src", out="other"))


CRLF = "put the red cube in the top left box.\r\nthen go home.\r\n" * 40
PARAGRAPHS = "first paragraph line one  \nline two.\n\n\tsecond paragraph.\n\n\n" * 40


def _kinds(tmp_path):
    (tmp_path / "v.txt").write_text(CRLF + PARAGRAPHS)
    train_bpe(str(tmp_path / "v.txt"), 300, tmp_path / "tok")
    kinds = {"byte": build_tokenizer("byte"),
             "bpe": build_tokenizer("bpe", str(tmp_path / "tok" / "vocab.json"), str(tmp_path / "tok" / "merges.txt"))}
    if whisper_gpt2_ranks() is not None:
        pytest.importorskip("tiktoken")
        kinds["gpt2"] = build_tokenizer("gpt2")
    return kinds


@pytest.mark.parametrize("text", [CRLF, PARAGRAPHS], ids=["crlf", "blank_lines"])
def test_prepare_cuts_crlf_and_blank_line_text_into_pieces_with_the_whole_texts_ids(tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode("utf-8"))
    pieces = list(read_pieces(str(path), 64))
    # The old rule found no cut in either text: one piece, the whole file.
    assert "".join(pieces) == text and len(pieces) > 10 and max(map(len, pieces)) < 200
    for name, tokenizer in _kinds(tmp_path).items():
        meta = prepare(str(path), tokenizer, {"tokenizer": name}, tmp_path / f"{name}.bin", chunk_bytes=64)
        got = np.fromfile(tmp_path / f"{name}.bin", dtype=meta["dtype"]).astype(int).tolist()
        assert got == encode_documents(load_documents(str(path)), tokenizer, is_collection(str(path))), name


def test_a_dynamic_loss_scale_resumed_from_a_constant_run_keeps_its_own_growth_settings():
    saved = LossScaler(True, torch.device("cpu"), constant=1024.0).state_dict()
    assert saved["growth_interval"] == 2 ** 31 - 1
    resumed = LossScaler(True, torch.device("cpu"), constant=0.0)
    fresh_interval = resumed.scaler.state_dict()["growth_interval"]
    resumed.load_state_dict(saved)
    assert resumed.value == 1024.0 and resumed.scaler.state_dict()["growth_interval"] == fresh_interval < 2 ** 31 - 1


@pytest.mark.parametrize("alpha", [float("inf"), 1e300])
def test_lora_alpha_must_be_finite_with_a_scale_float32_can_hold(alpha):
    with pytest.raises(KobaError, match="lora_alpha must be finite with lora_alpha / lora_rank at most float32"):
        TrainConfig(init_from="src", lora_rank=2, lora_alpha=alpha, device="cpu").validate()
    TrainConfig(init_from="src", lora_rank=2, lora_alpha=3e38, device="cpu").validate()  # 1.5e38 per rank fits


# The follow-up review of b921846.

def test_prepare_with_a_llama3_style_hf_tokenizer_gives_the_whole_texts_ids(tmp_path):
    """Llama-3 / Qwen-style patterns attach a newline to the piece before it ("red.\\n"): a cut before the newline
    changed the ids, and the probe (no punctuation before a newline) still said piece_safe."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from koba_ros.nlp.tokenizer import HFTokenizer

    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    corpus = "The cube is red.\nPut it in the box.\nMove left now!\nthen go home\n"
    tok.train_from_iterator([corpus] * 20, trainers.BpeTrainer(vocab_size=400,
                                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tmp_path / "tokenizer.json"))
    tokenizer = HFTokenizer(tmp_path / "tokenizer.json")
    path = tmp_path / "t.txt"
    path.write_text(corpus * 20)
    meta = prepare(str(path), tokenizer, {"tokenizer": "hf"}, tmp_path / "t.bin", chunk_bytes=64)
    got = np.fromfile(tmp_path / "t.bin", dtype=meta["dtype"]).astype(int).tolist()
    assert got == encode_documents(load_documents(str(path)), tokenizer, is_collection(str(path)))
    assert tokenizer.piece_safe and len(list(read_pieces(str(path), 64, cut_for(tokenizer)))) > 10  # in pieces


def test_a_dynamic_loss_scale_resumed_from_a_constant_run_grows_again():
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([p], lr=0.0)
    saved = LossScaler(True, torch.device("cpu"), constant=1024.0).state_dict()
    saved["_growth_tracker"] = 2100  # a constant run's 2100 clean steps, past a dynamic scale's interval (2000)
    resumed = LossScaler(True, torch.device("cpu"), constant=0.0)
    resumed.load_state_dict(saved)
    interval = resumed.scaler.state_dict()["growth_interval"]
    for _ in range(interval):
        resumed.scale((p * 1e-3).sum()).backward()
        resumed.unscale(opt)
        resumed.step(opt)
        opt.zero_grad()
    assert resumed.value == 2048.0
    # The same interval keeps its tracker.
    again = LossScaler(True, torch.device("cpu"), constant=0.0)
    again.load_state_dict({**again.state_dict(), "_growth_tracker": 7})
    assert again.scaler.state_dict()["_growth_tracker"] == 7


def test_a_damaged_own_checkpoint_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(TEXT)
    train(TrainConfig.from_dict(dict(BASE, model=MODEL, train_data="a.txt", out="src")))
    train(TrainConfig.from_dict(dict(BASE, train_data="a.txt", init_from="src", out="tuned")))
    state = tmp_path / "tuned" / "checkpoint" / "state.json"
    meta = json.loads(state.read_text())
    meta["config"].update(tokenizer="bpe", vocab=5, merges=7)
    state.write_text(json.dumps(meta))
    with pytest.raises(KobaError, match=r"state.json's vocab must be a string, got 5 \(damaged\)"):
        TrainConfig.from_dict(dict(BASE, train_data="a.txt", init_from="src", out="tuned", steps=4))


def test_a_huge_integer_lora_alpha_is_one_line():
    with pytest.raises(KobaError, match="lora_alpha must be a number within a float's range"):
        TrainConfig.from_dict(dict(init_from="src", lora_rank=2, lora_alpha=10 ** 400, device="cpu"))
    with pytest.raises(KobaError, match="lora_alpha must be finite"):
        TrainConfig(init_from="src", lora_rank=2, lora_alpha=10 ** 400, device="cpu").validate()


def test_expand_and_gqa_carry_the_sources_tokenizer_digest(tmp_path, monkeypatch):
    from koba_ros.nlp.expand_checkpoint import expand_checkpoint
    from koba_ros.nlp.gqa_conversion import convert_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(TEXT)
    train_bpe("a.txt", 300, "tok")
    bpe = dict(tokenizer="bpe", vocab="tok/vocab.json", merges="tok/merges.txt")
    train(TrainConfig.from_dict(dict(BASE, model=dict(MODEL, vocab_size=300), train_data="a.txt", out="src", **bpe)))
    digest = json.loads((tmp_path / "src" / "checkpoint" / "state.json").read_text())["tokenizer_digest"]
    expand_checkpoint("src", "grown", width_factor=2)
    convert_checkpoint("src", "pooled", n_kv_heads=1)
    for out in ("grown", "pooled"):
        assert json.loads((tmp_path / out / "state.json").read_text())["tokenizer_digest"] == digest, out
