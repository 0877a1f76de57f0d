"""Training the grounding model: data from perceived scenes + the instruction generator, joint training,
temperature calibration, curves, checkpoint.

Splits: training scenes (seeds 0..N) with training phrasings; a validation part of them (the last
scenes) with the validation phrasings (templates and words in neither training nor test) for early
model choice and temperature fitting, so the asking threshold is calibrated on unseen wording; the
benchmark uses other scenes (seeds from 100000) with the held-out (test) phrasings.

Catalog head: training reads the catalog texts without the test and validation (val, val2) words; validation reads
the whole catalog, as inference does.
"""
from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from koba_ros.atomic_write import write_atomically
from koba_ros.errors import KobaError
from koba_ros.grounding.calibration import fit_gate_temperature, phrasing_draws
from koba_ros.grounding.catalog_phrases import catalog_phrases
from koba_ros.grounding.crop_encoder import predict_kinds, pretrain
from koba_ros.grounding.grounder import DEST_LABELS, Grounder, batch_inputs
from koba_ros.grounding.instructions import COLOURS, UNSEEN_WORDS, InstructionGenerator, Sample
from koba_ros.grounding.model import GroundingNet, soft_cross_entropy
from koba_ros.grounding.novel_words import NoncePhrasing, NovelWords, phrasing_vocabulary, with_phrases
from koba_ros.grounding.text_encoders import ByteTransformerEncoder, MiniLMEncoder

# "relation" (session 27): clear instructions said by a landmark. Most relation draws find no landmark and are
# drawn again, so with those clear and no-box instructions say at RELATION_RATE they are about 7 % of all.
TRAIN_KIND_WEIGHTS = {"clear": 0.45, "ambiguous": 0.2, "absent": 0.15, "no_box": 0.2, "relation": 0.6}


@dataclass
class TrainConfig:
    encoder: str = "minilm"          # minilm | byte
    scenes: int = 600                # rendered training scenes (the last 15% validate); 300 before session 6
    per_scene: int = 30              # instructions generated per scene
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    hidden: int = 96
    seed: int = 0
    threads: int = 1                  # more threads slowed training ~50x on the shared 2-core machine
    token_drop: float = 0.0           # word dropout on the encoder's token states during training (drop_tokens)
    catalog: bool = True              # catalog head: match object words against the catalog's texts
    catalog_weight: float = 0.5       # weight of its auxiliary losses (object -> entry, words -> entry)
    location: bool = True             # location head: which box the words say the object is in
    scene_none: bool = True           # "none of them" also reads the best candidates' fits (model.SceneNone)
    colour: bool = True               # colour head: the colour the words give the object vs each object's colour
    novel_words: float = 0.6          # share of training instructions tried for naming their object with a made-up
                                      # word listed in the batch's catalog (novel_words.py); 0: off. 0.6 beat 0.3 on
                                      # the validation phrasings (0.879 vs 0.860 clear accuracy, same code)
    homographs: float = 0.3           # share of those renamed with a word the training phrasings use in another role
                                      # ("put the red put ..."; novel_words.homograph_words), since "can" was ignored
    nonce_phrasing: float = 0.0       # share of training phrasings (command, box, location) with one verb/noun made up
                                      # (novel_words.NoncePhrasing): sentence shape over the few training verbs
    crops: bool = False               # CNN features of each object's crop join x_i (crop_encoder.py), pretrained on
                                      # the training objects' kinds, then frozen
    crop_epochs: int = 20             # epochs of that pretraining


def make_samples(scenes, split: str, per_scene: int, seed: int, weights: dict | None = None,
                 reword=None) -> list[Sample]:
    gen = InstructionGenerator(split, seed, reword)
    weights = weights or TRAIN_KIND_WEIGHTS
    kinds, p = list(weights), np.array(list(weights.values()), dtype=float)
    out = []
    for scene in scenes:
        if not scene.objects:
            continue
        made = tries = 0
        while made < per_scene and tries < per_scene * 6:
            tries += 1
            s = gen.generate(scene.objects, scene.names, kinds, p / p.sum())
            if s is not None:
                out.append(s)
                made += 1
    return out


