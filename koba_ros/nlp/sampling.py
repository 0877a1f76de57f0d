"""Text from a trained LM: `koba lm sample --checkpoint DIR --prompt TEXT`.

Autoregressive sampling, one token at a time, as in nanoGPT: the model reads the last `max_len` tokens, the last
position's logits are divided by the temperature, all but the `top_k` largest (and any tied with the k-th) are
dropped, then all outside the nucleus of probability `top_p`, and the next token is drawn from the softmax
(temperature 0: the argmax). Ids the tokenizer cannot decode (the model's vocabulary is padded, e.g. to 50304) and
its padding id are never drawn; the end-of-text id ends the sample, as does any other id the model's files list
as an eos (tokenizer.stop_ids: Llama-3-Instruct's end of turn), as transformers' generate() stops at any of them.

With the KV cache (kv_cache.py, the default) the prompt goes through the model once and every new token alone after
it, attending over the stored keys and values. That is the same computation as running the whole context again, as
long as the context fits in `max_len`. Beyond it the window slides: every position changes, nothing stored is valid,
and each further token costs a full pass over the last `max_len` tokens, as without the cache. So cached and uncached
sampling give the same tokens (tested), and the cache only changes the cost: per token, one token's work instead of
the whole context's (bench/lm_sample.py).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from pathlib import Path

import torch

from koba_ros.errors import KobaError
from koba_ros.nlp.kv_cache import KVCache
from koba_ros.nlp.model import TransformerLM
from koba_ros.nlp.tokenizer import check_ids_fit, stop_ids
from koba_ros.nlp.trained import load_trained


def next_token(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0,
               generator: torch.Generator | None = None) -> int:
    """One token from a vector of logits: the argmax at temperature 0; else a draw from softmax(logits / T) over the
    top_k most likely tokens (0: all) and, within them, the nucleus: the fewest most likely tokens whose probability
    adds up to at least top_p (Holtzman et al., ICLR 2020, "The Curious Case of Neural Text Degeneration": nucleus
    sampling; 1.0: all). The most likely token is always kept. A token whose logit equals the k-th largest is kept
    too, as nanoGPT and transformers' TopKLogitsWarper keep it: with ties (common in bf16) top_k 1 draws among the
    tied tokens; temperature 0 is the argmax."""
    if bool(torch.isnan(logits).any()) or bool(torch.isposinf(logits).any()):  # -inf marks a banned id: fine
        raise KobaError("the model's next-token scores are NaN or infinite: its weights are broken")
    if bool(torch.isneginf(logits).all()):
        raise KobaError("sample: no token can be drawn: every id is banned or disallowed")
    check_temperature(temperature)
    logits = logits.float()  # in float32 whatever the model's dtype: the temperature's bound is float32's
    if temperature == 0 or logits.new_tensor(temperature) == 0:  # one too small for the logits' dtype (1e-46 in
        return int(logits.argmax())  # float32) would divide 0 by 0 below; it picks the most likely token anyway
    # Shifted first (softmax is unchanged): values <= 0, the largest 0, so a tiny temperature gives -inf, never inf.
    logits = (logits - logits.max()) / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p < 1.0:
        probs, order = torch.softmax(logits, dim=-1).sort(descending=True)
        before = probs.cumsum(0) - probs  # probability of the tokens ranked above each one
        logits = logits.masked_fill(torch.zeros_like(logits, dtype=torch.bool).scatter(0, order, before >= top_p),
                                    -math.inf)
    return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))


def check_temperature(temperature: float) -> None:
    """A temperature above float32's largest number becomes inf in the division: -inf / inf is NaN."""
    if not 0 <= temperature <= torch.finfo(torch.float32).max:
        raise KobaError(f"sample: temperature must be a number from 0 to {torch.finfo(torch.float32).max:.3g} "
                        f"(float32's largest), got {temperature}")


def check_sampling_args(max_new_tokens: int, temperature: float, top_k: int, top_p: float) -> None:
    """One-line errors for arguments no sample can be drawn with: `generate` checks them for library callers, and
    `sample` before it loads the checkpoint or writes anything (a refusal must not follow a printed prompt)."""
    check_temperature(temperature)
    if max_new_tokens < 0 or top_k < 0:
        raise KobaError("sample: the number of tokens and top-k must be >= 0")
    if not 0.0 < top_p <= 1.0:
        raise KobaError(f"sample: top-p must be in (0, 1], got {top_p}")


