"""Session 29's review of tokenisers, precision and distributed set-up (docs/nlp.md, "Session 29: a review of
tokenisers, precision and distributed set-up"): a bos that is the eos between packed documents, the master-weight
AdamW on parameters without a gradient, the fp16 chunked loss's weight cast, loss scales float32 cannot hold or no
precision uses, tokenizer.json files the `tokenizers` package cannot encode with, a partial torchrun environment,
and top_k's ties."""
import json

import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.nlp import distributed, trainer
from koba_ros.nlp.chunked_cross_entropy import chunked_cross_entropy
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import TokenStream, encode_documents, eos_starts_documents, load_documents
from koba_ros.nlp.document_mask import documents_of
from koba_ros.nlp.master_weights import MasterWeightAdamW
from koba_ros.nlp.mixed_precision import LossScaler
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.sampling import next_token
from koba_ros.nlp.tokenizer import build_tokenizer
from koba_ros.nlp.trainer import train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_train import tiny

END = "<|endoftext|>"
TEXTS = ["go home", "pick up the red cube", "put the mug in the box"]


def neox_style_tokenizer(folder):
    """A byte-level BPE whose bos and eos are one <|endoftext|> that its post-processor puts before every text, as
    GPT-NeoX's, Phi-2's and StarCoder's (tokenizer_config.json written as transformers writes it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder.mkdir(exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(TEXTS * 20, trainers.BpeTrainer(vocab_size=300 + len(alphabet), special_tokens=[END],
                                                            initial_alphabet=alphabet))
    tok.post_processor = processors.TemplateProcessing(single=f"{END} $A", special_tokens=[(END, 0)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": END, "eos_token": END}))
    return build_tokenizer("hf", str(folder / "tokenizer.json"))


def test_a_bos_that_is_eos_stands_once_between_documents_and_each_document_sees_it_as_when_scored_alone(tmp_path):
    from koba_ros.nlp.prepared import open_tokens, prepare

    tok = neox_style_tokenizer(tmp_path / "tok")
    assert tok.bos_id == tok.eos_id == 0 and tok.prompt_bos and eos_starts_documents(tok)
    alone = [tok.encode(text, bos=True) for text in TEXTS]  # as `sample` and `eval --per-document` encode a text
    stream = encode_documents(TEXTS, tok, separate=True)
    assert stream == [i for ids in alone for i in ids]  # `E a E b E c`: was `E a E E b E E c E`
    docs = tmp_path / "docs"
    docs.mkdir()
    for n, text in enumerate(TEXTS):
        (docs / f"{n}.txt").write_text(text)
    prepare(str(docs), tok, {"tokenizer": "hf", "vocab": str(tok.path)}, tmp_path / "docs.bin")
    assert open_tokens(tmp_path / "docs.bin", "hf", tok)[0].tolist() == stream  # a token file is the same stream
    x = torch.tensor([stream])
    documents = documents_of(x, tok.eos_id, eos_starts=True)
    assert documents.tolist() == [[n + 1 for n, ids in enumerate(alone) for _ in ids]]
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4,
                                            max_len=64, positions="rope")).eval()
    with torch.no_grad():
        packed = model(x, documents=documents)[0][0]
        offset = 0
        for ids in alone:  # with RoPE each document computes what it computes alone, its bos included
            assert (packed[offset:offset + len(ids)] - model(torch.tensor([ids]))[0][0]).abs().max() < 1e-5
            offset += len(ids)


def test_turn_over_ids_give_a_bos_that_is_eos_to_the_document_it_starts(tmp_path):
    tok = neox_style_tokenizer(tmp_path / "tok")
    tokens = torch.tensor(encode_documents(TEXTS * 2, tok, separate=True))
    whole = documents_of(tokens[None], tok.eos_id, eos_starts=True)[0]
    stream, T = TokenStream(tokens, seq_len=6), 6
    starts = torch.arange(0, len(tokens) - T)
    x = torch.stack([tokens[s:s + T] for s in starts])
    # the same number in every window that holds it, from 0 (training_documents' order, which influence reads)
    expected = torch.stack([whole[s:s + T] for s in starts]) - 1
    assert expected.min() == 0
    assert torch.equal(stream.document_ids(starts, x, tok.eos_id, eos_starts=True), expected)


def test_training_masks_and_turns_over_documents_whose_bos_is_eos_as_they_are_scored_alone(tmp_path, monkeypatch):
    tok = neox_style_tokenizer(tmp_path / "tok")
    docs = tmp_path / "docs"
    docs.mkdir()
    for n, text in enumerate(TEXTS * 8):
        (docs / f"{n:02d}.txt").write_text(text)
    seen = []

    class RecordingLM(TransformerLM):
        def forward(self, ids, targets=None, shift=None, **kw):
            if self.training:
                seen.append((ids, kw["documents"], kw["instances"]))
            return super().forward(ids, targets, shift, **kw)

    monkeypatch.setattr(trainer, "TransformerLM", RecordingLM)
    train(tiny(tmp_path, train_data=str(docs), tokenizer="hf", vocab=str(tok.path), steps=1, eval_every=1,
               ckpt_every=1, document_mask=True, val_fraction=0.2, seq_len=16,
               model=dict(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, max_len=32,
                          turnover_p=0.5)))
    ids, documents, instances = seen[0]
    assert torch.equal(documents, documents_of(ids, tok.eos_id, eos_starts=True))
    starts_here = ids == tok.eos_id
    assert starts_here.any()
    # an eos and the token after it are one document, for the mask and for turn-over dropout alike
    after = starts_here[:, :-1]
    assert torch.equal(documents[:, 1:][after], documents[:, :-1][after])
    assert torch.equal(instances[:, 1:][after], instances[:, :-1][after])
    assert torch.equal(instances - instances[:, :1], documents - documents[:, :1])


def test_master_weight_adamw_leaves_parameters_without_a_gradient_as_torch_adamw_does():
    def run(make):
        torch.manual_seed(0)
        used, unused, once, frozen = (torch.nn.Parameter(torch.randn(4, 4)) for _ in range(4))
        opt = make([{"params": [used, unused, once, frozen], "weight_decay": 0.1}])
        for step in range(4):
            loss = (used * used).sum()
            if step == 0:  # `once` has a gradient only now; `frozen` is frozen after it
                loss = loss + (once * 3).sum() + (frozen * frozen).sum()
            if step == 1:
                frozen.requires_grad_(False)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return [p.detach().clone() for p in (used, unused, once, frozen)]

    theirs = run(lambda groups: torch.optim.AdamW(groups, lr=0.1))
    ours = run(lambda groups: MasterWeightAdamW(groups, lr=0.1, dtype=torch.float32))
    for name, a, b in zip(("used", "unused", "once", "frozen"), ours, theirs, strict=True):
        assert (a - b).abs().max() < 1e-5, name  # unused, once and frozen decayed and kept moving before


def test_a_zero_gradient_still_steps_a_master_weight_parameter():
    """A gradient of zeros is a gradient (torch steps it: decay and momentum), unlike no gradient."""
    weight = torch.nn.Parameter(torch.ones(3))
    opt = MasterWeightAdamW([{"params": [weight], "weight_decay": 0.5}], lr=0.1, dtype=torch.float32)
    (weight * 0).sum().backward()
    opt.step()
    assert torch.allclose(weight.detach(), torch.full((3,), 0.95))


def test_a_gradient_written_into_p_grad_without_a_backward_is_stepped():
    """The hook marks what autograd accumulates; a gradient set in place (a user's own gradient, no backward) is not
    all zero and is stepped, as torch.optim.AdamW steps it (a follow-up review found it dropped)."""
    def run(make):
        weight = torch.nn.Parameter(torch.ones(3))
        opt = make([weight])
        weight.grad = torch.zeros(3) if weight.grad is None else weight.grad
        weight.grad.copy_(torch.tensor([1.0, -1.0, 2.0]))
        opt.step()
        return weight.detach().clone()

    ours = run(lambda ps: MasterWeightAdamW(ps, lr=0.1, dtype=torch.float32))
    assert torch.allclose(ours, run(lambda ps: torch.optim.AdamW(ps, lr=0.1))) and not torch.equal(ours, torch.ones(3))


def test_the_fp16_chunked_loss_casts_the_weight_once_not_once_per_chunk():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Casts(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default and tuple(args[0].shape) == (64, 8):
                Casts.count += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    weight = torch.randn(64, 8, dtype=torch.float16, requires_grad=True)
    hidden = torch.randn(40, 8, dtype=torch.float16, requires_grad=True)
    with Casts():
        chunked_cross_entropy(hidden, weight, torch.randint(0, 64, (40,)), chunk=8)  # 5 chunks
    assert Casts.count == 1  # was 5, one [V, d] fp32 copy per chunk


@pytest.mark.parametrize("bad", [1e39, 2.0 ** 127, 1e-50, 2.0 ** -127])
def test_a_loss_scale_float32_cannot_hold_with_its_inverse_is_one_line(tmp_path, bad):
    with pytest.raises(KobaError, match=r"loss_scale must be 0 .dynamic. or a positive number from 2\^-126 to 2\^126"):
        tiny(tmp_path, precision="fp16", loss_scale=bad)
    for good in (2.0 ** -126, 2.0 ** 126, 1024):
        tiny(tmp_path, precision="fp16", loss_scale=good)


@pytest.mark.parametrize("bad", ["big", -4, 0, 1e39, float("nan"), True])
def test_a_damaged_saved_loss_scale_is_one_line_and_leaves_the_scale(bad):
    scaler = LossScaler(True, torch.device("cpu"))
    state = {**scaler.state_dict(), "scale": bad}
    with pytest.raises(KobaError, match=r"checkpoint run/checkpoint: state.json's loss_scale scale is .* \(damaged\)"):
        scaler.load_state_dict(state, "checkpoint run/checkpoint")
    with pytest.raises(KobaError, match="loss_scale _growth_tracker is 'x'.*damaged"):
        scaler.load_state_dict({**scaler.state_dict(), "_growth_tracker": "x"})
    assert scaler.value == 2.0 ** 16


def test_a_resumed_fp16_run_with_a_damaged_scale_names_its_checkpoint(tmp_path):
    train(tiny(tmp_path, steps=1, eval_every=1, ckpt_every=1, eval_batches=1, precision="fp16", device="cpu"))
    state = tmp_path / "run" / "checkpoint" / "state.json"
    meta = json.loads(state.read_text())
    meta["loss_scale"]["scale"] = 1e39
    state.write_text(json.dumps(meta))
    with pytest.raises(KobaError, match=r"checkpoint .*checkpoint: state.json's loss_scale scale is 1e\+39"):
        train(tiny(tmp_path, steps=2, eval_every=1, ckpt_every=1, eval_batches=1, precision="fp16", device="cpu"))


def test_a_loss_scale_is_refused_where_no_precision_scales_and_noted_where_auto_does_not(tmp_path, capsys):
    for precision in ("bf16", "bf16_master", "fp32"):
        with pytest.raises(KobaError, match=f"loss_scale is for precision fp16.*precision {precision} has no loss"):
            tiny(tmp_path, precision=precision, loss_scale=1024)
    result = train(tiny(tmp_path, steps=1, eval_every=1, ckpt_every=1, eval_batches=1, precision="auto",
                        loss_scale=1024, device="cpu"))
    assert result["loss_scale"] is None
    assert "loss_scale 1024 is not used: precision auto is fp32 on this device" in capsys.readouterr().err


def test_an_hf_tokenizer_the_tokenizers_package_cannot_encode_with_is_one_line(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    def word_level(folder, words):  # no unk token: a word it lacks cannot be encoded
        folder.mkdir()
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.save(str(folder / "tokenizer.json"))
        return str(folder / "tokenizer.json")

    with pytest.raises(KobaError, match=r"tokenizer: .*tokenizer.json cannot encode the text starting .*WordLevel"):
        build_tokenizer("hf", word_level(tmp_path / "a", ["put", "the", "cube", "a"]))  # its probes' words
    probed = "put the cube in box a b . red Put now ! then 1 2".split()
    tok = build_tokenizer("hf", word_level(tmp_path / "b", probed))
    assert tok.encode("put the cube") == [0, 1, 2]
    with pytest.raises(KobaError, match=r"b/tokenizer.json cannot encode the text starting 'grab the mug': WordLevel"):
        tok.encode("grab the mug")


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE is 2 but RANK, MASTER_ADDR, MASTER_PORT are not set; launch with torchrun"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "but MASTER_ADDR, MASTER_PORT are not set"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer; launch with torchrun, or set RANK, LOCAL_RANK"),
    ({"WORLD_SIZE": "2", "RANK": "first", "MASTER_ADDR": "x", "MASTER_PORT": "1"}, "RANK='first' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "x", "MASTER_PORT": "1"}, r"RANK 2 is not one of 0..1"),
])
def test_a_partial_torchrun_environment_is_one_line(monkeypatch, env, message):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(KobaError, match=message):
        distributed.init("cpu")


def test_top_k_keeps_every_token_tied_with_the_kth_as_its_docstring_says():
    """Documented, not changed (as nanoGPT and transformers' TopKLogitsWarper): top_k 1 with two tied logits draws
    either; temperature 0 is the argmax."""
    logits = torch.tensor([1.0, 3.0, 3.0, 0.0])
    drawn = {next_token(logits, 1.0, top_k=1, generator=torch.Generator().manual_seed(s)) for s in range(40)}
    assert drawn == {1, 2} and next_token(logits, 0.0, top_k=1) == 1


def test_a_training_collection_whose_tokenizer_has_no_bos_keeps_its_separator(tmp_path):
    """The byte tokenizer (bos 257, eos 258, no prompt_bos) is as before: `a E b E`, each eos ending its document."""
    tok = build_tokenizer("byte")
    assert not eos_starts_documents(tok)
    assert encode_documents(["ab", "c"], tok, True) == [97, 98, 258, 99, 258]
    (tmp_path / "one.txt").write_text("abc")
    assert encode_documents(load_documents(str(tmp_path / "one.txt")), tok, False) == [97, 98, 99]


def test_eval_and_influence_read_a_run_whose_bos_is_eos_as_it_trained(tmp_path, monkeypatch):
    """`koba lm eval` (and expand's, gqa's and influence's scores) mask documents as training did, and influence's
    training documents are `E text` with the instance ids training gave them (0, 1, ...)."""
    from koba_ros.nlp import evaluation
    from koba_ros.nlp.lm_influence import training_documents
    from koba_ros.nlp.trained import load_trained

    tok = neox_style_tokenizer(tmp_path / "tok")
    docs = tmp_path / "docs"
    docs.mkdir()
    for n, text in enumerate(TEXTS * 8):
        (docs / f"{n:02d}.txt").write_text(text)
    train(tiny(tmp_path, train_data=str(docs), tokenizer="hf", vocab=str(tok.path), steps=1, eval_every=1,
               ckpt_every=1, document_mask=True, seq_len=16, val_fraction=0.3,
               model=dict(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, max_len=32,
                          turnover_p=0.5)))
    run = tmp_path / "run"
    trained = load_trained(run)
    assert trained.eos_starts
    documents, _ = training_documents(trained)
    assert [tok.decode(d[1:].tolist()) for d in documents[:-1]] == (TEXTS * 8)[:len(documents) - 1]
    assert all(d[0] == tok.eos_id for d in documents)
    whole = torch.cat(documents)
    starts = torch.tensor([0, 5, len(whole) - 17])
    x = torch.stack([whole[s:s + 16] for s in starts.tolist()])
    ids = TokenStream(whole, seq_len=16).document_ids(starts, x, tok.eos_id, eos_starts=True)
    first = torch.cat([torch.full((len(d),), k) for k, d in enumerate(documents)])
    assert torch.equal(ids, torch.stack([first[s:s + 16] for s in starts.tolist()]))

    seen = []
    real = evaluation.documents_of
    monkeypatch.setattr(evaluation, "documents_of", lambda x, eos, starts=False: seen.append(starts) or
                        real(x, eos, starts))
    evaluation.evaluate_checkpoint(str(run), str(docs))
    assert seen and all(seen)


def test_keep_best_gathers_no_optimizer_state(tmp_path, monkeypatch):
    """out/best holds weights only: a new best must not gather the AdamW state (twice the fp32 model, all ranks into
    rank 0's host memory under FSDP) only to drop it (a distributed review found it at every new best)."""
    calls = []
    real = distributed.get_optimizer_state_dict
    monkeypatch.setattr(distributed, "get_optimizer_state_dict", lambda *a, **k: calls.append(1) or real(*a, **k))
    train(tiny(tmp_path, steps=6, eval_every=1, ckpt_every=6, keep_best=True))
    assert (tmp_path / "run" / "best").is_dir()
    assert len(calls) == 1  # the one checkpoint, at step 6
