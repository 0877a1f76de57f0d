"""Each paper effect at its smallest size (`koba lm repro NAME --size test`, the same as --quick): the issue's CPU
evidence that each effect appears. All thirteen run in the default suite (turnover, instance, phsic and augment since
session 14, about 50 s, 30 s, 15 s and 75 s more (augment since session 23); tickets since session 15, about 35 s;
metadata since session 16, about 65 s): the first seven took 212 s together on one thread of this 2-core machine
when it was otherwise idle (session 11, torch 2.13; earlier sessions measured 1-5 min each under a load average of
5-12 from parallel jobs, and kept them out of the default run). Since session 23 wso's test runs its 3 seeds (about
40 s more).
Measured outcomes are in docs/nlp.md."""
import json

import pytest

from koba_ros.cli import main
from koba_ros.nlp.repro import run_repro
from test.nlp_threads import one_thread  # noqa: F401  (autouse fixture)

# Each repro trains for up to a minute of one core; on a machine loaded by other jobs that can pass the 300 s default.
LONG = pytest.mark.timeout(1200)


def repro(name, tmp_path) -> dict:
    result = run_repro(name, quick=True, device="cpu", out=str(tmp_path), size="test")
    assert (tmp_path / f"{name}.json").is_file() and (tmp_path / f"{name}.png").stat().st_size > 1000
    return result


@LONG
def test_b2t_post_ln_fails_where_pre_ln_and_b2t_train(tmp_path):
    r = repro("b2t", tmp_path)
    post, pre, b2t = (r["results"][k] for k in ("post", "pre", "b2t"))
    assert post["diverged"] or post["final_train_loss"] > r["unigram_loss_reference"] - 0.05  # stuck
    assert pre["final_train_loss"] < post["final_train_loss"] - 0.1
    assert b2t["final_train_loss"] < post["final_train_loss"] - 0.1
    assert b2t["final_train_loss"] <= pre["final_train_loss"]  # the paper's B2T at or below Pre-LN
    assert post["grad_norm_bottom_over_top"] < min(pre["grad_norm_bottom_over_top"], b2t["grad_norm_bottom_over_top"])


@pytest.fixture(scope="module")
def shape_result(tmp_path_factory):
    return repro("shape", tmp_path_factory.mktemp("shape"))["results"]


@LONG
def test_shape_is_shift_invariant(shape_result):
    assert shape_result["shape"]["shift_cosine"] > shape_result["sinusoidal"]["shift_cosine"] + 0.2


@LONG
def test_shape_extrapolates_to_longer_sequences(shape_result):
    shape, learned = shape_result["shape"], shape_result["learned"]
    assert shape["accuracy_len_1_20_offset0"] > 0.9  # learned the training lengths
    assert shape["accuracy_len_21_40_offset0"] > learned["accuracy_len_21_40"] + 0.2
    # at the fixed offset K the copied half lies on positions never seen in training (docs/nlp.md)
    assert shape["accuracy_len_21_40_offset0"] > shape["accuracy_len_21_40"] + 0.2


@LONG
def test_alone_reaches_about_the_table_loss_with_far_fewer_parameters(tmp_path):
    r = repro("alone", tmp_path)["results"]
    small = next(k for k in r if k.startswith("table_rank"))
    assert r["alone"]["embedding_parameters"] < r["table"]["embedding_parameters"] / 4
    assert r["alone"]["eval_loss"] < r["table"]["eval_loss"] + 0.15  # about the full table's loss (measured +0.05)
    # Measured 0.18 below the same-budget table (seed 0). Until session 23 that table started at std 0.001 (two
    # stacked N(0, 0.02) factors, embeddings.py) and the margin was 0.85, with a threshold of 0.5.
    assert r["alone"]["eval_loss"] < r[small]["eval_loss"] - 0.1