@torch.no_grad()
def generate(model: TransformerLM, ids: list[int], max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0, allowed: int | None = None, banned: tuple[int, ...] = (),
             stop_id: int | Collection[int] | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True, top_p: float = 1.0,
             on_token: Callable[[list[int]], None] | None = None) -> list[int]:
    """The new token ids after the prompt `ids`. `allowed`: only ids below it may be drawn; `banned`: never drawn;
    `stop_id`: an id, or several, whose drawing ends the sample (it is not returned); `use_cache`: a KV cache (module
    doc); temperature, top_k, top_p: see `next_token`; `on_token(new_ids)` after every token drawn (streaming)."""
    if not ids:
        raise KobaError("sample: the prompt is empty")
    check_sampling_args(max_new_tokens, temperature, top_k, top_p)
    stops = {stop_id} if isinstance(stop_id, int) else set(stop_id or ())
    vocab = model.config.vocab_size
    for what, wrong in (("prompt", [i for i in ids if not 0 <= i < vocab]),
                        ("banned", [i for i in banned if not 0 <= i < vocab])):
        if wrong:  # the embedding would raise a bare IndexError; a negative banned id would ban one from the end
            raise KobaError(f"sample: {what} ids {wrong[:5]} are outside the model's vocabulary of {vocab}")
    # Sampling in the middle of training must not leave dropout off: every module's mode comes back afterwards,
    # also when a draw raises (each module's own, so a caller's frozen eval-mode parts stay in eval).
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        device = next(model.parameters()).device
        max_len = model.config.max_len
        context = torch.tensor([ids], dtype=torch.long, device=device)
        # Room for what this call can feed (the prompt and all but the last token drawn), not for max_len: an imported
        # Llama 3.2 has max_len 131072, whose full cache would take 8.6 GB at fp32 for one prompt.
        capacity = min(max_len, len(ids) + max_new_tokens)
        cache = KVCache(model.config.n_layers, capacity, model.config.layer_windows) \
            if use_cache and context.shape[1] < max_len else None
        new: list[int] = []
        for _ in range(max_new_tokens):
            if cache is not None and cache.length:  # the context is the cached tokens and the one drawn last
                logits = model(context[:, -1:], cache=cache)[0][0, -1].float()
            else:  # first pass (a cache's prefill), or the window has slid past max_len
                logits = model(context[:, -max_len:], cache=cache)[0][0, -1].float()
            if allowed is not None:
                logits[allowed:] = -math.inf
            for i in banned:
                logits[i] = -math.inf
            token = next_token(logits, temperature, top_k, top_p, generator)
            if token in stops:
                break
            new.append(token)
            if on_token is not None:
                on_token(new)
            context = torch.cat([context, torch.tensor([[token]], device=device)], dim=1)
            if cache is not None and context.shape[1] > max_len:
                cache = None  # the window slides from here: every position moves, nothing stored holds
        return new
    finally:
        for module, training in modes:
            module.training = training


class TextStreamer:
    """Turns the growing list of new ids into text pieces as they become printable: a piece is held back while the
    decoded text ends in U+FFFD, i.e. in the middle of a multi-byte character (a byte tokenizer's 'é' is two ids)."""

    def __init__(self, decode: Callable[[list[int]], str], write: Callable[[str], None]):
        self.decode, self.write, self.shown = decode, write, 0

    def __call__(self, new_ids: list[int]) -> None:
        text = self.decode(new_ids)
        if not text.endswith("\ufffd"):
            self.flush(text)

    def flush(self, text: str) -> None:
        if len(text) > self.shown:
            self.write(text[self.shown:])
            self.shown = len(text)


def sample(checkpoint: str | Path, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int = 50,
           seed: int = 0, device: str = "cpu", use_cache: bool = True, top_p: float = 1.0,
           write: Callable[[str], None] | None = None) -> dict:
    """`write`: once the model is loaded, called with the prompt, then with each printable piece of the continuation
    as it is drawn (see TextStreamer)."""
    check_sampling_args(max_new_tokens, temperature, top_k, top_p)  # before the load and before `write(prompt)`
    trained = load_trained(checkpoint, device)
    model, tokenizer = trained.model, trained.tokenizer
    # An imported model whose tokenizer starts every text with bos (a Llama's) was trained that way: do as it does.
    ids = tokenizer.encode(prompt, bos=getattr(tokenizer, "prompt_bos", False))
    rows = model.config.vocab_size  # an hf tokenizer may have tokens added past them (tokenizer.check_ids_fit)
    check_ids_fit(ids, rows, tokenizer, "sample: the prompt")  # before `write(prompt)`
    stops = stop_ids(tokenizer)  # the eos, and an hf model's other eos ids (an instruct model's end of turn)
    generator = torch.Generator(device=device).manual_seed(seed)
    # The continuation is read after the prompt, not alone: a SentencePiece-style decoder drops the word-start space
    # of a text's first piece, so decoding the new ids alone glues the first new word to the prompt's last.
    prompt_text = tokenizer.decode(ids)

    def decode(new_ids: list[int]) -> str:
        return tokenizer.decode(ids + list(new_ids))[len(prompt_text):]

    streamer = None
    if write is not None:
        write(prompt)
        streamer = TextStreamer(decode, write)
    t0 = time.perf_counter()
    new = generate(model, ids, max_new_tokens, temperature, top_k, allowed=min(tokenizer.vocab_size, rows),
                   banned=tuple(i for i in (getattr(tokenizer, "pad_id", None), getattr(tokenizer, "bos_id", None))
                                if i is not None and i not in stops and i < rows),
                   stop_id=stops, generator=generator, use_cache=use_cache, top_p=top_p, on_token=streamer)
    seconds = time.perf_counter() - t0
    text = decode(new)
    if streamer is not None:
        streamer.flush(text)  # whatever was held back at the end
    return {"prompt": prompt, "text": text, "new_tokens": len(new),
            "stopped_at_end_of_text": len(new) < max_new_tokens, "tokens_per_s": round(len(new) / max(seconds, 1e-9)),
            "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed, "kv_cache": use_cache}
