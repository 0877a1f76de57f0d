"""`tokenizer: hf` (tokenizer.py HFTokenizer): a pretrained model's own tokenizer.json, as a Llama comes with. Import
copies it into the checkpoint, `sample` continues as transformers' pipeline does with it, training and export keep it.
The tokenizer here is made the way SentencePiece-converted Llama tokenizers are built (Metaspace, <s> prepended by
the post-processor), trained on the robot's commands; nothing is downloaded."""
import json
import shutil

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import load_checkpoint
from koba_ros.nlp.sampling import sample
from koba_ros.nlp.tokenizer import HFTokenizer, build_tokenizer
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

COMMANDS = ["put the brown fluffy toy in the top right box", "move left five centimeters", "open the gripper",
            "pick up the red cube", "place the mug in the bottom left bin", "go home", "stop"] * 20


def llama_style_tokenizer_folder(folder, vocab_size=300, byte_level=False):
    """A tokenizer as a Llama comes with, saved as transformers saves one: Llama 1-2's (BPE over SentencePiece-style
    Metaspace pieces; <unk> <s> </s>) or, `byte_level`, Llama 3's (byte-level BPE; <|begin_of_text|>
    <|end_of_text|>). Either post-processor starts every text with its bos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|end_of_text|>"] if byte_level else ["<unk>", "<s>", "</s>"]
    bos, eos = specials[-2:]
    tok = Tokenizer(models.BPE() if byte_level else models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False) if byte_level else pre_tokenizers.Metaspace()
    tok.decoder = decoders.ByteLevel() if byte_level else decoders.Metaspace()
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    tok.train_from_iterator(COMMANDS, trainers.BpeTrainer(vocab_size=vocab_size + len(alphabet),
                                                         special_tokens=specials, initial_alphabet=alphabet))
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    extra = {} if byte_level else {"unk_token": "<unk>"}
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, **extra).save_pretrained(folder)
    return tok.get_vocab_size()


def test_the_tokenizer_reads_its_special_tokens_and_round_trips_text(tmp_path):
    llama_style_tokenizer_folder(tmp_path)
    tok = build_tokenizer("hf", str(tmp_path / "tokenizer.json"))
    assert isinstance(tok, HFTokenizer) and (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 2) and tok.prompt_bos
    ids = tok.encode("put the red cube in the top right box", bos=True, eos=True)
    assert ids[0] == 1 and ids[-1] == 2 and 1 not in ids[1:-1]  # its own <s> is not added twice
    assert tok.decode(ids) == "put the red cube in the top right box"
    assert len(ids) < len("put the red cube in the top right box") / 2  # merged pieces, not characters


def test_a_llama_3_style_byte_level_tokenizer_is_read_and_cut_into_pieces_safely(tmp_path):
    """Llama 3's kind: byte-level BPE, so any text encodes, pieces cut after lone newlines add up to the whole text's
    ids (`piece_safe`, so `koba lm prepare` streams it), and its own bos starts every text."""
    llama_style_tokenizer_folder(tmp_path, byte_level=True)
    tok = build_tokenizer("hf", str(tmp_path / "tokenizer.json"))
    assert (tok.bos_id, tok.eos_id) == (0, 1) and tok.prompt_bos and tok.piece_safe
    text = "put the ünïcode cube\nin the top right box"  # bytes never seen in training still encode
    assert tok.decode(tok.encode(text)) == text


def test_without_a_tokenizer_config_the_bos_comes_from_the_post_processor_and_there_is_no_eos(tmp_path):
    llama_style_tokenizer_folder(tmp_path / "saved")
    (tmp_path / "bare").mkdir()
    shutil.copy(tmp_path / "saved" / "tokenizer.json", tmp_path / "bare")
    tok = build_tokenizer("hf", str(tmp_path / "bare" / "tokenizer.json"))
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.prompt_bos) == (1, None, None, True)
    assert tok.encode("stop", bos=True, eos=True)[0] == 1 and None not in tok.encode("stop", bos=True, eos=True)
    (tmp_path / "bare" / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False}))
    assert not build_tokenizer("hf", str(tmp_path / "bare" / "tokenizer.json")).prompt_bos  # the config says no


def test_the_command_line_offers_every_tokenizer_kind():
    from koba_ros.commands.lm import TOKENIZER_KINDS
    from koba_ros.nlp.tokenizer import KINDS

    assert TOKENIZER_KINDS == KINDS


def test_a_missing_or_broken_tokenizer_json_is_one_line(tmp_path):
    with pytest.raises(KobaError, match="not found"):
        build_tokenizer("hf", str(tmp_path / "tokenizer.json"))
    with pytest.raises(KobaError, match="needs vocab"):
        build_tokenizer("hf", "")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(KobaError, match="cannot read"):
        build_tokenizer("hf", str(tmp_path / "tokenizer.json"))
    with pytest.raises(KobaError, match="byte, gpt2, bpe, hf"):
        build_tokenizer("sentencepiece")


def pretrained_llama_folder(folder, byte_level=False):
    """A small random LlamaForCausalLM saved with a Llama-style tokenizer, as a downloaded model folder looks."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = llama_style_tokenizer_folder(folder, byte_level=byte_level)
    bos, eos = (0, 1) if byte_level else (1, 2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         rms_norm_eps=1e-5, bos_token_id=bos, eos_token_id=eos))
    model.save_pretrained(folder)
    return model.eval()


