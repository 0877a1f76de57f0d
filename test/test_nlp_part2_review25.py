"""Session 25 review of the NLP library's part 2 (influence, turn-over dropout, ticket ensembles, contextual
augmentation): text in any script, byte-order marks, memory that does not grow with the longest line or the number
of targets, seeds beyond torch's range, refused options and bad folders found before the work."""
import json
import random
import re
import string
import subprocess
import sys

import pytest
import torch

from koba_ros.cli import main
from koba_ros.errors import KobaError
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

TINY = ["--epochs", "30", "--embed", "32", "--hidden", "64"]
JAPANESE = {"pos": ["とても良い", "最高の体験", "素晴らしい映画だった", "面白かった"],
            "neg": ["つまらない映画", "ひどい演技", "二度と見ない", "退屈した"]}


def write(path, text, bom=False):
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return str(path)


def test_words_of_any_script_and_the_same_words_as_before_in_ascii():
    from koba_ros.nlp.text_classifier import ngram_ids, words

    # ASCII text: exactly the [a-z0-9']+ runs of the lower-cased text, as before (apostrophes, underscores, digits)
    rng = random.Random(0)
    alphabet = string.printable + "'''___"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert words(text) == re.findall(r"[a-z0-9']+", text.lower()), text
    # other scripts: their own words (before: none, so every such line was one shared "<empty>" n-gram)
    sentences = ["素晴らしい映画だった", "つまらない映画", "Отличный фильм", "ужасный фильм", "Ελληνικά κείμενα"]
    assert len({tuple(ngram_ids(s, 1 << 14)) for s in sentences}) == len(sentences)
    assert words("Отличный фильм") == ["отличный", "фильм"]
    assert words("naïve café") == ["naïve", "café"]                      # before: na, ve, caf
    assert words("nai\u0308ve") == ["naïve"]                              # decomposed: the same word
    assert words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]                          # vowel signs are marks, kept in the word
    assert words("映画だ") == ["映", "画", "だ"]                            # unspaced: character (bi)grams
    assert words("abc漢字 don’t") == ["abc", "漢", "字", "don't"]
    assert words("the Cup") == words("the cup ü")[:2]                     # ASCII words hash alike in any line


