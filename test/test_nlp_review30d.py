"""Session 30: a first user's walkthrough of docs/nlp.md. `koba lm export` of a model no family fits names the fields
to change, `koba lm repro` records the size that ran, an exported run comes back with its training seq_len, the
`--per-document` notice suggests what works, `koba lm expand` and `gqa` say how to train on, and a bpe tokenizer
without files says which it needs. Each test fails on the code before the fix."""
import json
from pathlib import Path

import pytest
import yaml

import koba_ros.nlp.repro.phsic as phsic
from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp.evaluation import evaluate_checkpoint
from koba_ros.nlp.hf_gpt2 import import_pretrained
from koba_ros.nlp.repro import run_repro
from koba_ros.nlp.tokenizer import build_tokenizer
from koba_ros.nlp.trainer import TrainConfig, train
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)
from test.test_nlp_train import TEXT

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(steps=2, eval_every=2, ckpt_every=2, eval_batches=1, tensorboard=False, progress=False)


def run(tmp_path, name, model, **overrides) -> Path:
    """A 2-step byte-level run of `model` on TEXT."""
    (tmp_path / "train.txt").write_text(TEXT)
    config = dict(model={"d_model": 16, "n_layers": 1, "n_heads": 2, **model}, train_data=str(tmp_path / "train.txt"),
                  seq_len=32, batch_size=2, lr=3e-3, warmup=1, out=str(tmp_path / name), **QUICK)
    train(TrainConfig.from_dict({**config, **overrides}))
    return tmp_path / name


def test_export_of_a_model_no_family_fits_names_the_fields_that_differ_from_the_nearest_in_one_line(tmp_path, capsys):
    """gpt2_small.yaml's shape (bias: false) printed every field of four shapes (1,403 characters, in set order)."""
    shape = {key: value for key, value in yaml.safe_load((ROOT / "config/lm/gpt2_small.yaml").read_text())["model"]
             .items() if key in ("norm", "positions", "tie_embeddings", "bias")}
    source = run(tmp_path, "run", dict(shape, max_len=32))
    assert main(["lm", "export", "--checkpoint", str(source), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err == ("koba lm: error: export: this model is neither GPT-2-shaped, Llama-shaped, GPT-NeoX-shaped nor "
                   "Phi-shaped; the nearest, GPT-2, needs bias True (this model: False)\n")
    assert not (tmp_path / "hf").exists()
    assert "model.bias: true" in (ROOT / "config/lm/gpt2_small.yaml").read_text()  # the config says how to export it


def fake_seed(settings, seed):
    return {"auc": {"phsic": 0.5, "neural_pmi": 0.5, "cosine": 0.5}, "settings": settings}


def test_repro_quick_and_size_are_exclusive_and_the_json_records_the_size_that_ran(tmp_path, monkeypatch, capsys):
    """--quick --size full ran the full size recorded as quick: true; --size quick alone recorded quick: false."""
    monkeypatch.setattr(phsic, "one_seed", fake_seed)
    monkeypatch.setattr(phsic, "save_plot", lambda path, *args, **kwargs: str(path))
    with pytest.raises(SystemExit):
        main(["lm", "repro", "phsic", "--quick", "--size", "full", "--out", str(tmp_path)])
    assert "not allowed with argument --quick" in capsys.readouterr().err
    with pytest.raises(KobaError, match="--quick and --size full contradict each other"):
        run_repro("phsic", quick=True, device="cpu", out=str(tmp_path), size="full")
    assert not (tmp_path / "phsic.json").exists()
    for argv, size, quick in ((["--size", "quick"], "quick", True), (["--quick"], "quick", True),
                              (["--size", "full"], "full", False), (["--size", "test"], "test", True)):
        assert main(["lm", "repro", "phsic", *argv, "--json", "--out", str(tmp_path)]) == 0
        result = json.loads(capsys.readouterr().out)
        assert (result["size"], result["quick"]) == (size, quick)
        assert result["settings"] == phsic.SIZES[size]
    # wso's test size is smaller than its quick one (1 seed, not 3): it is not recorded as the quick size
    import koba_ros.nlp.repro.wso as wso

    monkeypatch.setattr(wso, "run", lambda quick, device, out, seed=0, size=None: {"size": size})
    assert run_repro("wso", quick=True, device="cpu", out=str(tmp_path), size="test")["quick"] is False


@pytest.mark.parametrize("model", [dict(), dict(positions="rope", norm_type="rmsnorm", ffn="swiglu", bias=False)],
                         ids=["gpt2", "llama"])
def test_an_exported_run_imports_with_its_training_seq_len_so_eval_gives_the_same_loss(tmp_path, capsys, model):
    """The import's eval window was max_len (128), not the run's seq_len 64: 5.4375 against 5.4233 for tiny.yaml."""
    source = run(tmp_path, "run", dict(model, max_len=128), seq_len=64)
    hf = tmp_path / "hf"
    assert main(["lm", "export", "--checkpoint", str(source), "--out", str(hf), "--json"]) == 0
    assert main(["lm", "import", "--hf", str(hf), "--out", str(tmp_path / "back"), "--json"]) == 0
    capsys.readouterr()
    data = tmp_path / "eval.txt"
    data.write_text("move the red cube to the top left box. " * 12)  # 468 bytes: windows of 64 and 128 differ
    before, after = (evaluate_checkpoint(folder, str(data)) for folder in (source, tmp_path / "back"))
    assert before["seq_len"] == after["seq_len"] == 64
    assert after["loss"] == pytest.approx(before["loss"], abs=1e-5)
    # an HF model from elsewhere (no key) keeps the whole context; a damaged value is refused in one line
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "koba_seq_len": "64"}))
    with pytest.raises(KobaError, match="koba_seq_len '64', not a whole number from 1"):
        import_pretrained(str(hf), tmp_path / "bad")
    del config["koba_seq_len"]
    (hf / "config.json").write_text(json.dumps(config))
    import_pretrained(str(hf), tmp_path / "foreign")
    assert json.loads((tmp_path / "foreign" / "state.json").read_text())["config"]["seq_len"] == 128