@LONG
def test_spike_small_init_has_a_small_shortcut_and_large_gradients_and_the_fixes_end_lower(tmp_path):
    """Spike No More's argument at this size (seed 0, session 23). At initialisation, which checks that the fixes are
    wired in: the small init's shortcut std 0.078 against 0.62 (scaled embeddings) and 1.00 (embedding LayerNorm);
    its gradient norm 7.1 against 2.5 / 1.6, growing with depth (15.3 at 12 layers). From training: the fixes end
    lower (2.938 against 2.602 / 2.871; every run of session 5's CPU sweep, 5 of 6 on the H100). Not asserted: the
    spike counts (8 against 5 / 7), batch noise at every size tried (docs/nlp.md); this test asserted them until
    session 23, under the name test_spike_fixes_remove_most_spikes."""
    result = repro("spike", tmp_path)
    shallow, deep = result["init_grad_norm_by_depth"].values()
    assert deep["small_init"] > shallow["small_init"] > 2 * max(shallow["scaled_embed"], shallow["embed_layernorm"])
    r = result["results"]["lr=0.03"]
    small, fixes = r["small_init"], (r["scaled_embed"], r["embed_layernorm"])
    assert small["max_grad_norm"] > max(f["max_grad_norm"] for f in fixes)  # the 1/std(shortcut) bound at init
    assert small["shortcut_std_start"] * 3 < min(f["shortcut_std_start"] for f in fixes)
    assert small["final_train_loss"] > max(f["final_train_loss"] for f in fixes) + 0.03
    # Not asserted: larger late-training gradient norms with the small init. They held at this size when this test
    # was last run (session 4, commit 0abc0cb: blocks 1.09 vs 0.23 / 0.91), not in session 11 (total 0.85 vs 0.58 /
    # 3.02, blocks 0.31 vs 0.33 / 1.06; the model code is unchanged, its text comes from this machine's Python), nor
    # on the H100 at full size (session 7): not a robust effect at these sizes.


@LONG
def test_wso_fine_tunes_better_than_the_schedules_that_decay_all_run(tmp_path):
    """3 seeds (--quick); whole validation splits, fine-tuning scored on held-out code whose lines pre-training never
    read (wso.unseen_lines). Measured (session 23, rules in docs/nlp/session23_wso_rules.md) at base seeds 0 / 3 / 6:
    WSO's fine-tuned loss 0.036 / 0.046 / 0.057 below cosine's and linear's (asserted; confounded: they are also
    worse after pre-training), and 0.002 / 0.018 / 0.015 below WSD's (8 of 9 seeds): not asserted, the rule wanted
    0.005 in 3 of 3. Nor is the other half, WSD ahead of WSO after pre-training (0.004 / 0.016 / 0.015, 7 of 9
    seeds). Until session 23 this test asserted both halves at one seed, scored on code a quarter of whose lines
    pre-training had read; the corpus's last-window fix flipped the pre-training half there."""
    r = run_repro("wso", quick=True, device="cpu", out=str(tmp_path))
    fine_tuned = {k: v["finetune_val_loss"] for k, v in r["results"].items()}
    assert fine_tuned["wso"] < min(fine_tuned["cosine"], fine_tuned["linear"]) - 0.02