def transformers_continuation(folder, prompt: str, tokens: int) -> str:
    """The prompt and its greedy continuation as transformers makes and decodes them, as one text. (Its
    text-generation pipeline decodes the continuation apart from the prompt, which glues "put the" and "mug" into
    "put themug" with this kind of tokenizer; `koba lm sample` reads the continuation after the prompt.)"""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        ids = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(ids[0], skip_special_tokens=True)


@pytest.mark.parametrize("byte_level", [False, True], ids=["sentencepiece_style", "llama3_style"])
def test_a_llama_with_its_own_tokenizer_imports_samples_trains_and_exports(tmp_path, capsys, byte_level):
    source = tmp_path / "pretrained"
    pretrained_llama_folder(source, byte_level)
    assert main(["lm", "import", "--hf", str(source), "--out", str(tmp_path / "imported"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokenizer"] == "hf"  # found in the folder, no --tokenizer needed
    theirs = transformers_continuation(source, "put the red", 12)
    shutil.rmtree(source)  # the checkpoint carries its own copy of the tokenizer
    ours = sample(tmp_path / "imported", "put the red", max_new_tokens=12, temperature=0.0, top_k=0)
    assert ours["new_tokens"] > 0 and "put the red" + ours["text"] == theirs  # the first new word's space too

    (tmp_path / "train.txt").write_text("\n".join(COMMANDS))
    train(TrainConfig.from_dict(dict(init_from=str(tmp_path / "imported"), train_data=str(tmp_path / "train.txt"),
                                     seq_len=32, batch_size=4, steps=30, lr=3e-3, eval_every=30, ckpt_every=30,
                                     out=str(tmp_path / "tuned"), progress=False)))
    _, _, meta = load_checkpoint(tmp_path / "tuned" / "checkpoint")
    assert meta["config"]["tokenizer"] == "hf" and (tmp_path / "tuned" / "checkpoint" / "tokenizer.json").is_file()
    shutil.move(tmp_path / "imported", tmp_path / "moved")  # every checkpoint of the run carries the tokenizer too
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "tuned"), "--out", str(tmp_path / "hf"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokenizer"] == "hf"
    tuned = sample(tmp_path / "tuned", "put the", max_new_tokens=20, temperature=0.0, top_k=0)
    exported = transformers_continuation(tmp_path / "hf", "put the", 20)
    assert "put the" + tuned["text"] == exported and tuned["text"].startswith(" ")  # not "put themug"


def test_import_with_tokenizer_hf_and_no_vocab_takes_the_folders_tokenizer(tmp_path, capsys):
    pretrained_llama_folder(tmp_path / "pretrained")
    assert main(["lm", "import", "--hf", str(tmp_path / "pretrained"), "--out", str(tmp_path / "in"),
                 "--tokenizer", "hf", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokenizer"] == "hf" and (tmp_path / "in" / "tokenizer.json").is_file()


def test_import_without_a_tokenizer_json_still_asks_which_tokenizer(tmp_path, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, rms_norm_eps=1e-5)).save_pretrained(tmp_path / "bare")
    assert main(["lm", "import", "--hf", str(tmp_path / "bare"), "--out", str(tmp_path / "out")]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_eval_and_token_files_start_each_document_with_bos_as_the_tokenizer_does(tmp_path, capsys):
    """A Llama's tokenizer starts every text with <s>: `koba lm eval` then scores a text as transformers' own loss
    does (input and labels from the tokenizer, bos included), and `koba lm prepare` writes the stream that training
    reads from text, bos before each document."""
    from transformers import AutoTokenizer

    from koba_ros.nlp.data import encode_documents, load_documents
    from koba_ros.nlp.evaluation import evaluate_checkpoint
    from koba_ros.nlp.prepared import open_tokens, prepare

    hf = pretrained_llama_folder(tmp_path / "pretrained")
    assert main(["lm", "import", "--hf", str(tmp_path / "pretrained"), "--out", str(tmp_path / "imported")]) == 0
    text = "put the brown fluffy toy in the top right box and open the gripper"
    (tmp_path / "one.txt").write_text(text)
    ids = AutoTokenizer.from_pretrained(tmp_path / "pretrained")(text, return_tensors="pt").input_ids
    assert ids[0, 0] == 1  # transformers starts it with <s>
    with torch.no_grad():
        theirs = float(hf(input_ids=ids, labels=ids).loss)
    for per_document in (False, True):
        ours = evaluate_checkpoint(tmp_path / "imported", str(tmp_path / "one.txt"), per_document=per_document)
        assert ours["scored_tokens"] == ids.shape[1] - 1 and abs(ours["loss"] - theirs) < 1e-5, per_document

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, line in enumerate(COMMANDS[:5]):
        (docs / f"{i}.txt").write_text(line)
    tokenizer = build_tokenizer("hf", str(tmp_path / "imported" / "tokenizer.json"))
    prepare(str(docs), tokenizer, {"tokenizer": "hf", "vocab": str(tmp_path / "imported" / "tokenizer.json")},
            tmp_path / "docs.bin")
    written, _ = open_tokens(tmp_path / "docs.bin", "hf", tokenizer)
    expected = encode_documents(load_documents(str(docs)), tokenizer, separate=True)
    assert written.tolist() == expected and expected.count(1) == 5 and expected[0] == 1

    # One file of many lines, read in pieces of 64 characters: a Metaspace tokenizer would start each piece with a
    # word-start mark that the whole text does not have, so such a tokenizer's documents are encoded whole.
    assert not tokenizer.piece_safe
    (tmp_path / "long.txt").write_text("\n".join(COMMANDS[:40]))
    prepare(str(tmp_path / "long.txt"), tokenizer, {"tokenizer": "hf", "vocab": str(tmp_path / "imported" /
                                                                                     "tokenizer.json")},
            tmp_path / "long.bin", chunk_bytes=64)
    written, _ = open_tokens(tmp_path / "long.bin", "hf", tokenizer)
    assert written.tolist() == encode_documents(load_documents(str(tmp_path / "long.txt")), tokenizer, False)

    # Another tokenizer.json of the same size (as Llama 2's and Mistral's 32000 ids) may not read the file.
    other = tmp_path / "other"
    llama_style_tokenizer_folder(other)
    data = json.loads((other / "tokenizer.json").read_text())
    first, second = list(data["model"]["vocab"])[10:12]
    data["model"]["vocab"][first], data["model"]["vocab"][second] = (data["model"]["vocab"][second],
                                                                     data["model"]["vocab"][first])
    (other / "tokenizer.json").write_text(json.dumps(data))
    swapped = build_tokenizer("hf", str(other / "tokenizer.json"))
    assert swapped.vocab_size == tokenizer.vocab_size
    with pytest.raises(KobaError, match="another tokenizer.json of the same size"):
        open_tokens(tmp_path / "long.bin", "hf", swapped)
