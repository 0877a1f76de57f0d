"""`koba lm sample`: autoregressive sampling from a trained LM (sampling.py), greedy and seeded, the tokenizer's
undecodable ids never drawn, end of text ending the sample, and a real run: a model trained on one sentence
continues it."""
import json

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.sampling import generate, next_token
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

SENTENCE = "pick up the red cube and put it in the bottom right box. "


def random_lm(**overrides) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, max_len=16, **overrides))


def test_greedy_is_the_argmax_of_each_step_and_equals_top_1():
    model, prompt = random_lm(), [104, 105, 32]
    greedy = generate(model, prompt, 20, temperature=0)  # 20 > max_len - 3: the context window slides
    context = list(prompt)
    with torch.no_grad():
        for _ in range(20):
            context.append(int(model(torch.tensor([context[-16:]]))[0][0, -1].argmax()))
    assert greedy == context[3:]
    assert generate(model, prompt, 20, temperature=1.0, top_k=1) == greedy


def test_seeded_sampling_repeats_and_respects_allowed_banned_and_stop():
    model, prompt = random_lm(), [104, 105]
    draw = [generate(model, prompt, 30, temperature=1.5, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert draw[0] == draw[1] and draw[0] != draw[2]
    limited = generate(model, prompt, 60, temperature=2.0, allowed=10, banned=(3,),
                       generator=torch.Generator().manual_seed(0))
    assert len(limited) == 60 and max(limited) < 10 and 3 not in limited
    greedy = generate(model, prompt, 10, temperature=0)
    stop = greedy[4]
    assert generate(model, prompt, 10, temperature=0, stop_id=stop) == greedy[:greedy.index(stop)]


def test_bad_requests_are_one_line_errors():
    model = random_lm()
    for kwargs in ({"ids": []}, {"ids": [1], "temperature": -1.0}, {"ids": [1], "temperature": float("nan")},
                   {"ids": [1], "top_k": -2}):
        with pytest.raises(KobaError, match="sample"):
            generate(model, max_new_tokens=3, **kwargs)


def test_a_model_trained_on_a_sentence_continues_it(tmp_path, capsys):
    (tmp_path / "train.txt").write_text(SENTENCE * 80)
    train(TrainConfig.from_dict(dict(
        model=dict(d_model=64, n_layers=2, n_heads=2, max_len=64), train_data=str(tmp_path / "train.txt"),
        seq_len=64, batch_size=8, steps=200, lr=1e-2, warmup=10, eval_every=200, eval_batches=1, ckpt_every=200,
        out=str(tmp_path / "run"), progress=False, device="cpu")))
    assert main(["lm", "sample", "--checkpoint", str(tmp_path / "run"), "--prompt", "pick up the", "--tokens", "40",
                 "--temperature", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["text"] == (SENTENCE * 2)[len("pick up the"):][:40]  # 40 bytes: " red cube ... bottom right"
    assert result["new_tokens"] == 40 and not result["stopped_at_end_of_text"] and result["kv_cache"]
    # without the KV cache (the whole context through the model each token): the same text
    assert main(["lm", "sample", "--checkpoint", str(tmp_path / "run"), "--prompt", "pick up the", "--tokens", "40",
                 "--temperature", "0", "--json", "--no-cache"]) == 0
    uncached = json.loads(capsys.readouterr().out)
    assert uncached["text"] == result["text"] and not uncached["kv_cache"]
    # the plain form prints prompt + continuation; a seeded, tempered sample repeats
    assert main(["lm", "sample", "--checkpoint", str(tmp_path / "run" / "checkpoint"), "--prompt", "put it",
                 "--tokens", "12"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("put it") and main(["lm", "sample", "--checkpoint", str(tmp_path / "run"), "--prompt",
                                                "put it", "--tokens", "12"]) == 0
    assert capsys.readouterr().out == first
    # streamed plain output = prompt + the --json text of the same draw
    assert main(["lm", "sample", "--checkpoint", str(tmp_path / "run"), "--prompt", "put it", "--tokens", "12",
                 "--json"]) == 0
    assert first == "put it" + json.loads(capsys.readouterr().out)["text"] + "\n"


def test_sample_cli_refuses_what_it_cannot_use(tmp_path, capsys):
    assert main(["lm", "sample", "--checkpoint", str(tmp_path / "nothing"), "--prompt", "hi"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bare").mkdir()
    model = random_lm()
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(tmp_path / "bare" / "model.safetensors"))
    assert main(["lm", "sample", "--checkpoint", str(tmp_path / "bare"), "--prompt", "hi"]) == 2
    assert "no training config" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["lm", "sample", "--checkpoint", str(tmp_path), "--prompt", "hi", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_nucleus_keeps_the_fewest_most_likely_tokens_that_reach_p():
    probs = torch.tensor([0.05, 0.5, 0.3, 0.15])  # ranked: 1 (0.5), 2 (0.3), 3 (0.15), 0 (0.05)
    logits = probs.log()

    def drawn(top_p, top_k=0, n=400):
        generator = torch.Generator().manual_seed(0)
        return {next_token(logits, 1.0, top_k, top_p, generator) for _ in range(n)}

    assert drawn(0.49) == {1}           # 0.5 alone reaches it
    assert drawn(0.51) == {1, 2}        # 0.5 + 0.3
    assert drawn(0.79) == {1, 2}
    assert drawn(0.81) == {1, 2, 3}
    assert drawn(1.0) == {0, 1, 2, 3}
    assert drawn(0.01) == {1}           # the most likely token is always kept
    assert drawn(0.9, top_k=2) == {1, 2}  # top-k first, then the nucleus of what is left (renormalised)
    assert drawn(0.6, top_k=2) == {1} and drawn(0.65, top_k=2) == {1, 2}  # after top-k: 0.625 and 0.375
    # within the nucleus the draw follows the renormalised probabilities: 1 is drawn 0.5 / 0.8 of the time
    generator = torch.Generator().manual_seed(1)
    draws = [next_token(logits, 1.0, 0, 0.8, generator) for _ in range(4000)]
    assert abs(draws.count(1) / 4000 - 0.625) < 0.03
    with pytest.raises(KobaError, match="top-p"):
        generate(random_lm(), [1], 3, top_p=0.0)


def test_streamed_pieces_hold_back_half_characters_and_join_to_the_text(tmp_path, capsys):
    from koba_ros.nlp.sampling import TextStreamer
    from koba_ros.nlp.tokenizer import ByteTokenizer

    tok, pieces = ByteTokenizer(), []
    streamer = TextStreamer(tok.decode, pieces.append)
    ids = list("aé b€".encode())  # é is 2 bytes, € is 3
    for n in range(1, len(ids) + 1):
        streamer(ids[:n])
    streamer.flush(tok.decode(ids))
    assert pieces == ["a", "é", " ", "b", "€"]
    streamer = TextStreamer(tok.decode, pieces.append)
    pieces.clear()
    streamer(ids[:2])  # ends inside é: nothing shown until the flush at the end
    assert pieces == []
    streamer.flush(tok.decode(ids[:2]))
    assert pieces == ["a\ufffd"]


def test_broken_weights_are_a_one_line_error_not_a_crash_in_multinomial():
    import pytest
    import torch

    from koba_ros.errors import KobaError
    from koba_ros.nlp.sampling import next_token

    for temperature in (0.0, 0.8):
        for broken in (float("nan"), float("inf")):
            with pytest.raises(KobaError, match="NaN or infinite"):
                next_token(torch.tensor([0.0, broken, 1.0]), temperature)
        assert next_token(torch.tensor([float("-inf"), 2.0, float("-inf")]), temperature) == 1  # banned ids