def test_a_japanese_labelled_set_is_learned_and_wordless_lines_are_kept_with_a_note(tmp_path, capsys):
    lines = [(label, text) for label, texts in JAPANESE.items() for text in texts] * 3
    train = write(tmp_path / "ja.tsv", "".join(f"{label}\t{text}\n" for label, text in lines))
    assert main(["lm", "influence", "--train", train, "--out", str(tmp_path / "out"), *TINY, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train_accuracy"] == 1.0  # before: 0.5, one feature for all
    # emoji or punctuation alone share one feature, as before; a first version refused the whole run for one line
    wordless = write(tmp_path / "wordless.tsv", "pos\tthe cup\nneg\t!!! ...\npos\tthe mug\nneg\t\U0001F44E\n")
    assert main(["lm", "influence", "--train", wordless, "--out", str(tmp_path / "w"), *TINY, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["lines_without_words"] == 2
    assert "2 line(s) of " in captured.err and "(first: line 2)" in captured.err


def test_an_embedding_too_large_for_memory_is_one_line(tmp_path, capsys, monkeypatch):
    from koba_ros.nlp import influence_report

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(influence_report, "fit_classifiers", no_memory)
    train = write(tmp_path / "t.tsv", "pos\tthe cup\nneg\tthe mug\n")
    assert main(["lm", "influence", "--train", train, "--out", str(tmp_path / "o"), "--embed", "65536"]) == 2
    assert "not enough memory for --embed 65536" in capsys.readouterr().err


def test_a_byte_order_mark_is_not_part_of_the_first_label(tmp_path, capsys):
    from koba_ros.nlp.ticket_ensemble import read_labelled  # koba lm tickets reads with the same function

    train = write(tmp_path / "bom.tsv", "pos\tgreat film\nneg\tdull film\npos\tgood movie\nneg\tbad movie\n", bom=True)
    assert [label for _, label, _ in read_labelled(train)] == ["pos", "neg", "pos", "neg"]
    one = write(tmp_path / "one.tsv", "pos\tgreat film\npos\tgood movie\n", bom=True)
    assert main(["lm", "influence", "--train", one, "--out", str(tmp_path / "out")]) == 2
    assert "one label ('pos')" in capsys.readouterr().err  # before: two classes, 'pos' and '\ufeffpos'


def test_most_harmful_lists_only_lines_that_raise_the_validation_loss(tmp_path, capsys):
    """The reviewer's set: 5 of 12 lines harmful at seed 0; the list used to be filled up to 10 with helpful ones."""
    train = write(tmp_path / "train.tsv", "".join(f"{line}\n" for line in [
        "block\tput the toy brick in the left box", "cup\tput the red cup in the right box",
        "cup\tput the coffee mug in the top box", "cup\tput the red cup in the left box",
        "cup\tput the red cup in the right box", "cup\tput the tea cup in the left box",
        "duck\tput the toy that quacks in the right box", "duck\tput the rubber duck in the top box",
        "block\tput the red cube in the left box", "block\tput the wooden block in the top box",
        "duck\tput the rubber duck in the right box", "duck\tput the rubber duck in the right box"]))
    val = write(tmp_path / "val.tsv", "cup\tput the red cup in the box\nduck\tput the rubber duck in the box\n")
    assert main(["lm", "influence", "--train", train, "--val", val, "--out", str(tmp_path / "out"), *TINY,
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 < result["harmful_to_val"] < 10
    assert len(result["most_harmful"]) == result["harmful_to_val"]
    assert all(row["val_influence"] < 0 for row in result["most_harmful"])


def small_model(embed=16, hidden=32, classes=3):
    from koba_ros.nlp.text_classifier import ClassifierConfig, TurnOverClassifier

    torch.manual_seed(0)
    return TurnOverClassifier(classes, ClassifierConfig(buckets=512, embed=embed, hidden=hidden)).eval()


def largest_head_batch(model, monkeypatch):
    """Record the most rows the model's head computes at once (instances x targets)."""
    seen = [0]
    head = model.head

    def spy(bag, instances=None, flip=False):
        seen[0] = max(seen[0], bag.shape[:-1].numel())
        return head(bag, instances, flip)

    monkeypatch.setattr(model, "head", spy)
    return seen


def test_influence_is_computed_in_bounded_pieces_with_the_same_numbers(monkeypatch):
    from koba_ros.nlp.influence import influence_on, self_influence
    from koba_ros.nlp.text_classifier import encode_texts

    texts = [f"put the object{i % 7} in box {i % 5}" for i in range(50)]
    x, y = encode_texts(texts, 512), torch.tensor([i % 3 for i in range(50)])
    model = small_model()
    whole_self = self_influence(model, x, y)
    whole_on = influence_on(model, torch.arange(50), x[:30], y[:30], reduce=False)
    seen = largest_head_batch(model, monkeypatch)
    assert torch.allclose(self_influence(model, x, y, chunk=16), whole_self, atol=1e-6)
    assert seen[0] <= 16                       # before: all 50 instances (20k lines: +620 MB)
    seen[0] = 0
    assert torch.allclose(influence_on(model, torch.arange(50), x[:30], y[:30], chunk=8, reduce=False, rows=64),
                          whole_on, atol=1e-6)
    assert seen[0] <= 64                       # before: 8 instances x all 30 targets (1000 targets: +517 MB)
    assert influence_on(model, torch.arange(5), x[:0], y[:0]).tolist() == [0.0] * 5


def test_instance_masks_are_the_same_in_pieces_without_64_bit_tables(monkeypatch):
    from koba_ros.nlp import turnover_dropout

    ids = torch.cat([torch.arange(300), torch.tensor([2**62, 12345678901])])
    for p in (0.5, 0.3, 1 / 3):
        assert torch.equal(turnover_dropout.instance_masks(ids, 100, p, seed=3, salt=1, chunk_elements=777),
                           turnover_dropout.instance_masks(ids, 100, p, seed=3, salt=1))
    largest = [0]
    splitmix = turnover_dropout._splitmix64

    def spy(x):
        largest[0] = max(largest[0], x.size)
        return splitmix(x)

    monkeypatch.setattr(turnover_dropout, "_splitmix64", spy)
    masks = turnover_dropout.instance_masks(torch.arange(20000), 1024)
    assert masks.dtype == torch.bool and 0.48 < masks.float().mean() < 0.52
    assert largest[0] <= 2**20  # 64-bit hashes of 8 MB at a time; before: all [20000, 1024] of them, 160 MB each


def test_ragged_ngrams_give_the_padded_numbers_at_the_cost_of_the_ids():
    from koba_ros.nlp.text_classifier import ClassifierConfig, accuracy, encode_bags, encode_texts, fit_classifier

    texts = ["a short line", "the red cup", " ".join(f"w{i}" for i in range(300)), "put it in the box", "!!"]
    bags, padded = encode_bags(texts, 512), encode_texts(texts, 512)
    assert torch.equal(bags.padded(), padded) and len(bags) == 5
    assert bags.ids.numel() == sum(len(r[r > 0]) for r in padded) < padded.numel() / 3
    assert torch.equal(bags[torch.tensor([4, 2])].padded(), encode_texts([texts[4], texts[2]], 512))
    assert torch.equal(bags[torch.tensor([True, True, False, False, False])].padded(), padded[[0, 1], :5])
    labels = torch.tensor([0, 1, 0, 1, 1])
    config = ClassifierConfig(buckets=512, embed=8, hidden=8, epochs=3, batch=2)
    a, b = fit_classifier(padded, labels, 2, config), fit_classifier(bags, labels, 2, config)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert accuracy(a, padded, labels) == accuracy(b, bags, labels)


def test_influence_report_does_not_pad_every_line_to_the_longest(tmp_path):
    """2000 short lines and one of 15,000 words: padded, [2001, 29999] ids were 480 MB."""
    lines = [f"{'ab'[i % 2]}\tput the thing{i % 9} in box {i % 4}" for i in range(2000)]
    lines.append("a\t" + " ".join(f"w{i}" for i in range(15000)))
    train = write(tmp_path / "long.tsv", "\n".join(lines) + "\n")
    code = ("import resource, torch; from koba_ros.nlp.influence_report import influence_report; "
            "from koba_ros.nlp.text_classifier import ClassifierConfig; torch.set_num_threads(1); "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"influence_report({train!r}, {str(tmp_path / 'out')!r}, config=ClassifierConfig(embed=8, hidden=8, "
            "epochs=1, batch=256)); print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 200  # MB of peak growth; measured about 20


def test_member_seeds_stay_in_torchs_range_and_are_unchanged_below_it(tmp_path, capsys):
    from koba_ros.nlp.ticket_ensemble import member_seed

    assert [member_seed(0, k) for k in range(3)] == [0, 1, 2] and member_seed(7, 2) == 702
    assert member_seed(2**63 - 1, 3) == ((2**63 - 1) * 100 + 3) % 2**64
    train = write(tmp_path / "small.tsv", "a\tthe red cup\nb\tthe blue duck\na\ta red mug\nb\ta yellow duck\n")
    assert main(["lm", "tickets", "--train", train, "--out", str(tmp_path / "model"), "--members", "1",
                 "--epochs", "1", "--pretrain-steps", "1", "--seed", str(2**63 - 1), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["members"] == 1  # before: RuntimeError after the pretraining


def test_the_tickets_repro_seeds_stay_in_torchs_range(monkeypatch):
    """Every seed the repro hands to torch, for the largest --seed (the slow parts replaced by recorders)."""
    from koba_ros.nlp.repro import tickets as repro

    seeds = []

    class Pretrained:
        encoder = None

    monkeypatch.setattr(repro, "pretrain_masked_lm", lambda texts, config, seed: Pretrained())
    monkeypatch.setattr(repro, "encode_words", lambda pretrained, texts: torch.zeros(len(texts), 2, dtype=torch.long))
    monkeypatch.setattr(repro, "prunable_weights", lambda encoder: {})
    monkeypatch.setattr(repro, "full_masks", lambda weights: {})
    monkeypatch.setattr(repro, "fine_tune", lambda *args: seeds.append(args[5]))
    monkeypatch.setattr(repro, "random_masks", lambda masks, sparsity, seed: seeds.append(seed) or {})

    def find_ticket(tune, masks, sparsity, rate, l1, share, seed):
        seeds.append(seed)
        tune(masks, None, seed + 1000 * 2)  # as lottery_tickets.find_ticket's rounds
        return {}

    monkeypatch.setattr(repro, "find_ticket", find_ticket)
    monkeypatch.setattr(repro, "member_report", lambda *args: {})
    monkeypatch.setattr(repro, "pruned_overlap", lambda tickets: 0.0)
    monkeypatch.setattr(repro, "sparsity_of", lambda masks: 0.3)
    repro.one_seed(repro.SIZES["test"], 2**63 - 1)
    assert seeds and all(0 <= s < 2**64 for s in seeds)
    seeds.clear()
    repro.one_seed(repro.SIZES["test"], 5)
    assert sorted(set(seeds)) == [500, 501, 2500, 2501]  # ordinary seeds: unchanged


def test_pretraining_refuses_over_long_sentences_and_pads_long_sets_per_batch(monkeypatch):
    from koba_ros.nlp import contextual_augmentation as ca

    short = ["put the red cup in the box", "put the blue duck in the box"] * 8
    with pytest.raises(ValueError, match=f"sentence 17 has 256 words; at most {ca.MAX_WORDS}"):
        ca.fit_augmenter([*short, " ".join(["w"] * 256)], [0] * 17, 1, ca.AugmenterConfig(steps=1))
    widths = []
    forward = ca.Augmenter.forward
    monkeypatch.setattr(ca.Augmenter, "forward", lambda self, ids: widths.append(ids.shape[1]) or forward(self, ids))
    config = ca.AugmenterConfig(d_model=16, n_layers=1, n_heads=2, steps=20, batch=4)
    ca.fit_augmenter([*short * 4, " ".join(["w"] * 100)], [0] * 65, 1, config)
    assert min(widths) == 8 and max(widths) <= 101  # before: every batch 101 wide
    widths.clear()
    ca.fit_augmenter([*short, "put " * 30], [0] * 17, 1, config)
    assert set(widths) == {31}  # up to PAD_TO_LONGEST words: the set's width, as when the results were recorded


def test_tickets_refuse_an_over_long_unlabelled_line_before_training(tmp_path, capsys):
    train = write(tmp_path / "small.tsv", "a\tthe red cup\nb\tthe blue duck\n")
    more = write(tmp_path / "more.txt", "the red cup is a mug\n" + " ".join(["cup"] * 300) + "\n")
    assert main(["lm", "tickets", "--train", train, "--unlabelled", more, "--out", str(tmp_path / "model"),
                 "--members", "1", "--epochs", "1", "--pretrain-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "more.txt:2: 300 words" in err and "\n" not in err
    long = write(tmp_path / "long.tsv", "a\tthe red cup\nb\t" + " ".join(["duck"] * 300) + "\n")
    assert main(["lm", "tickets", "--train", long, "--out", str(tmp_path / "model"), "--members", "1",
                 "--epochs", "1", "--pretrain-steps", "1"]) == 2
    assert "long.tsv:2: 300 words; a line may have at most 255" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("option", [["--epochs", "3"], ["--embed", "8"], ["--hidden", "8"], ["--mask-seeds", "2"],
                                    ["--seed", "1"]])
def test_training_options_are_refused_with_a_checkpoint(tmp_path, capsys, option):
    target = write(tmp_path / "target.txt", "some text\n")
    assert main(["lm", "influence", "--checkpoint", str(tmp_path / "run"), "--data", target, *option]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{option[0]} train the --train classifier" in err and "\n" not in err


def test_a_bad_out_is_found_before_training(tmp_path, capsys, monkeypatch):
    from koba_ros.nlp import influence_report

    def no_training(*args, **kwargs):
        raise AssertionError("trained before --out was checked")

    monkeypatch.setattr(influence_report, "fit_classifiers", no_training)
    train = write(tmp_path / "train.tsv", "a\tthe red cup\nb\tthe blue duck\n")
    taken = write(tmp_path / "taken", "a file, not a folder\n")
    assert main(["lm", "influence", "--train", train, "--out", taken]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    (tmp_path / "out" / "influence.csv").mkdir(parents=True)
    assert main(["lm", "influence", "--train", train, "--out", str(tmp_path / "out")]) == 2
    assert "a folder is in the way" in capsys.readouterr().err


def test_a_bad_out_is_found_before_scoring_documents(tmp_path, monkeypatch):
    from koba_ros.nlp import lm_influence

    class Run:
        path, document_eos, config, model = "run", None, {"seq_len": 8}, None

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored before --out was checked")

    monkeypatch.setattr(lm_influence, "load_runs", lambda checkpoints, device: ([Run()], [torch.arange(5)] * 2,
                                                                               ["a", "b"]))
    monkeypatch.setattr(lm_influence, "text_tokens", lambda target, run: (torch.arange(10), 10))
    monkeypatch.setattr(lm_influence, "score", no_scoring)
    taken = write(tmp_path / "taken", "a file\n")
    with pytest.raises(KobaError, match="cannot create the output folder"):
        lm_influence.document_influence("run", "target.txt", taken)


@pytest.mark.parametrize("option", ["--embed", "--hidden"])
def test_layer_widths_are_bounded(tmp_path, capsys, option):
    train = write(tmp_path / "train.tsv", "a\tthe red cup\nb\tthe blue duck\n")
    with pytest.raises(SystemExit) as exit_:
        main(["lm", "influence", "--train", train, "--out", str(tmp_path / "out"), option, "100000000"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}: must be a whole number from 1 to 65536" in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_ensemble(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    train = write(folder / "small.tsv", "a\tthe red cup\nb\tthe blue duck\na\ta red mug\nb\ta yellow duck\n")
    assert main(["lm", "tickets", "--train", train, "--out", str(folder / "model"), "--members", "1",
                 "--epochs", "1", "--pretrain-steps", "1"]) == 0
    return folder / "model"


@pytest.mark.parametrize(("edit", "message"), [
    ({"config.members": 0}, "members must be a whole number >= 1, got 0"),
    ({"labels": "ab"}, "labels must be a list of at least two names"),
    ({"labels": ["a", "b", "c"]}, "tickets.json names 3 labels, the members' heads have 2"),
])
def test_an_edited_ensemble_is_a_one_line_error(tiny_ensemble, tmp_path, capsys, edit, message):
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "tickets.safetensors").write_bytes((tiny_ensemble / "tickets.safetensors").read_bytes())
    meta = json.loads((tiny_ensemble / "tickets.json").read_text())
    for key, value in edit.items():
        *parents, last = key.split(".")
        node = meta
        for parent in parents:
            node = node[parent]
        node[last] = value
    (folder / "tickets.json").write_text(json.dumps(meta))
    assert main(["lm", "classify", "--model", str(tiny_ensemble), "the red cup"]) == 0  # the original works
    capsys.readouterr()
    assert main(["lm", "classify", "--model", str(folder), "the red cup"]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupt ticket ensemble" in err and message in err and "\n" not in err


def test_lottery_ticket_controls_take_any_seed_and_ordinary_seeds_draw_as_before():
    """random_masks salted the seed (seed * 1_000_003 + 1) past torch's 64-bit range for large repro seeds."""
    from koba_ros.nlp.lottery_tickets import random_masks, random_selections

    masks = {"w": torch.ones(8, 8, dtype=torch.bool)}
    assert random_masks(masks, 0.5, 2**63 - 1)["w"].sum().item() == 32
    g = torch.Generator().manual_seed(7 * 1_000_003 + 1)
    scores = torch.rand(8, 8, generator=g)
    assert torch.equal(random_masks(masks, 0.5, 7)["w"], scores >= scores.flatten().sort().values[32])
    assert random_selections({"w": torch.ones(4)}, 0.5, -(2**63))["w"].shape == (4,)
