"""Session 29's review of the data methods (part 2): labelled-file reading, `koba lm tickets` / `classify`, the
CPU-only reproductions, contextual augmentation, instance-based learning and PHSIC. Each test up to the two property
tests at the end fails on the code before the fix."""
import random

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from koba_ros.nlp import contextual_augmentation
from koba_ros.nlp.contextual_augmentation import MASK, AugmenterConfig, augment, fit_augmenter, words_of
from koba_ros.nlp.influence_report import read_labelled, read_lines
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

TEXTS = ["put the duck in the box", "move the cup to the box", "the red duck", "the blue cup"]


@pytest.fixture(scope="module")
def augmenter():
    return fit_augmenter(TEXTS, [0, 1, 0, 1], 2, AugmenterConfig(steps=30, d_model=16, n_layers=1, n_heads=2), seed=0)


def test_a_hash_label_with_a_tab_is_a_labelled_line_and_skipped_comments_are_counted(tmp_path, capsys):
    path = tmp_path / "train.tsv"
    path.write_text("# a comment\n#sports\tthe match ended in a draw\n#sports\ta late goal won it\n"
                    "politics\tthe vote was delayed\n")
    assert [(n, label) for n, label, _ in read_labelled(path)] == [(2, "#sports"), (3, "#sports"), (4, "politics")]
    assert "skipped 1 comment line(s)" in capsys.readouterr().err
    path.write_text("a\tthe duck\nb\tthe cup\n")
    read_labelled(path)
    assert capsys.readouterr().err == ""  # no note when nothing was skipped
    path.write_text("# only a comment\n")
    with pytest.raises(KobaError, match=r"no labelled lines \(skipped 1 comment line\(s\)"):
        read_labelled(path)  # one line, the count in the error