@LONG
def test_expand_reaches_the_target_loss_with_fewer_flops(tmp_path, capsys):
    assert main(["lm", "repro", "expand", "--size", "test", "--json", "--out", str(tmp_path)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["expansion_loss_change"] < 1e-4
    assert r["flops_ratio_grown_over_scratch"] < 1.0


@LONG
def test_family_members_grown_by_expansion_end_at_about_their_independent_loss(tmp_path):
    """The measured claim is the loss gaps of M and L (seed 0: -0.067 and -0.185). The budget lines are sanity checks,
    true by construction: the last stage's steps are solved so that the family costs no more than L alone, so the
    FLOPs ratio is about n_L / (n_S + n_M + n_L) whatever training does; S is the same run in both families."""
    r = repro("family", tmp_path)
    assert r["flops"]["progressive"] <= r["flops"]["largest_from_scratch"] * 1.001  # the paper's budget
    assert r["flops_ratio_progressive_over_independent"] < 0.75
    gaps = r["loss_gap_progressive_minus_independent"]
    assert gaps["S"] == 0.0
    assert max(gaps["M"], gaps["L"]) < 0.05


@LONG
def test_turnover_finds_planted_wrong_labels_and_guides_removal(tmp_path):
    """Measured at this size, seeds 0 / 1 / 2 (docs/nlp.md "Session 14"): chance 0.303 / 0.302 / 0.311; precision of
    self-influence 0.881 / 0.890 / 0.890, of validation influence 0.476 / 0.444 / 0.494; test accuracy without the
    top self-influence 0.961 / 0.947 / 0.945 against random removal 0.917 / 0.917 / 0.902. Not asserted: removal by
    validation influence beat random removal by only 0.011 / 0.007 / 0.003, and no estimated removal beat keeping
    every line except, on seed 0, removal by training loss. Session 15, a plain classifier of the same shape retrained
    on the same removals: it fits the noisy labels (training accuracy 1.0 on every seed) and scores 0.834 / 0.820 /
    0.802 on everything, 0.958 / 0.957 / 0.952 without the top self-influence, 0.802 / 0.817 / 0.775 without random
    lines."""
    r = repro("turnover", tmp_path)["summary"]
    chance, precision, acc = r["chance_precision"], r["precision_at_k"], r["test_accuracy"]
    assert precision["self_influence"] > 2 * chance
    assert precision["val_influence"] > chance + 0.1
    assert acc["without_planted"] > acc["noisy_all"] > acc["without_random"]   # the task: wrong labels do harm
    assert acc["without_top_self_influence"] > acc["without_random"] + 0.02
    assert r["train_accuracy_on_noisy_labels"]["plain"] > 0.95                  # it memorises the wrong labels
    assert acc["plain_without_top_self_influence"] > acc["plain_noisy_all"] + 0.05
    assert acc["plain_without_top_self_influence"] > acc["plain_without_random"] + 0.05


@LONG
def test_instance_based_answers_are_explained_by_their_nearest_training_sentence(tmp_path):
    """Measured at this size (seed 0): accuracy on unseen object names 0.802 instance-based vs 0.885 softmax; the
    nearest training sentence carries the predicted label 0.985 vs 0.675 (post hoc, in the softmax model's hidden
    layer). The paper's "about the same accuracy" is not reproduced here (full size, 3 seeds: 0.817 vs 0.910)."""
    r = repro("instance", tmp_path)["summary"]
    accuracy, explained = r["accuracy"], r["nearest_neighbour_has_predicted_label"]
    assert accuracy["instance_based"] > 0.6 and accuracy["softmax"] > 0.6  # 19 classes: chance about 0.05
    assert accuracy["instance_based"] > accuracy["softmax"] - 0.15
    assert explained["instance_based"] > 0.95 and explained["instance_based"] > explained["softmax"] + 0.2


@LONG
def test_phsic_tells_true_pairs_from_false_about_as_well_as_a_trained_pmi_model(tmp_path):
    """Measured at this size (seed 0): ROC AUC on unseen names PHSIC 0.966, neural PMI 0.985, cosine 0.929 (fitting
    PHSIC took 1/204 of the neural PMI's time in that run; not asserted: tests do not time)."""
    r = repro("phsic", tmp_path)["mean_auc"]
    assert r["phsic"] > 0.9
    assert r["phsic"] > r["cosine"] + 0.01           # it learned which names go together, beyond looking alike
    assert r["phsic"] > r["neural_pmi"] - 0.05


@LONG
def test_label_conditional_augmentation_beats_unconditional_which_hurts(tmp_path):
    """Measured at this size (2 sentences per name, 3 name folds; session 23: every arm the same 30 epochs and
    updates, each sentence freshly augmented every epoch), seeds 0 / 1 / 2: accuracy on unseen names
    0.739 / 0.714 / 0.736 on the sentences alone, 0.750 / 0.733 / 0.756 label-conditional, 0.702 / 0.629 / 0.674
    unconditional (docs/nlp.md "Session 23"). By the rules written before the runs, label-conditional helps over
    3 seeds (+0.017 mean, 3 of 3), but seed 0's gain (+0.011) is too small to assert here; so this asserts, with a
    margin of at least 0.02 at seed 0, that it does not hurt, that unconditional augmentation hurts, and that the
    label condition is what separates the two. (Session 14's +0.034 / +0.042 / +0.022 came with 3x the updates.)"""
    r = repro("augment", tmp_path)["summary"]["per_name=2"]
    assert r["label_conditional"] > r["original"] - 0.01
    assert r["unconditional"] < r["original"] - 0.01
    assert r["label_conditional"] > r["unconditional"] + 0.02


@LONG
def test_multi_tickets_are_thirty_percent_sparse_accurate_and_the_random_l1_makes_their_tickets_differ(tmp_path):
    """Measured at this size (seed 0, 2 members; since session 23 the masked-LM pretraining text leaves out the
    held-out descriptions' sentences, the test inputs: 4,716 sentences, 220 fewer): ensemble accuracy on the held-out
    descriptions 0.877 dense, 0.900 a random 30 % sub-network, 0.877 tickets, 0.873 multi-ticket (with the test
    sentences in the pretraining text: 0.877 / 0.877 / 0.882 / 0.877); pruned-weight overlap of two members 0.351
    without the random-mask L1 and 0.228 with it (0.174 for random sub-networks). The accuracy claim is judged at full
    size (5 seeds, 4 members): without the test sentences in the pretraining text the multi-ticket ensemble beats the
    dense one on 2 of 5 seeds only (mean 0.929 vs 0.924; session 15, with them: 0.957 vs 0.926, 4 of 5), so it is not
    reproduced (docs/nlp.md "Session 23")."""
    r = repro("tickets", tmp_path)
    seed = r["seeds"]["0"]
    assert seed["test_sentences"] == 22 * 10 and seed["classes"] == 19
    for arm, v in r["summary"].items():
        assert v["member_accuracy"] > 0.6 and v["ensemble_accuracy"] > 0.6, arm   # 19 classes: chance about 0.05
    assert {seed["arms"][arm]["sparsity"] for arm in ("random_subnetwork", "tickets", "multi_ticket")} == {0.3}
    assert r["summary"]["multi_ticket"]["pruned_overlap"] < r["summary"]["tickets"]["pruned_overlap"] - 0.05


def test_repro_cli_refuses_cuda_without_a_gpu_and_unknown_names(capsys):
    import torch

    if not torch.cuda.is_available():
        assert main(["lm", "repro", "expand", "--device", "cuda", "--json"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not one of the reproductions
        main(["lm", "repro", "moe"])


def test_full_sizes_see_their_training_text_about_once():
    """The full sizes' validation losses must measure modelling, not memorising (session 4's family drew 9.8M tokens
    from 0.36M: 27 passes, and its larger members ended worse). The corpora are read from this machine's Python."""
    from koba_ros.nlp.repro import expand, family, wso
    from koba_ros.nlp.repro.common import corpus_stream, passes

    def train_split(s, corpus="docstrings", key="corpus_bytes", val_fraction=0.1):
        return corpus_stream(s["seq"], s[key], s.get("corpus", corpus)).split(val_fraction)[0]

    s = family.SIZES["full"]
    assert passes(s["steps"] * s["batch"] * s["seq"], train_split(s)) <= 1.5  # measured 0.91 (CPython 3.11)
    s = expand.SIZES["full"]
    assert passes((s["steps_small"] + s["steps_large"]) * s["batch"] * s["seq"], train_split(s)) <= 1.5
    s = wso.SIZES["full"]
    assert passes(s["steps"] * s["batch"] * s["seq"], train_split(s)) <= 1.5  # measured 1.49
    assert passes(s["ft_steps"] * s["batch"] * s["seq"], train_split(s, "source", "ft_corpus_bytes", 0.2)) <= 1.5


def test_stdlib_source_is_python_code_without_test_suites_and_small_sizes_read_its_prefix():
    import sysconfig
    from pathlib import Path

    from koba_ros.nlp.data import _is_test_or_vendored, stdlib_source

    small = stdlib_source(300_000)  # wso's fine-tuning text at the test size
    assert 300_000 < len(small) < 600_000 and "def " in small and "import " in small
    assert stdlib_source(1_000_000).startswith(small)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert _is_test_or_vendored(stdlib / "test" / "test_os.py", stdlib)
    assert _is_test_or_vendored(stdlib / "unittest" / "test" / "test_case.py", stdlib)
    assert not _is_test_or_vendored(stdlib / "json" / "decoder.py", stdlib)


def test_fit_tracks_the_gradient_norm_of_a_parameter_subset():
    import torch

    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.model import TransformerLM
    from koba_ros.nlp.repro.common import fit

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=2, max_len=8, pad_id=0))
    x = torch.randint(0, 32, (4, 8))
    run = fit(model, lambda step: (x, x), 3, 1e-3, "cpu", tracked=list(model.blocks.parameters()))
    assert len(run["tracked_grad_norms"]) == len(run["grad_norms"]) == 3
    # a subset's norm is positive and below the total's (the embeddings have gradients too)
    assert all(0 < t < g for t, g in zip(run["tracked_grad_norms"], run["grad_norms"], strict=True))
    assert fit(model, lambda step: (x, x), 1, 1e-3, "cpu")["tracked_grad_norms"] == []


@LONG
def test_metadata_conditioning_pipeline_reads_the_metadata_and_measures_prompts_by_how_well_they_fix_the_latent(
        tmp_path):
    """At this size the models are far from the grammar (loss 0.565 vs the grammar's 0.41 nats/token) and few of
    their continuations are grammatical, so the paper's effect is judged at full size (docs/nlp.md "Session 16").
    What must hold here: the metadata arm uses the metadata when it is given, the prompts' latent becomes more
    certain as they grow, and both kinds of prompt (latent inferable / not) occur."""
    r = repro("metadata", tmp_path)
    seed = r["seeds"]["0"]
    arm = seed["arms"]["all_levels"]
    assert arm["test_loss_with_metadata"] < arm["test_loss_without_metadata"] - 0.03   # measured 0.524 vs 0.575
    ideal = seed["grammar_loss"]   # the grammar's own probabilities bound every model's loss from below
    assert ideal["given_latent"] < arm["test_loss_with_metadata"]
    assert ideal["given_latent"] < ideal["without_metadata"] < seed["arms"]["none"]["test_loss_without_metadata"]
    posterior = list(seed["posterior_of_true_latent"].values())
    assert posterior == sorted(posterior) and posterior[0] < 0.3 and posterior[-1] > 0.8
    for name in ("none", "all_levels"):
        assert min(seed["arms"][name]["prompts_by_latent"].values()) > 50
        accuracy = seed["arms"][name]["grammatical_accuracy"]
        assert accuracy[32] > accuracy[1]
    assert set(r["metadata_minus_none"]) == {"all_levels"}
