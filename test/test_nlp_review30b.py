"""Session 30: generation_config.json's lists of eos ids (docs/nlp.md, "Session 30: generation_config's lists of
eos ids"). An instruct model lists several ids in eos_token_id (Llama-3-Instruct: end of text, of message, of turn)
and transformers' generate() stops at any of them: the hf tokenizer knows them all, `sample` stops at each, a
checkpoint records them, export writes them back, and the one eos that packs training's documents and the digest
stay as they were."""
import json

import pytest
import torch

from koba_ros.nlp import hf_gpt2
from koba_ros.nlp.checkpoint import hf_tokenizer_files
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.sampling import generate, sample
from koba_ros.nlp.tokenizer import MODEL_EOS_FILES, RECORDED_EOS_IDS, build_tokenizer, bytes_digest
from koba_ros.nlp.trained import load_trained
from koba_ros.nlp.trainer import train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_review29c import byte_bpe_tokenizer, gpt2
from test.test_nlp_train import tiny

SPECIALS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")  # ids 256, 257, 258, as Llama 3.1's 128001, 128008, 128009
LISTED = [256, 257, 258]


def instruct_model(folder, tokenizer_config: dict, listed=LISTED):
    """A hub-style folder of a tiny GPT-2 whose every next token is <|eom_id|> (257), with `tokenizer_config` and
    generation_config.json's eos_token_id `listed`."""
    byte_bpe_tokenizer(folder, specials=SPECIALS)
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    hf = gpt2(259)
    with torch.no_grad():
        hf.transformer.ln_f.weight.zero_()
        hf.transformer.ln_f.bias.copy_(hf.transformer.wte.weight[257] * 50)
    hf.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": listed}))
    return folder


def test_an_hf_tokenizer_knows_every_eos_id_its_models_files_list_and_keeps_its_one_eos_and_digest(tmp_path):
    byte_bpe_tokenizer(tmp_path, specials=SPECIALS)
    path = tmp_path / "tokenizer.json"
    assert build_tokenizer("hf", str(path)).stop_ids == ()  # no eos at all: nothing stops a sample
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 256}))
    single = build_tokenizer("hf", str(path))
    assert (single.eos_id, single.stop_ids) == (256, (256,))
    specials = json.dumps({"eos": 256, "bos": 256, "prompt_bos": False}, sort_keys=True).encode()
    assert single.digest == bytes_digest(path.read_bytes(), specials)  # session 29's digest, unchanged
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": LISTED}))
    listed = build_tokenizer("hf", str(path))
    assert listed.stop_ids == (256, 257, 258)  # was its eos alone
    assert (listed.eos_id, listed.digest) == (256, single.digest)  # the eos that packs documents, and the digest
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|eot_id|>"}))  # Llama 3.1's own
    assert build_tokenizer("hf", str(path)).stop_ids == (256, 257, 258)  # the list's order, its eos 258 in it
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [256, 257]}))
    assert build_tokenizer("hf", str(path)).stop_ids == (258, 256, 257)  # the named eos first where the list lacks it
    # Ids that are no token of the tokenizer are passed over, and a file listing none gives way to config.json: a
    # negative id was an OverflowError traceback from the `tokenizers` package.
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [-1, 999, None, True, 2 ** 40]}))
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": [257, 256, 257]}))
    tok = build_tokenizer("hf", str(path))
    assert (tok.eos_id, tok.stop_ids) == (257, (257, 256))


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_stops_at_any_of_several_ids_with_and_without_the_cache_and_past_the_window(use_cache):
    torch.manual_seed(1)
    model = TransformerLM(TransformerConfig(d_model=32, n_layers=2, n_heads=2, max_len=8, vocab_size=300))
    prompt = [104, 105, 32, 110, 111, 112]
    greedy = generate(model, prompt, 14, temperature=0, use_cache=use_cache)
    assert greedy[4:6] == [287, 50] and 287 not in greedy[:4]  # drawn after the window slid past max_len 8
    assert generate(model, prompt, 14, temperature=0, stop_id=(299, 287, 50), use_cache=use_cache) == greedy[:4]
    assert generate(model, prompt, 14, temperature=0, stop_id=[50], use_cache=use_cache) == greedy[:5]
    assert generate(model, prompt, 14, temperature=0, stop_id=287, use_cache=use_cache) == greedy[:4]  # one id
    drawn = generate(model, prompt, 14, temperature=1.0, stop_id=set(range(300)) - {greedy[0]}, use_cache=use_cache,
                     generator=torch.Generator().manual_seed(0))
    assert len(drawn) < 14  # a draw at temperature 1 stops too


