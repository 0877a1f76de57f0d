"""koba train grounding | crop-kinds: train the instruction-grounding model, or the crop CNN that names an object's
kind from its crop alone (the dialogue's second opinion), on rendered, perceived scenes."""
from koba_ros.commands.arg_types import random_seed, thread_count

HELP = ("Train a model (grounding: instruction + perceived objects -> target and box; crop-kinds: object crop -> "
        "catalog entry).")

# The grounding model's own options with their defaults: `koba train crop-kinds` refuses any given another value.
GROUNDING_ONLY = {"encoder": "minilm", "per_scene": 30, "epochs": 12, "token_drop": 0.0, "crops": False}
CROP_EPOCHS = 20   # --crop-epochs when not given (None then, so a given value is told from the default)


def add_arguments(p):
    p.add_argument("what", choices=["grounding", "crop-kinds"], help="Which model to train.")
    p.add_argument("--encoder", choices=["minilm", "byte"], default=GROUNDING_ONLY["encoder"],
                   help="Text encoder: pretrained MiniLM (frozen) or our byte-level transformer (default minilm).")
    p.add_argument("--scenes", type=int, default=600, help="Rendered training scenes (default 600; cached).")
    p.add_argument("--per-scene", type=int, default=GROUNDING_ONLY["per_scene"],
                   help="Instructions generated per scene (default 30).")
    p.add_argument("--epochs", type=int, default=GROUNDING_ONLY["epochs"], help="Epochs (default 12).")
    p.add_argument("--seed", type=random_seed, default=0, help="Random seed (default 0).")
    p.add_argument("--threads", type=thread_count, default=1, help="CPU threads (default 1: on a busy 2-core machine "
                   "more threads made training far slower; at most 4 per CPU).")
    p.add_argument("--token-drop", type=float, default=GROUNDING_ONLY["token_drop"],
                   help="Word dropout on the text encoder's token states while training (default 0: off).")
    p.add_argument("--crops", action="store_true",
                   help="Add CNN features of each object's crop (pretrained on the objects' kinds, then frozen).")
    p.add_argument("--crop-epochs", type=int, default=None,
                   help=f"Epochs of the crop encoder's pretraining (with --crops), and of crop-kinds "
                   f"(default {CROP_EPOCHS}).")
    p.add_argument("--out", default="", help="Output folder (default models/grounding; curves go there too).")
    p.add_argument("--force", action="store_true",
                   help="Replace a model file already in --out (the default folder holds the committed models).")
    p.add_argument("--json", action="store_true", help="Print a JSON summary.")


def run(args):
    import pickle
    from pathlib import Path

    from koba_ros.cli import print_json
    from koba_ros.errors import KobaError, reason
    from koba_ros.grounding.scenes import cache_dir
    from koba_ros.grounding.training import TrainConfig, train
    from koba_ros.paths import models_dir

    if args.what == "grounding" and args.crop_epochs is not None and not args.crops:
        # refused rather than silently ignored: without --crops there is no crop encoder to pretrain
        raise KobaError("--crop-epochs is for the crop encoder of --crops (or for crop-kinds); add --crops or drop it")
    if args.crop_epochs is None:
        args.crop_epochs = CROP_EPOCHS
    for name in ("scenes", "per_scene", "epochs", "threads", "crop_epochs"):
        if getattr(args, name) < 1:
            raise KobaError(f"--{name.replace('_', '-')} must be at least 1")
    if args.scenes < 4:
        raise KobaError("--scenes must be at least 4 (some are held out for validation)")
    if not 0 <= args.token_drop < 1:
        raise KobaError("--token-drop must be in [0, 1)")
    if args.what == "crop-kinds":  # options of the grounding model only: refused rather than silently ignored
        given = [f"--{name.replace('_', '-')}" for name, default in GROUNDING_ONLY.items()
                 if getattr(args, name) != default]
        if given:
            raise KobaError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for `koba train grounding`; "
                            "crop-kinds takes --scenes, --crop-epochs, --seed, --threads, --out, --force, --json")
    out = Path(args.out) if args.out else models_dir() / "grounding"
    out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails now, not after rendering and training
    name = "crop_kinds.pt" if args.what == "crop-kinds" else \
        "grounding.pt" if args.encoder == "minilm" else f"grounding_{args.encoder}.pt"
    if (out / name).exists() and not args.force:  # never an earlier run (or a committed model) trained over
        raise KobaError(f"{out / name} already exists; give another --out, or --force to replace it")
    if args.what == "crop-kinds":
        return _train_crop_kinds(args, out)
    cfg = TrainConfig(encoder=args.encoder, scenes=args.scenes, per_scene=args.per_scene, epochs=args.epochs,
                      seed=args.seed, threads=args.threads,
                      token_drop=args.token_drop, crops=args.crops, crop_epochs=args.crop_epochs)
    try:
        summary = train(cfg, out, weights_name=name, progress=not args.json,
                        log=(lambda *_: None) if args.json else print)
    except (pickle.UnpicklingError, EOFError) as exc:  # the scene cache (written atomically) was damaged outside
        raise KobaError(f"a scene cache file in {cache_dir()} is damaged ({reason(exc)}); delete scenes_*.pkl "
                        "there and run again") from None
    if args.json:
        print_json(summary)
    else:
        print(f"saved {summary['weights']} (val clear accuracy {summary['best_val_clear_acc']:.3f}, "
              f"{summary['seconds']:.0f} s); curves in {out}")


def _train_crop_kinds(args, out):
    import torch

    from koba_ros.cli import print_json
    from koba_ros.grounding.crop_kinds import train_crop_kinds

    torch.set_num_threads(args.threads)
    summary = train_crop_kinds(args.scenes, args.crop_epochs, args.seed, out / "crop_kinds.pt",
                               log=(lambda *_: None) if args.json else print)
    if args.json:
        print_json(summary)
    else:
        print(f"saved {summary['weights']} (kind accuracy on {summary['val_objects']} validation objects "
              f"{summary['val_kind_acc']:.3f}, {summary['seconds']:.0f} s)")
