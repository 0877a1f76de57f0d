"""The library's command-line path end to end, each step reading the previous one's files: learn a BPE vocabulary
from a folder of texts, prepare a token file, train with document_mask and keep_best, grow the best checkpoint,
train on from it, export to Hugging Face, import back, and check that eval and greedy sampling agree throughout,
transformers' own generate on the exported folder included."""
import json

import pytest
import yaml

pytest.importorskip("tokenizers", reason="koba lm tokenizer needs the tokenizers package")
pytest.importorskip("transformers", reason="koba lm export / import need transformers")

from koba_ros.cli import main  # noqa: E402
from test.nlp_threads import one_thread  # noqa: F401, E402  (autouse fixture)

LINES = ["put the brown fluffy toy in the top right box", "move left five centimeters", "open the gripper",
         "the red cube is in the bottom left box", "go home", "close the gripper slowly", "stop"]


def koba(capsys, *args) -> dict:
    assert main(["lm", *args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_tokenizer_prepare_train_expand_train_on_export_import(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(8):
        (corpus / f"{i}.txt").write_text("\n".join(LINES[(i + j) % len(LINES)] for j in range(25)) + "\n")
    bpe = koba(capsys, "tokenizer", "--data", str(corpus), "--vocab-size", "300", "--out", str(tmp_path / "bpe"))
    tokens = tmp_path / "corpus.bin"
    koba(capsys, "prepare", "--data", str(corpus), "--tokenizer", "bpe", "--vocab", bpe["vocab"], "--merges",
         bpe["merges"], "--out", str(tokens))
    config = dict(model=dict(vocab_size=300, d_model=32, n_layers=2, n_heads=2, max_len=32, pad_id=bpe["eos_id"]),
                  tokenizer="bpe", vocab=bpe["vocab"], merges=bpe["merges"], train_data=str(tokens), seq_len=32,
                  batch_size=4, steps=20, lr=3e-3, warmup=2, eval_every=5, ckpt_every=10, document_mask=True,
                  keep_best=True, out=str(tmp_path / "small"), progress=False)
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(config))
    small = koba(capsys, "train", "--config", str(tmp_path / "small.yaml"))
    assert small["best"] is not None

    grown = koba(capsys, "expand", "--checkpoint", str(tmp_path / "small" / "best"), "--out", str(tmp_path / "grown"),
                 "--width-factor", "2", "--layers", "3", "--data", str(tokens))
    assert grown["loss_change"] <= 1e-4
    on = dict(train_data=str(tokens), seq_len=32, batch_size=4, steps=4, eval_every=4, progress=False,
              out=str(tmp_path / "on"))  # model and tokenizer: the grown checkpoint's
    (tmp_path / "on.yaml").write_text(yaml.safe_dump(on))
    trained_on = koba(capsys, "train", "--config", str(tmp_path / "on.yaml"), "--set",
                      f"init_from={tmp_path / 'grown'}", "--set", f"lr={grown['suggested_lr']}")
    assert trained_on["parameters"] == grown["parameters_after"]

    koba(capsys, "export", "--checkpoint", str(tmp_path / "on"), "--out", str(tmp_path / "hf"))
    koba(capsys, "import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back"), "--tokenizer", "bpe",
         "--vocab", bpe["vocab"], "--merges", bpe["merges"])
    text = str(corpus / "3.txt")
    scores = [koba(capsys, "eval", "--checkpoint", str(tmp_path / name), "--data", text)["loss"]
              for name in ("on", "back")]
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)
    samples = [koba(capsys, "sample", "--checkpoint", str(tmp_path / name), "--prompt", "put the",
                    "--temperature", "0", "--tokens", "12")["text"] for name in ("on", "back")]
    assert samples[0] == samples[1]
    # transformers alone, from the exported folder (its tokenizer files included): the same greedy text
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    prompt = tokenizer("put the", return_tensors="pt").input_ids
    new = hf.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.eos_token_id)[0, prompt.shape[1]:]
    assert tokenizer.decode(new, skip_special_tokens=True) == samples[0]
