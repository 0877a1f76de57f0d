"""Session 29's review of the Hugging Face paths (docs/nlp.md, "Session 29: a review of the Hugging Face paths"):
the logit check's tolerance on large logits, an hf tokenizer whose eos only its model's config names, tokens added
past the model's embedding rows, a transformers model that cannot run, a model_type that is not a string, relative
--vocab / --merges, and the chat template and special_tokens_map.json that import then export dropped."""
import copy
import json

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import hf_gpt2
from koba_ros.nlp.checkpoint import hf_tokenizer_files
from koba_ros.nlp.hf_tokenizer import EOS, byte_level_vocab, bytes_to_unicode
from koba_ros.nlp.sampling import sample
from koba_ros.nlp.tokenizer import build_tokenizer
from koba_ros.nlp.trained import load_trained
from koba_ros.nlp.trainer import train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_hf_tokenizer_json import llama_style_tokenizer_folder
from test.test_nlp_train import tiny


def gpt2(vocab: int, **kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = dict(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=None,
                  eos_token_id=None)
    return GPT2LMHeadModel(GPT2Config(**{**config, **kw})).eval()


def llama(folder, vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
                     ).save_pretrained(folder)
    return folder


def byte_bpe_tokenizer(folder, specials=(EOS,)) -> None:
    """tokenizer.json of byte-level BPE with no merges (ids 0-255 the bytes) and `specials` added after them, with a
    tokenizer_config.json naming no special token, as openai-community/gpt2's names none."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(vocab={c: b for b, c in bytes_to_unicode().items()}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True) for s in specials])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))


def refused(capsys, args, match: str) -> str:
    capsys.readouterr()
    assert main(["lm", *args]) != 0
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# 1. The logit check: 1e-4 of the largest |logit|, not 1e-4 absolute

def test_an_exact_import_with_large_logits_passes_the_logit_check_and_a_wrong_mapping_does_not():
    hf = gpt2(300, n_layer=2)
    with torch.no_grad():
        hf.transformer.ln_f.weight.mul_(2000.0)  # logits about +-1300
    ours = hf_gpt2.from_hf(hf)
    difference = hf_gpt2.check_same_logits(ours, hf, "import")  # was refused: 2.4e-4 > 1e-4
    ids = torch.randint(0, 300, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # float32's rounding: our own model differs from itself in float64 by as much
        rounding = float((ours(ids)[0].double() - copy.deepcopy(ours).double()(ids)[0]).abs().max())
    assert 1e-4 < difference < 1e-3 and 1e-4 < rounding < 1e-3
    with torch.no_grad():
        ours.blocks[0].attn.out.weight.copy_(ours.blocks[0].attn.out.weight.t().clone())  # Conv1D left untransposed
    with pytest.raises(KobaError, match=r"import: the two models' logits differ by .*, more than 0.0001 of their "
                                        r"largest \|logit\|"):
        hf_gpt2.check_same_logits(ours, hf, "import")


# 2. An hf tokenizer's eos from its model's files where no tokenizer file names one, recorded in the checkpoint

def test_an_hf_tokenizers_eos_falls_back_to_special_tokens_map_then_the_models_generation_config_then_config(tmp_path):
    byte_bpe_tokenizer(tmp_path, specials=("<a>", "<b>", "<c>", "<d>"))  # ids 256-259
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "eos_token_id": 259}))
    assert build_tokenizer("hf", str(tmp_path / "tokenizer.json")).eos_id == 259  # was None
    files = hf_tokenizer_files(tmp_path / "tokenizer.json")  # a checkpoint has no config.json: it records the eos
    assert files["tokenizer_config.json"] == {"model_max_length": 64, "eos_token": "<d>"}
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [258, 259]}))
    assert build_tokenizer("hf", str(tmp_path / "tokenizer.json")).eos_id == 258  # what generate() stops at first
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"eos_token": {"content": "<b>"}}))
    tok = build_tokenizer("hf", str(tmp_path / "tokenizer.json"))
    assert (tok.eos_id, tok.bos_id, tok.pad_id) == (257, 257, 257)
    assert hf_tokenizer_files(tmp_path / "tokenizer.json")["tokenizer_config.json"] == \
        {"model_max_length": 64, "model_eos_token_ids": [257, 258, 259]}  # the eos is named; its list is recorded
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<a>"}))
    assert build_tokenizer("hf", str(tmp_path / "tokenizer.json")).eos_id == 256


def test_an_imported_gpt2_whose_tokenizer_config_names_no_eos_stops_at_its_models_eos_and_exports_it(tmp_path):
    source = tmp_path / "hub"
    byte_bpe_tokenizer(source)  # <|endoftext|> is 256
    hf = gpt2(257, bos_token_id=256, eos_token_id=256)
    with torch.no_grad():  # every next token is <|endoftext|>
        hf.transformer.ln_f.weight.zero_()
        hf.transformer.ln_f.bias.copy_(hf.transformer.wte.weight[256] * 50)
    hf.save_pretrained(source)
    hf_gpt2.import_pretrained(str(source), tmp_path / "in")
    assert load_trained(tmp_path / "in").tokenizer.eos_id == 256  # was None
    assert json.loads((tmp_path / "in" / "tokenizer_config.json").read_text())["eos_token"] == EOS  # self-contained
    # import records the digest init_from checks (it recorded none), and the checkpoint's own copy gives it
    recorded = json.loads((tmp_path / "in" / "state.json").read_text())["tokenizer_digest"]
    assert recorded == load_trained(tmp_path / "in").tokenizer.digest
    result = sample(tmp_path / "in", "hello", max_new_tokens=5, temperature=0)
    assert result["new_tokens"] == 0 and result["stopped_at_end_of_text"]  # was 5 tokens of <|endoftext|>
    assert hf_gpt2.export_checkpoint(tmp_path / "in", tmp_path / "out")["eos_token_id"] == 256  # was null


# 3. Tokens added past the model's embedding rows (CodeLlama-34b's infilling tokens)

def test_tokens_added_past_the_models_rows_import_and_only_a_text_that_holds_one_is_refused(tmp_path, capsys):
    from tokenizers import AddedToken, Tokenizer

    source = tmp_path / "hf"
    rows = llama_style_tokenizer_folder(source)
    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<PRE>", "<MID>", "<SUF>", "<EOT>")])
    tok.save(str(source / "tokenizer.json"))
    llama(source, rows)
    hf_gpt2.import_pretrained(str(source), tmp_path / "in")  # was refused: 119 ids, 115 rows
    assert sample(tmp_path / "in", "put the red cube", max_new_tokens=3, temperature=0)["new_tokens"] == 3
    refused(capsys, ["sample", "--checkpoint", str(tmp_path / "in"), "--prompt", "put the <MID> cube"],
            f"sample: the prompt holds id {rows + 1} ('<MID>'), a token the tokenizer added past the model's {rows} "
            "embedding rows")
    config = dict(tokenizer="hf", vocab=str(tmp_path / "in" / "tokenizer.json"), seq_len=8, steps=1, eval_every=1,
                  ckpt_every=1, model=dict(d_model=16, n_layers=1, n_heads=2, max_len=8, vocab_size=rows, pad_id=0))
    (tmp_path / "infill.txt").write_text("put the red cube <EOT> in the box\n" * 20)
    with pytest.raises(KobaError, match=rf"train: .*infill.txt holds id {rows + 3} \('<EOT>'\), a token the "
                                        f"tokenizer added past the model's {rows} embedding rows"):
        train(tiny(tmp_path, **config, train_data=str(tmp_path / "infill.txt")))
    assert train(tiny(tmp_path, **config))["steps"] == 1  # text without them trains
    for per_document in (False, True):  # koba lm eval (and expand's, gqa's, influence's --data) too, in one line
        refused(capsys, ["eval", "--checkpoint", str(tmp_path / "in"), "--data", str(tmp_path / "infill.txt"),
                         *(["--per-document"] if per_document else [])],
                f"eval: {tmp_path / 'infill.txt'} holds id {rows + 3} ('<EOT>'), a token the tokenizer added past")
    small = llama(tmp_path / "small", rows - 5)  # a base vocabulary past the rows is still refused
    llama_style_tokenizer_folder(small)
    with pytest.raises(KobaError, match=rf"import: the hf tokenizer has more ids than this model's {rows - 5} "
                                        rf"\({rows}, not counting tokens added past its vocabulary\)"):
        hf_gpt2.import_pretrained(str(small), tmp_path / "small_in")


# 4. and 5. A model transformers cannot run, a model_type that is not a string: one line

def test_a_model_transformers_cannot_run_and_a_model_type_list_are_one_line(tmp_path, capsys):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    Gemma2ForCausalLM(Gemma2Config(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=16,
                                   max_position_embeddings=64)).save_pretrained(tmp_path / "gemma2")
    config = json.loads((tmp_path / "gemma2" / "config.json").read_text())
    (tmp_path / "gemma2" / "config.json").write_text(json.dumps({**config, "sliding_window": 0}))
    refused(capsys, ["import", "--hf", str(tmp_path / "gemma2"), "--out", str(tmp_path / "in"), "--tokenizer", "byte"],
            "import: transformers cannot run this model: ")  # was a RuntimeError traceback
    assert not (tmp_path / "in").exists()
    (tmp_path / "gemma2" / "config.json").write_text(json.dumps({**config, "model_type": ["llama"]}))
    refused(capsys, ["import", "--hf", str(tmp_path / "gemma2"), "--out", str(tmp_path / "in"), "--tokenizer", "byte"],
            "holds a ['llama'] model, not one of GPT-2, Llama")  # was TypeError: unhashable type: 'list'


# 6. Relative --vocab / --merges are recorded whole

def test_an_import_with_relative_vocab_and_merges_samples_from_another_folder(tmp_path, monkeypatch):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.json").write_text(json.dumps(byte_level_vocab()))
    (tmp_path / "tok" / "merges.txt").write_text("#version: 0.2\n")
    gpt2(259).save_pretrained(tmp_path / "hf")
    monkeypatch.chdir(tmp_path)
    hf_gpt2.import_pretrained("hf", "imp", tokenizer="bpe", vocab_file="tok/vocab.json", merges="tok/merges.txt")
    config = json.loads((tmp_path / "imp" / "state.json").read_text())["config"]
    assert (config["vocab"], config["merges"]) == (str(tmp_path / "tok" / "vocab.json"),
                                                   str(tmp_path / "tok" / "merges.txt"))  # were as typed
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert sample(tmp_path / "imp", "put the", max_new_tokens=2, temperature=0)["new_tokens"] == 2


# 7. The chat template and special_tokens_map.json travel with the tokenizer

def test_import_then_export_keeps_the_chat_template_and_special_tokens_map(tmp_path):
    from transformers import AutoTokenizer

    source = tmp_path / "hf"
    byte_bpe_tokenizer(source)
    (source / "special_tokens_map.json").write_text(json.dumps({"eos_token": EOS}))
    (source / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}<|endoftext|>{% endfor %}")
    gpt2(257).save_pretrained(source)
    hf_gpt2.import_pretrained(str(source), tmp_path / "in")
    hf_gpt2.export_checkpoint(tmp_path / "in", tmp_path / "out")
    for name in ("special_tokens_map.json", "chat_template.jinja"):
        assert (tmp_path / "out" / name).read_text() == (source / name).read_text()  # were dropped
    exported = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert exported.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == f"hi{EOS}"