def test_an_imported_instruct_model_stops_at_each_listed_eos_and_import_export_keeps_the_list(tmp_path):
    from transformers import AutoModelForCausalLM

    source = instruct_model(tmp_path / "hub", {"eos_token": "<|eot_id|>"})
    hf_gpt2.import_pretrained(str(source), tmp_path / "in")
    tok = load_trained(tmp_path / "in").tokenizer
    assert (tok.eos_id, tok.stop_ids) == (258, (256, 257, 258))
    assert not any((tmp_path / "in" / name).exists() for name in MODEL_EOS_FILES)  # recorded, not carried
    assert json.loads((tmp_path / "in" / "tokenizer_config.json").read_text()) == \
        {"eos_token": "<|eot_id|>", RECORDED_EOS_IDS: LISTED}
    for use_cache in (True, False):  # was 5 tokens of <|eom_id|>: only <|eot_id|> stopped it
        result = sample(tmp_path / "in", "hello", max_new_tokens=5, temperature=0, use_cache=use_cache)
        assert result["new_tokens"] == 0 and result["stopped_at_end_of_text"]
    recorded = json.loads((tmp_path / "in" / "state.json").read_text())["tokenizer_digest"]
    assert recorded == tok.digest == build_tokenizer("hf", str(source / "tokenizer.json")).digest
    assert hf_gpt2.export_checkpoint(tmp_path / "in", tmp_path / "out")["eos_token_id"] == LISTED  # was 258
    for name in MODEL_EOS_FILES:
        assert json.loads((tmp_path / "out" / name).read_text())["eos_token_id"] == LISTED
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text()) == {"eos_token": "<|eot_id|>"}
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    ids = exported.generate(torch.tensor([[104, 105]]), max_new_tokens=5, do_sample=False)
    assert ids[0, 2:].tolist() == [257]  # transformers' generate() stops where `sample` stops
    hf_gpt2.import_pretrained(str(tmp_path / "out"), tmp_path / "again")  # the round trip keeps the list
    assert load_trained(tmp_path / "again").tokenizer.stop_ids == (256, 257, 258)
    assert hf_gpt2.export_checkpoint(tmp_path / "again", tmp_path / "out2")["eos_token_id"] == LISTED
    # A checkpoint imported before the record stops at its eos alone, as it did, and keeps its digest.
    (tmp_path / "in" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|eot_id|>"}))
    tok = load_trained(tmp_path / "in").tokenizer
    assert (tok.stop_ids, tok.digest) == ((258,), recorded)
    assert sample(tmp_path / "in", "hello", max_new_tokens=5, temperature=0)["new_tokens"] == 5


def test_a_pad_or_bos_that_is_a_listed_eos_stops_the_sample_rather_than_being_banned(tmp_path):
    source = instruct_model(tmp_path / "hub", {"pad_token": "<|eom_id|>"}, listed=[256, 257])
    hf_gpt2.import_pretrained(str(source), tmp_path / "in")
    tok = load_trained(tmp_path / "in").tokenizer
    assert (tok.eos_id, tok.pad_id, tok.stop_ids) == (256, 257, (256, 257))
    # eos 256 taken from the model's files, recorded with the list (a checkpoint has no generation_config.json)
    assert json.loads((tmp_path / "in" / "tokenizer_config.json").read_text()) == \
        {"pad_token": "<|eom_id|>", "eos_token": "<|end_of_text|>", RECORDED_EOS_IDS: [256, 257]}
    assert sample(tmp_path / "in", "hello", max_new_tokens=5, temperature=0)["new_tokens"] == 0


def test_a_fine_tune_of_an_import_records_the_list_in_its_own_checkpoint(tmp_path):
    source = instruct_model(tmp_path / "hub", {"eos_token": "<|eot_id|>"})
    hf_gpt2.import_pretrained(str(source), tmp_path / "in")
    # the import's copy is copied as it is: it records the list already, and has no model files beside it
    assert hf_tokenizer_files(tmp_path / "in" / "tokenizer.json")["tokenizer_config.json"] == \
        tmp_path / "in" / "tokenizer_config.json"
    model = dict(d_model=16, n_layers=1, n_heads=2, max_len=16, vocab_size=259, pad_id=0)
    train(tiny(tmp_path, tokenizer="hf", vocab=str(tmp_path / "in" / "tokenizer.json"), seq_len=8, steps=1,
               eval_every=1, ckpt_every=1, model=model))
    trained = load_trained(tmp_path / "run")
    assert (trained.tokenizer.eos_id, trained.tokenizer.stop_ids) == (258, (256, 257, 258))
    assert json.loads((tmp_path / "run" / "checkpoint" / "tokenizer_config.json").read_text())[RECORDED_EOS_IDS] == \
        LISTED
    assert json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["tokenizer_digest"] == \
        trained.tokenizer.digest