def test_lines_end_only_at_newlines_not_at_unicode_separators(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("a\tthe red duck\r\na\ta yellow\u2028duck\rb\tthe blue\x0ccup\nb\ta green\x85cup\x1c\x1d\x1ebox\n"
                     "c\tlast line, no newline".encode())
    assert [(n, label, text) for n, label, text in read_labelled(path)] == [
        (1, "a", "the red duck"), (2, "a", "a yellow\u2028duck"), (3, "b", "the blue\x0ccup"),
        (4, "b", "a green\x85cup\x1c\x1d\x1ebox"), (5, "c", "last line, no newline")]
    for text, lines in [("", []), ("\n", [""]), ("x\n\ny", ["x", "", "y"]), ("x\r\n", ["x"])]:
        path.write_text(text, newline="")
        assert read_lines(path) == lines  # the final newline ends a line, as splitlines said


def test_tickets_checks_its_out_folder_before_training(tmp_path, capsys, monkeypatch):
    from koba_ros.nlp import ticket_ensemble

    def no_training(*args, **kwargs):
        raise AssertionError("trained before --out was checked")

    monkeypatch.setattr(ticket_ensemble, "pretrain_masked_lm", no_training)
    train = tmp_path / "train.tsv"
    train.write_text("a\tthe red duck\nb\tthe blue cup\n")
    (tmp_path / "afile").write_text("a file, not a folder\n")
    assert main(["lm", "tickets", "--train", str(train), "--out", str(tmp_path / "afile" / "ens")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot create the output folder" in err and "\n" not in err


@pytest.mark.parametrize("name", ["instance", "phsic", "augment", "tickets", "turnover"])
def test_a_cpu_only_repro_refuses_cuda_instead_of_recording_a_gpu_it_never_used(tmp_path, monkeypatch, name):
    import importlib

    from koba_ros.nlp.repro import run_repro

    module = importlib.import_module(f"koba_ros.nlp.repro.{name}")
    monkeypatch.setattr(module, "run", lambda **kwargs: {"ran_on": kwargs["device"]})
    with pytest.raises(KobaError, match=f"repro {name} trains its models on the CPU only; use --device cpu"):
        run_repro(name, quick=True, device="cuda", out=str(tmp_path / "cuda"))
    assert not (tmp_path / "cuda").exists()
    assert run_repro(name, quick=True, device="cpu", out=str(tmp_path / "cpu"))["device"] == "cpu"


def test_augmenter_labels_must_be_class_indices(augmenter):
    for label in (2, -1):
        with pytest.raises(ValueError, match=rf"label {label} is outside 0\.\.1 \(2 classes\)"):
            augmenter.encode([["the", "duck"]], [label])
        rng = random.Random(0)
        with pytest.raises(ValueError, match="outside 0..1"):
            augment(augmenter, "the red duck", label, rng, p=1.0)
        assert rng.random() == random.Random(0).random()  # refused before a draw
    tiny = AugmenterConfig(steps=2, d_model=16, n_layers=1, n_heads=2)
    for labels in ([0, 1, 5, 1], [0, 1, -1, 1]):
        with pytest.raises(ValueError, match="outside 0..1"):
            fit_augmenter(TEXTS, labels, 2, tiny)


def test_every_classifier_needs_one_label_per_text():
    from koba_ros.nlp.instance_based import InstanceConfig, fit_instance_based, fit_softmax
    from koba_ros.nlp.text_classifier import ClassifierConfig, encode_texts, fit_classifier

    config = InstanceConfig(buckets=256, embed=8, hidden=8, epochs=1, batch=2, memory=4)
    x = encode_texts(["the duck", "a rubber duck", "the red block", "red cube"], config.buckets)
    fits = [lambda y: fit_instance_based(x, y, 2, config), lambda y: fit_softmax(x, y, 2, config),
            lambda y: fit_classifier(x, y, 2, ClassifierConfig(buckets=256, embed=8, hidden=8, epochs=1))]
    for fit in fits:
        for labels in ([1, 0, 0, 1, 1], [1, 0, 0]):  # more: ignored silently; fewer: an IndexError in some batch
            with pytest.raises(ValueError, match=f"{len(labels)} labels for 4 texts"):
                fit(torch.tensor(labels))
        with pytest.raises(ValueError, match=r"label 2 is outside 0\.\.1 \(2 classes\)"):  # was a raw torch error
            fit(torch.tensor([0, 1, 2, 1]))


def test_classify_names_a_sentence_longer_than_any_the_ensemble_was_built_from(tmp_path, capsys):
    train = tmp_path / "train.tsv"
    train.write_text("a\tthe red duck\nb\tthe blue cup\n")
    out = tmp_path / "ens"
    assert main(["lm", "tickets", "--train", str(train), "--out", str(out), "--members", "1", "--epochs", "1",
                 "--pretrain-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["lm", "classify", "--model", str(out), "the red duck cup"]) == 2
    err = capsys.readouterr().err.strip()
    assert ("'the red duck cup': a sentence needs 1 to 3 words, not 4: more than any sentence the encoder was "
            "pretrained on (its positions are learned") in err
    assert "--unlabelled" in err and "\n" not in err
    assert main(["lm", "classify", "--model", str(out), "!!"]) == 2
    assert "'!!': a sentence needs 1 to 3 words, not 0" in capsys.readouterr().err


def test_augment_names_an_unknown_word_and_needs_a_finite_positive_temperature(augmenter):
    rng = random.Random(0)
    with pytest.raises(ValueError, match="not in the augmenter's vocabulary: 'giraffe'"):
        augment(augmenter, "put the giraffe in the box", 0, rng, p=1.0)
    with pytest.raises(ValueError, match="'giraffe'"):
        augment(augmenter, "put the giraffe in the box", 0, rng, p=0.0)  # even when nothing would be replaced
    for temperature in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number above 0"):
            augment(augmenter, "the red duck", 0, rng, p=1.0, temperature=temperature)
    assert rng.random() == random.Random(0).random()  # every refusal came before a draw


def test_phsic_scores_only_pairs_of_the_fitted_widths_and_fits_only_finite_features():
    from koba_ros.nlp.phsic import PointwiseHSIC

    g = torch.Generator().manual_seed(0)
    phi, psi = torch.randn(50, 6, generator=g), torch.randn(50, 4, generator=g)
    model = PointwiseHSIC(phi, psi)
    assert model(phi[:3], psi[:3]).shape == (3,)
    for x, y in [(torch.randn(1, 6), torch.randn(5, 4)), (torch.randn(5, 6), torch.randn(1, 4)),
                 (torch.randn(3, 6), torch.randn(5, 4)), (torch.randn(3, 5), torch.randn(3, 4)),
                 (torch.randn(3, 6), torch.randn(3, 5)), (torch.randn(6), torch.randn(4))]:
        with pytest.raises(ValueError, match=r"need paired features \[m, 6\] and \[m, 4\]"):
            model(x, y)
    for bad in (float("nan"), float("inf")):
        broken = phi.clone()
        broken[3, 2] = bad
        with pytest.raises(ValueError, match="must be finite"):
            PointwiseHSIC(broken, psi)
        with pytest.raises(ValueError, match="must be finite"):
            PointwiseHSIC(phi, psi.masked_fill(psi > 2, bad))


# two properties nothing tested before (they held already)

@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_augment_draws_from_p_to_the_power_one_over_t_renormalised(augmenter, monkeypatch, temperature):
    """Dividing the logits by T samples from p^(1/T) / Z; multiplying would give p^T / Z."""
    drawn_from = []
    real = torch.multinomial

    def spy(probs, *args, **kwargs):
        drawn_from.append(probs.clone())
        return real(probs, *args, **kwargs)

    monkeypatch.setattr(contextual_augmentation.torch, "multinomial", spy)
    text, label = "put the duck in the box", 0
    augment(augmenter, text, label, random.Random(0), p=1.0, temperature=temperature)
    words = words_of(text)
    ids = augmenter.encode([words] * len(words), [label] * len(words))
    rows = torch.arange(len(words))
    ids[rows, rows + 1] = MASK
    with torch.no_grad():
        p = torch.softmax(augmenter(ids)[rows, rows + 1], -1)  # the LM's own distribution at T = 1
    expected = p ** (1 / temperature)
    expected = expected / expected.sum(-1, keepdim=True)
    assert len(drawn_from) == 1
    assert torch.allclose(drawn_from[0], expected, atol=1e-6)
    assert not torch.allclose(expected, p, atol=1e-3)  # T matters here: the check is not vacuous


def test_augment_with_p_between_0_and_1_leaves_the_unchosen_words_as_they_were(augmenter):
    text = "put the duck in the box"
    words, changed = words_of(text), 0
    for seed in range(20):
        replay = random.Random(seed)
        chosen = {i for i in range(len(words)) if replay.random() < 0.4}  # augment's own draws, in its order
        new = augment(augmenter, text, 0, random.Random(seed), p=0.4).split()
        assert len(new) == len(words)
        assert all(new[i] == words[i] for i in range(len(words)) if i not in chosen)
        changed += sum(new[i] != words[i] for i in chosen)
    assert changed > 0  # some chosen words were replaced: the draws are live