def test_the_per_document_notice_on_training_data_suggests_what_works(tmp_path):
    """It suggested --split val, which --per-document refuses."""
    source = run(tmp_path, "run", dict(max_len=32))
    data = str(tmp_path / "train.txt")
    notice = evaluate_checkpoint(source, data, per_document=True)["notice"]
    assert "drop --per-document: --split val (the default) scores only its held-out part" in notice
    with pytest.raises(KobaError, match="give one"):  # what the old notice led to
        evaluate_checkpoint(source, data, per_document=True, split="val")
    assert "notice" not in evaluate_checkpoint(source, data, split="val")  # what the notice says now
    assert evaluate_checkpoint(source, data, split="all")["notice"].endswith("--split val scores only its held-out "
                                                                             "part")


def test_the_hint_after_expand_and_gqa_trains_on_and_the_layers_help_names_sandwich_norms(tmp_path, capsys):
    """The hint said only --set init_from=DIR, which the config that trained the source makes fail."""
    model = dict(d_model=16, n_layers=1, n_heads=4, n_kv_heads=4, max_len=32)  # the source's config names them all
    source = run(tmp_path, "run", model)
    for argv in (["expand", "--width-factor", "2"], ["gqa", "--kv-heads", "2"]):
        out = tmp_path / argv[0]
        assert main(["lm", *argv, "--checkpoint", str(source), "--out", str(out)]) == 0
        assert capsys.readouterr().out.rstrip().endswith(
            f"with a config without a model: section (it takes the folder's model) and --set init_from={out}")
        config = dict(train_data=str(tmp_path / "train.txt"), seq_len=32, batch_size=2, lr=1e-3, warmup=1, **QUICK,
                      out=str(tmp_path / f"on_{argv[0]}"), init_from=str(out))
        train(TrainConfig.from_dict(config))  # as the hint says: no model: section
        with pytest.raises(KobaError, match="leave it out of the config"):  # the source's own config
            TrainConfig.from_dict({**config, "model": model})
    with pytest.raises(SystemExit):
        main(["lm", "expand", "--help"])
    assert "Pre-LN and sandwich norms only" in " ".join(capsys.readouterr().out.split())


def test_a_bpe_tokenizer_without_files_says_it_needs_vocab_and_merges():
    """`koba lm prepare --tokenizer bpe` without --vocab said 'tokenizer:  not found (GPT-2 BPE needs ...)'."""
    with pytest.raises(KobaError) as refused:
        build_tokenizer("bpe", "", "")
    assert str(refused.value) == ("tokenizer: bpe needs a vocab.json and a merges.txt (vocab: and merges: in a "
                                  "config, --vocab and --merges on the command line)")
    with pytest.raises(KobaError, match=r"tokenizer: nowhere.json not found \(bpe needs a vocab.json and a "):
        build_tokenizer("bpe", "nowhere.json", "nowhere.txt")