def labels(samples: list[Sample], n: int):
    """Target distribution [B, n+1] (uniform over the referents, or "none"), box class [B], landmark [B]."""
    target = torch.zeros(len(samples), n + 1)
    for b, s in enumerate(samples):
        if s.referents:
            target[b, s.referents] = 1.0 / len(s.referents)
        else:
            target[b, n] = 1.0
    dest = torch.tensor([DEST_LABELS.index(s.destination) for s in samples])
    landmark = torch.tensor([-100 if s.landmark is None else s.landmark for s in samples])
    return target, dest, landmark


SCENE_CACHE: dict = {}


def drop_tokens(states: torch.Tensor, mask: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Word dropout (Iyyer et al., ACL 2015; Bowman et al., CoNLL 2016) on token states: each token is removed
    from the sequence with probability p (the first one is always kept) and the rest are packed together.

    Why: the head must not lean on any single token position of the phrasings it was trained on, so an
    unseen word or sentence shape that leaves the rest of the sentence intact is still read from the rest.
    """
    keep = mask & (torch.rand(mask.shape) >= p)
    keep[:, 0] = mask[:, 0]
    length = keep.sum(1)
    packed = states.new_zeros(states.shape[0], int(length.max()), states.shape[2])
    packed_mask = torch.arange(packed.shape[1])[None, :] < length[:, None]
    for b in range(states.shape[0]):
        packed[b, :length[b]] = states[b, keep[b]]
    return packed, packed_mask


def run_batch(net, encoder, appearance_dim, samples, token_drop: float = 0.0, aux: dict | None = None):
    inputs = batch_inputs([s.text for s in samples], [s.objects for s in samples], encoder, net, appearance_dim,
                          SCENE_CACHE)
    if token_drop > 0:
        inputs = (*drop_tokens(inputs[0], inputs[1], token_drop), *inputs[2:])
    target_logits, dest_logits, lm_logits = net(*inputs, aux=aux)
    target, dest, landmark = labels(samples, inputs[2].shape[1])
    return target_logits, dest_logits, lm_logits, target, dest, landmark


def location_loss(aux: dict, samples: list[Sample]) -> torch.Tensor:
    """Cross-entropy of the box the words say the object is in (class 4: they say none)."""
    boxes = torch.tensor([DEST_LABELS.index(s.location) for s in samples])
    return F.cross_entropy(aux["location"], boxes)


def said_colour(sample: Sample, colour_of: dict[str, str]) -> int:
    """The colour the words give the object (index into COLOURS; len(COLOURS) = not said): the referents' catalog
    colour when the text says it; for an absent object ("the green duck") the one colour word of the text."""
    words = set(sample.text.lower().replace(",", " ").split())
    if sample.referents:
        said = {colour_of[sample.names[i]] for i in sample.referents} & words
    else:
        said = words & set(COLOURS)
    return COLOURS.index(said.pop()) if len(said) == 1 else len(COLOURS)


def colour_loss(aux: dict, samples: list[Sample], colour_of: dict[str, str]) -> torch.Tensor:
    """Cross-entropy of the colour the words say (or not said) + each object's catalog colour (the scene labels)."""
    said = torch.tensor([said_colour(s, colour_of) for s in samples])
    obj = aux["colour_objects"]
    labels = torch.full(obj.shape[:2], -100)
    for b, s in enumerate(samples):
        labels[b, :len(s.names)] = torch.tensor([COLOURS.index(colour_of[n]) for n in s.names])
    return F.cross_entropy(aux["colour_words"], said) + F.cross_entropy(obj.flatten(0, 1), labels.flatten(),
                                                                         ignore_index=-100)


def catalog_loss(aux: dict, samples: list[Sample], entries: tuple[str, ...]) -> torch.Tensor:
    """Cross-entropy of object -> catalog entry (the scene's labels) + words -> the entries they fit (uniform)."""
    index = {n: k for k, n in enumerate(entries)}
    obj = aux["objects"]
    labels = torch.full(obj.shape[:2], -100)
    said = torch.zeros(len(samples), len(entries))
    for b, s in enumerate(samples):
        labels[b, :len(s.names)] = torch.tensor([index[n] for n in s.names])
        if s.entries:
            said[b, [index[n] for n in s.entries]] = 1.0 / len(s.entries)
    loss = F.cross_entropy(obj.flatten(0, 1), labels.flatten(), ignore_index=-100)
    has = said.sum(1) > 0
    if has.any():
        loss = loss + soft_cross_entropy(aux["text"][has], said[has])
    return loss


def fit_temperature(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Temperature scaling (Guo et al., ICML 2017): the T minimising validation NLL of softmax(z / T)."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        loss = soft_cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


@torch.no_grad()
def evaluate(net, encoder, appearance_dim, samples, batch_size=128):
    """Accuracy on clear samples (target and box), and all logits for calibration."""
    net.eval()
    correct = total = 0
    t_logits, t_labels, d_logits, d_labels = [], [], [], []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        tl, dl, _, target, dest, _ = run_batch(net, encoder, appearance_dim, chunk)
        for b, s in enumerate(chunk):
            keep = list(range(len(s.objects))) + [tl.shape[1] - 1]
            t_logits.append(tl[b, keep])
            t_labels.append(torch.cat([target[b, :len(s.objects)], target[b, -1:]]))
            if s.kind == "clear":
                total += 1
                correct += int(int(tl[b].argmax()) == s.target and int(dl[b].argmax()) == int(dest[b]))
        d_logits.append(dl)
        d_labels.append(dest)
    net.train()
    return correct / max(total, 1), t_logits, t_labels, torch.cat(d_logits), torch.cat(d_labels)


def fit_target_temperature(t_logits, t_labels) -> float:
    """One temperature over ragged (per-scene object count) logits: pad to the longest with -inf-like values."""
    n = max(x.shape[0] for x in t_logits)
    logits = torch.full((len(t_logits), n), -1e4)
    target = torch.zeros(len(t_logits), n)
    for i, (lg, lb) in enumerate(zip(t_logits, t_labels, strict=False)):
        logits[i, :len(lg)], target[i, :len(lb)] = lg, lb
    return fit_temperature(logits, target)


def train(cfg: TrainConfig, out_dir: Path, scenes=None, progress: bool = True, log=print,
          weights_name: str = "grounding.pt") -> dict:
    """Train, calibrate and save models/grounding-style output into out_dir; returns the run's summary."""
    from tqdm import tqdm

    from koba_ros.grounding.scenes import cache_dir, perceived_scenes
    from koba_ros.sim.catalog import load_catalog

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    scenes = scenes if scenes is not None else perceived_scenes(range(0, cfg.scenes), progress)
    n_val = max(1, int(len(scenes) * 0.15))
    catalog = load_catalog()
    reword = NoncePhrasing(cfg.nonce_phrasing, cfg.seed, phrasing_vocabulary(catalog)) if cfg.nonce_phrasing else None
    train_samples = make_samples(scenes[:-n_val], "train", cfg.per_scene, cfg.seed, reword=reword)
    val_samples = make_samples(scenes[-n_val:], "train", cfg.per_scene, cfg.seed + 1)
    val_phrasings = make_samples(scenes[-n_val:], "val", cfg.per_scene, cfg.seed + 2)
    appearance_dim = next(len(o.features) for s in scenes for o in s.objects if o.features is not None)
    novel = NovelWords(train_samples, catalog, cfg.novel_words, cfg.seed, phrasing_vocabulary(catalog),
                       homographs=cfg.homographs) if cfg.catalog and cfg.novel_words > 0 else None
    if cfg.encoder == "minilm":
        encoder, text_module, text_dim = MiniLMEncoder(), None, MiniLMEncoder.dim
        texts = [s.text for s in train_samples + val_samples + val_phrasings] + (novel.texts() if novel else [])
        encoder.prefetch(texts, progress, cache_dir() / f"minilm_states_{cfg.scenes}_{cfg.per_scene}_{cfg.seed}.pt")
    else:
        encoder, text_module = None, ByteTransformerEncoder()
        text_dim = text_module.dim
    net = GroundingNet(text_dim, appearance_dim, cfg.hidden, text_module)
    train_catalog = catalog_phrases(catalog, leave_out=UNSEEN_WORDS)
    full_catalog = catalog_phrases(catalog)

    def evaluate_val_phrasings():
        """Validation phrasings read the whole catalog, as inference does."""
        if cfg.catalog:
            net.set_catalog(full_catalog, encoder)
        result = evaluate(net, encoder, appearance_dim, val_phrasings)
        if cfg.catalog:
            net.set_catalog(train_catalog, encoder)
        return result

    if cfg.catalog:
        net.use_catalog(train_catalog.entries)
        net.set_catalog(train_catalog, encoder)
    if cfg.location:
        net.use_location()
    if cfg.scene_none:
        net.use_scene_none()
    if cfg.colour:
        net.use_colour()
    crop_summary = pretrain_crops(net, scenes[:-n_val], scenes[-n_val:], sorted(catalog), cfg, log) if cfg.crops else {}
    colour_of = {name: entry.color for name, entry in catalog.items()}
    feats = np.concatenate([batch_inputs(["x"], [s.objects], encoder, net, appearance_dim)[2][0].numpy()
                            for s in scenes[:50] if s.objects])
    net.obj_mean.copy_(torch.from_numpy(feats.mean(0)))
    net.obj_std.copy_(torch.from_numpy(feats.std(0) + 1e-3))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    steps = cfg.epochs * (len(train_samples) // cfg.batch_size)
    if steps < 4:  # a model saved from no step at all would look trained
        raise KobaError(f"{len(train_samples)} training sentences give {steps} optimizer steps of {cfg.batch_size} "
                        "over the epochs; train on more scenes, sentences per scene or epochs")
    # At least two warm-up steps: OneCycleLR divides by (pct_start x steps - 1), which is 0 at exactly 10 steps.
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=max(0.1, 2 / steps))
    curve, best, best_state = [], -1.0, None
    bar = tqdm(total=steps, desc=f"train grounding ({cfg.encoder})", disable=not progress)
    step = 0
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(train_samples))
        losses = []
        for start in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            batch = [train_samples[i] for i in order[start:start + cfg.batch_size]]
            if novel is not None:   # some say a made-up word; this batch's catalog lists it
                batch, extra = novel.batch(order[start:start + cfg.batch_size], train_samples)
                net.set_catalog(with_phrases(train_catalog, extra), encoder)
            aux = {}
            tl, dl, ll, target, dest, landmark = run_batch(net, encoder, appearance_dim, batch, cfg.token_drop, aux)
            loss = soft_cross_entropy(tl, target) + F.cross_entropy(dl, dest)
            if "objects" in aux:
                loss = loss + cfg.catalog_weight * catalog_loss(aux, batch, net.catalog.entries)
            if "location" in aux:
                loss = loss + location_loss(aux, batch)
            if "colour_words" in aux:
                loss = loss + colour_loss(aux, batch, colour_of)
            if (landmark >= 0).any():
                loss = loss + 0.5 * F.cross_entropy(ll, landmark, ignore_index=-100)
            if not torch.isfinite(loss):  # nothing is written: an earlier model in the folder stays as it was
                raise KobaError(f"the training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                                f"(learning rate {cfg.lr:g} too high?); nothing was saved")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if novel is not None:
            net.set_catalog(train_catalog, encoder)
        val_acc = evaluate(net, encoder, appearance_dim, val_samples)[0]
        val_phr_acc = evaluate_val_phrasings()[0]
        curve.append({"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)), "val_clear_acc": val_acc,
                      "val_phrasings_clear_acc": val_phr_acc})
        log(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  val clear accuracy {val_acc:.3f} (training phrasings), "
            f"{val_phr_acc:.3f} (validation phrasings)")
        if val_phr_acc >= best:   # the epoch chosen on unseen wording
            best, best_state = val_phr_acc, {k: v.detach().clone() for k, v in net.state_dict().items()}
    bar.close()
    net.load_state_dict(best_state)
    _, t_logits, t_labels, d_logits, d_labels = evaluate_val_phrasings()
    t_nll = fit_target_temperature(t_logits, t_labels)
    t_dest = fit_temperature(d_logits, F.one_hot(d_labels, len(DEST_LABELS)).float())
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"encoder": cfg.encoder, "appearance_dim": appearance_dim, "hidden": cfg.hidden,
              "t_target": t_nll, "t_target_nll": t_nll, "t_dest": t_dest, "train": asdict(cfg)}
    if text_module is not None:
        config["byte"] = text_module.sizes
    # Then aim the asking gate with the model in the real dialogue, on several draws of validation phrasings of the
    # same scenes (one draw gave a noisy temperature). The model file appears only once complete: a run stopped
    # before leaves the folder as it found it.
    pregate = out_dir / f".{weights_name}.pregate.tmp"
    torch.save({"state_dict": net.state_dict(), "config": config}, pregate)
    try:
        gate_samples = phrasing_draws(scenes[-n_val:], cfg.per_scene, cfg.seed)
        t_target, t_dest, gate_rates = fit_gate_temperature(Grounder(pregate), gate_samples, (t_nll, t_dest),
                                                            progress=progress)
    finally:
        pregate.unlink(missing_ok=True)
    config.update(t_target=t_target, t_dest=t_dest, t_dest_nll=config["t_dest"], gate_rates_val=gate_rates)
    write_atomically(out_dir / weights_name,
                     lambda tmp: torch.save({"state_dict": net.state_dict(), "config": config}, tmp))
    _write_curves(curve, out_dir, weights_name.removesuffix(".pt"))
    summary = {"encoder": cfg.encoder, "train_samples": len(train_samples), "val_samples": len(val_samples),
               "val_phrasing_samples": len(val_phrasings), "gate_samples": len(gate_samples),
               "best_val_clear_acc": best,
               "val_clear_acc_training_phrasings": max(c["val_clear_acc"] for c in curve),
               "t_target": t_target, "t_target_nll": t_nll, "gate_rates_val": gate_rates, "t_dest": t_dest,
               "seconds": round(time.perf_counter() - t0, 1), "weights": str(out_dir / weights_name),
               "parameters": sum(p.numel() for p in net.parameters()),
               "novel_word_samples": len(novel.renamed) if novel else 0, **crop_summary}
    return summary


def pretrain_crops(net: GroundingNet, train_scenes, val_scenes, entries: list[str], cfg: TrainConfig, log) -> dict:
    """Pretrain the crop encoder on the training scenes' object kinds, give it (frozen) to the net; its kind
    accuracy on the validation scenes' objects goes into the summary."""
    t0 = time.perf_counter()
    objects = [o for s in train_scenes for o in s.objects]
    kinds = pretrain(objects, [n for s in train_scenes for n in s.names], entries, cfg.crop_epochs, cfg.seed,
                     log=log)
    net.use_crops(kinds.encoder)
    val_objects = [o for s in val_scenes for o in s.objects]
    named = predict_kinds(kinds, val_objects, entries) if val_objects else []
    truth = [n for s in val_scenes for n in s.names]
    right = sum(a == b for a, b in zip(named, truth, strict=True))
    return {"crop_pretrain_objects": len(objects), "crop_pretrain_s": round(time.perf_counter() - t0, 1),
            "crop_val_objects": len(truth), "crop_val_kind_acc": round(right / max(len(truth), 1), 4)}


def _write_curves(curve: list[dict], out_dir: Path, stem: str) -> None:
    with (out_dir / f"{stem}_curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    ax[0].plot([c["epoch"] for c in curve], [c["train_loss"] for c in curve])
    ax[0].set(xlabel="epoch", ylabel="training loss")
    ax[1].plot([c["epoch"] for c in curve], [c["val_clear_acc"] for c in curve], label="training phrasings")
    ax[1].plot([c["epoch"] for c in curve], [c["val_phrasings_clear_acc"] for c in curve], label="validation phrasings")
    ax[1].set(xlabel="epoch", ylabel="validation accuracy (clear)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}_curves.png", dpi=80)
    plt.close(fig)
