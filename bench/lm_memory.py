"""Peak CPU memory of one training step: the chunked linear + cross-entropy (loss_chunk) and activation
checkpointing (the blocks recomputed in backward), each against the plain step, in fresh processes.

.venv/bin/python bench/lm_memory.py [--chunks 0,256,64] [--recompute 0] [--layers 2] [--precisions fp32,bf16_master]
  -> one JSON object: per precision, loss_chunk and recompute, the process's resident-memory high-water mark during
     one forward + backward above its resident memory just before it, the ratio of that to the plain step
     (loss_chunk 0, no recompute), and the same high-water mark for the optimizer step that follows (which neither
     option touches: it should not change).
.venv/bin/python bench/lm_memory.py --chunks 0 --recompute 0,1 --layers 12   # activation checkpointing alone

Each measurement runs in a fresh subprocess (one thread), so no variant inherits another's allocator state. torch's
CPU allocations are not seen by tracemalloc; the kernel's VmHWM is, and writing 5 to /proc/self/clear_refs resets it
to the current resident size right before each measured phase. A warm-up step first allocates the optimizer state.
The model is GPT-2-small wide (d 768, V 50257, batch 4 x 256, tied embeddings, as the bench), --layers deep: the
logits dominate at 2 layers (loss_chunk's case), the blocks' activations at 12 (recompute's).
This measures memory, not speed: CPU step times say nothing about the GPU.
"""
import argparse
import json
import os
import subprocess
import sys

from resident_memory import peak_above_now_mb, status_kb

SHAPE = dict(vocab_size=50257, d_model=768, n_heads=12, seq=256, batch=4)


def measure(loss_chunk: int, precision: str, recompute: bool, layers: int) -> dict:
    """One step's peak resident memory above the memory before it (in this process)."""
    import torch

    from koba_ros.nlp.config import TransformerConfig
    from koba_ros.nlp.master_weights import MasterWeightAdamW
    from koba_ros.nlp.model import TransformerLM

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=SHAPE["vocab_size"], d_model=SHAPE["d_model"],
                                            n_layers=layers, n_heads=SHAPE["n_heads"],
                                            max_len=SHAPE["seq"], tie_embeddings=True, bias=False, pad_id=0,
                                            loss_chunk=loss_chunk))
    model.checkpoint_blocks = recompute
    if precision == "bf16_master":  # the bench's ours_bf16_master recipe: bf16 weights, fp32 master AdamW
        opt = MasterWeightAdamW(model.parameters(), lr=1e-4, dtype=torch.bfloat16)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, SHAPE["vocab_size"], (SHAPE["batch"], SHAPE["seq"] + 1))

    def loss_and_gradients() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16_master"):
            loss = model(ids[:, :-1], ids[:, 1:])[1]
        loss.backward()
        return loss.item()

    loss_and_gradients()  # a warm-up step allocates AdamW's moments: the measured step is a steady-state one
    opt.step()
    opt.zero_grad(set_to_none=True)
    loss, forward_backward_mb = peak_above_now_mb(loss_and_gradients)
    _, optimizer_mb = peak_above_now_mb(opt.step)  # the same for every loss_chunk: a check on the measurement
    return {"loss_chunk": loss_chunk, "recompute": recompute, "layers": layers, "precision": precision,
            "forward_backward_peak_mb": forward_backward_mb,
            "optimizer_step_peak_mb": optimizer_mb, "process_peak_mb": round(status_kb("VmHWM") / 1024, 1),
            "loss": round(loss, 4), "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", default="0,256,64", help="loss_chunk values; 0 (the baseline) is always run")
    parser.add_argument("--recompute", default="0", help="0,1: also with activation checkpointing")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--precisions", default="fp32", help="fp32,bf16_master (bf16 GEMMs are slow on a CPU: minutes)")
    parser.add_argument("--child", nargs=4, metavar=("LOSS_CHUNK", "PRECISION", "RECOMPUTE", "LAYERS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        chunk, precision, recompute, layers = args.child
        print(json.dumps(measure(int(chunk), precision, recompute == "1", int(layers))))
        return
    chunks = sorted({0, *(int(c) for c in args.chunks.split(","))})
    recomputes = sorted({0, *(int(r) for r in args.recompute.split(","))})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tokens = SHAPE["batch"] * SHAPE["seq"]
    result = {"shape": {**SHAPE, "n_layers": args.layers}, "tokens_per_step": tokens,
              "logits_mb_fp32": round(tokens * SHAPE["vocab_size"] * 4 / 2**20, 1),
              "measure": "VmHWM during forward+backward (after a warm-up step), then during the optimizer step, "
                         "minus VmRSS before each; a fresh process per run",
              "runs": {}}
    for precision in args.precisions.split(","):
        runs = []
        for recompute in recomputes:
            for chunk in chunks:
                out = subprocess.run([sys.executable, __file__, "--child", str(chunk), precision, str(recompute),
                                      str(args.layers)], env=env, capture_output=True, text=True, check=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
        base = runs[0]["forward_backward_peak_mb"]  # loss_chunk 0, no recompute
        for run in runs:
            run["forward_backward_ratio_to_plain"] = round(run["forward_backward_peak_mb"] / base, 3)
        result["runs"][precision] = runs
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
