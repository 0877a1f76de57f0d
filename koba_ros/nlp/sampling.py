"""Text from a trained LM: `koba lm sample --checkpoint DIR --prompt TEXT`.

Autoregressive sampling, one token at a time, as in nanoGPT: the last `max_len` tokens go through the model, the last
position's logits are divided by the temperature, all but the `top_k` largest are dropped, and the next token is drawn
from the softmax (temperature 0: the argmax). Without a KV cache each new token costs a full forward pass over the
context, which is fine for the short samples this is for (checking what a run learned), not for serving.
Ids the tokenizer cannot decode (the model's vocabulary is padded, e.g. to 50304) and its padding id are never drawn;
the end-of-text id ends the sample.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import check_compatible, load_checkpoint
from koba_ros.nlp.config import TransformerConfig
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.tokenizer import build_tokenizer


@torch.no_grad()
def generate(model: TransformerLM, ids: list[int], max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0, allowed: int | None = None, banned: tuple[int, ...] = (), stop_id: int | None = None,
             generator: torch.Generator | None = None) -> list[int]:
    """The new token ids after the prompt `ids`. `allowed`: only ids below it may be drawn; `banned`: never drawn;
    `stop_id`: drawing it ends the sample (it is not returned)."""
    if not ids:
        raise KobaError("sample: the prompt is empty")
    if not temperature >= 0 or not math.isfinite(temperature):
        raise KobaError(f"sample: temperature must be a number >= 0, got {temperature}")
    if max_new_tokens < 0 or top_k < 0:
        raise KobaError("sample: the number of tokens and top-k must be >= 0")
    model.eval()
    device = next(model.parameters()).device
    context = torch.tensor([ids], dtype=torch.long, device=device)
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(context[:, -model.config.max_len:])[0][0, -1].float()
        if allowed is not None:
            logits[allowed:] = -math.inf
        for i in banned:
            logits[i] = -math.inf
        if temperature == 0:
            token = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits[logits < kth] = -math.inf
            token = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))
        if token == stop_id:
            break
        new.append(token)
        context = torch.cat([context, torch.tensor([[token]], device=device)], dim=1)
    return new


def load_for_sampling(checkpoint: str | Path, device: str = "cpu"):
    """(model, tokenizer) from a `koba lm train` checkpoint folder (or its run folder): the model config and the
    tokenizer come from the checkpoint's recorded training config."""
    path = Path(checkpoint)
    if (path / "checkpoint").is_dir():
        path = path / "checkpoint"
    model_state, _, meta = load_checkpoint(path)
    config = meta.get("config") or {}
    if not isinstance(config.get("model"), dict):
        raise KobaError(f"checkpoint {path} has no training config (state.json); was it written by koba lm train?")
    model = TransformerLM(TransformerConfig.from_dict(config["model"]))
    check_compatible(model, model_state, path)
    model.load_state_dict(model_state)
    tokenizer = build_tokenizer(config.get("tokenizer", "byte"), config.get("vocab", ""), config.get("merges", ""))
    return model.to(device), tokenizer


def sample(checkpoint: str | Path, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int = 50,
           seed: int = 0, device: str = "cpu") -> dict:
    model, tokenizer = load_for_sampling(checkpoint, device)
    ids = tokenizer.encode(prompt)
    pad, eos = getattr(tokenizer, "pad_id", None), getattr(tokenizer, "eos_id", None)
    generator = torch.Generator(device=device).manual_seed(seed)
    t0 = time.perf_counter()
    new = generate(model, ids, max_new_tokens, temperature, top_k, allowed=tokenizer.vocab_size,
                   banned=tuple(i for i in (pad, getattr(tokenizer, "bos_id", None)) if i is not None and i != eos),
                   stop_id=eos, generator=generator)
    seconds = time.perf_counter() - t0
    return {"prompt": prompt, "text": tokenizer.decode(new), "new_tokens": len(new),
            "stopped_at_end_of_text": len(new) < max_new_tokens, "tokens_per_s": round(len(new) / max(seconds, 1e-9)),
            "temperature": temperature, "top_k": top_k, "seed": seed}
