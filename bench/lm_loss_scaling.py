"""Loss scaling for fp16 (Micikevicius et al. 2018, §3.2), measured on the library's LM in one process.

    .venv/bin/python bench/lm_loss_scaling.py [--seeds 0,1,2] [--pretrain-steps 300] [--train-steps 300]

Part 1, the gradients (the paper's Fig. 3 asks how many activation gradients fall below fp16's range). A byte-level
LM (d 128, 4 layers, 128-token windows of the built-in corpus) is read at its initialisation and after
`--pretrain-steps` fp32 steps. On one held-out batch of B windows (B = 16 and 64, i.e. the loss averaged over 2048 and
8192 tokens) it prints:
  - the fp32 gradient of the loss with respect to the logits: the share of entries under 2^-24 (fp16 flushes them to
    zero), under 2^-14 (fp16 subnormals, a few bits of precision), and the share still under 2^-24 once scaled by
    S = 2^16, or over fp16's largest value 65504 after scaling;
  - the weight gradients of an fp16 autocast backward, unscaled (loss_scale 1) and with S = 2^16 (the dynamic
    scaler's start), against the fp32 backward: relative L2 error and the share of entries that are exactly zero in
    fp16 but not in fp32, over all weights and for the token embedding, which is also the output layer.

Part 2, training. For each seed: `koba lm train` on a smaller LM (d 64, 2 layers, 16 windows of 128 bytes, 300 steps,
lr 3e-3) in fp32, fp16 with loss_scale 1 (no scaling), and fp16 with dynamic scaling; final validation loss (the same
held-out batches for all three) and the steps the scaler skipped.

fp16 on a CPU is emulated (about 10x the fp32 step time here), so sizes are small. Prints one JSON object.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from koba_ros.nlp.checkpoint import load_checkpoint
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.data import BUILTIN, batch_generator
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.prepared import token_stream
from koba_ros.nlp.tokenizer import build_tokenizer
from koba_ros.nlp.trainer import TrainConfig, train

FP16_MIN_SUBNORMAL, FP16_MIN_NORMAL, FP16_MAX = 2.0 ** -24, 2.0 ** -14, 65504.0
SCALE = 2.0 ** 16
PROBE_MODEL = dict(d_model=128, n_layers=4, n_heads=4, max_len=128)
TRAIN_MODEL = dict(d_model=64, n_layers=2, n_heads=2, max_len=128)


def gradients(model, x, y, dtype=None, scale=1.0):
    """(weight gradients by name, dL/dlogits) of the mean loss, the backward in autocast `dtype` (None: fp32)."""
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        logits, _ = model(x)
        logits.retain_grad()
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    (loss * scale).backward()
    grads = {n: p.grad.detach().float() / scale for n, p in model.named_parameters() if p.grad is not None}
    return grads, logits.grad.detach().float() / scale


def compare(reference: dict, other: dict, names) -> dict:
    ref = torch.cat([reference[n].flatten() for n in names])
    got = torch.cat([other[n].flatten() for n in names])
    return {"relative_l2_error": round(((got - ref).norm() / ref.norm()).item(), 5),
            "zero_in_fp16_not_fp32": round(((got == 0) & (ref != 0)).float().mean().item(), 5)}


def probe(model, stream, batch: int) -> dict:
    x, y = stream.batch(batch, batch_generator(12345, 0, 0))
    fp32, dlogits = gradients(model, x, y)
    g = dlogits.abs().flatten()
    names = [n for n in fp32 if n.endswith("weight") and fp32[n].dim() >= 2]
    embedding = [n for n in names if "embed" in n or "wte" in n or "tok" in n]
    out = {"tokens": x.numel(),
           "dlogits_share_under_2^-24": round((g < FP16_MIN_SUBNORMAL).float().mean().item(), 4),
           "dlogits_share_under_2^-14": round((g < FP16_MIN_NORMAL).float().mean().item(), 4),
           "dlogits_share_under_2^-24_scaled": round((g * SCALE < FP16_MIN_SUBNORMAL).float().mean().item(), 4),
           "dlogits_share_over_65504_scaled": round((g * SCALE > FP16_MAX).float().mean().item(), 6)}
    for name, scale in (("fp16_unscaled", 1.0), ("fp16_scaled_2^16", SCALE)):
        grads, _ = gradients(model, x, y, torch.float16, scale)
        out[name] = {"all_weights": compare(fp32, grads, names),
                     "embedding": compare(fp32, grads, embedding) if embedding else None}
    return out


def train_arm(tmp: Path, seed: int, name: str, steps: int, **precision) -> dict:
    config = TrainConfig.from_dict(dict(model=TRAIN_MODEL, seq_len=128, batch_size=16, steps=steps, lr=3e-3,
                                        warmup=30, eval_every=steps, eval_batches=16, ckpt_every=steps, seed=seed,
                                        device="cpu", out=str(tmp / f"{name}{seed}"), progress=False,
                                        tensorboard=False, **precision))
    t0 = time.perf_counter()
    result = train(config)
    return {"val_loss": result["val_loss"], "loss": result["loss"], "skipped_steps": result["skipped_steps"],
            "loss_scale": result["loss_scale"], "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--skip-training", action="store_true", help="part 1 only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    stream = token_stream(BUILTIN, build_tokenizer("byte"), "byte", 128).split(0.05)[1]  # held out by training too
    report = {"probe_model": PROBE_MODEL, "train_model": TRAIN_MODEL, "seeds": seeds, "gradients": {}, "training": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = TrainConfig.from_dict(dict(model=PROBE_MODEL, seq_len=128, batch_size=16, lr=3e-3, warmup=30,
                                            steps=args.pretrain_steps, eval_every=args.pretrain_steps,
                                            ckpt_every=args.pretrain_steps, seed=seeds[0], device="cpu",
                                            precision="fp32", out=str(tmp / "probe"), progress=False,
                                            tensorboard=False))
        torch.manual_seed(seeds[0])
        model = TransformerLM(TransformerConfig.from_dict(PROBE_MODEL))
        for batch in (16, 64):
            report["gradients"][f"init_batch{batch}"] = probe(model, stream, batch)
        train(config)
        model.load_state_dict(load_checkpoint(tmp / "probe" / "checkpoint")[0])
        for batch in (16, 64):
            report["gradients"][f"step{args.pretrain_steps}_batch{batch}"] = probe(model, stream, batch)
        # progress on stderr, so stdout is the one JSON object
        print(json.dumps(report["gradients"]), file=sys.stderr, flush=True)
        if not args.skip_training:
            for seed in seeds:
                report["training"][seed] = {
                    "fp32": train_arm(tmp, seed, "fp32", args.train_steps, precision="fp32"),
                    "fp16_no_scaling": train_arm(tmp, seed, "none", args.train_steps, precision="fp16",
                                                 loss_scale=1.0),
                    "fp16_dynamic": train_arm(tmp, seed, "dynamic", args.train_steps, precision="fp16")}
                # progress on stderr, so stdout is the one JSON object
                print(json.dumps({seed: report["training"][seed]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
