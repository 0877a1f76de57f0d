"""`koba lm tokenizer`: learn a byte-level BPE vocabulary from a dataset, for `tokenizer: bpe`.

GPT-2's BPE (`tokenizer: gpt2`) was learned on web text; a robot's transcripts or a code corpus compress better with
a vocabulary learned on them, and a small model spends fewer parameters on a small vocabulary. This learns one
with the `tokenizers` package's byte-level BPE trainer (GPT-2's scheme: the 256 byte symbols, then the most
frequent adjacent pair merged, again and again, until the vocabulary has `vocab_size` entries; Sennrich et al.
2016 over bytes, as Radford et al. 2019). `<|endoftext|>` is the one special token, so a collection's documents
get their separator and `document_mask` works. The files are GPT-2's format (vocab.json + merges.txt), read by
tokenizer.BPETokenizer.

The command reports the compression on the training data, in bytes per token, against the byte tokenizer (1.0 by
definition) and GPT-2's BPE where its ranks are installed.
"""
from __future__ import annotations

from pathlib import Path

from koba_ros.errors import KobaError
from koba_ros.nlp.data import iter_documents
from koba_ros.nlp.prepared import text_inputs
from koba_ros.nlp.tokenizer import build_tokenizer, whisper_gpt2_ranks

EOS = "<|endoftext|>"
MIN_VOCAB = 257  # the 256 byte symbols and <|endoftext|>


def train_bpe(data: str, vocab_size: int, out: str | Path, min_frequency: int = 2) -> dict:
    out = Path(out)
    if not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB or vocab_size > 1 << 20:
        raise KobaError(f"tokenizer: vocab_size must be an integer from {MIN_VOCAB} (256 bytes + {EOS}) to "
                        f"{1 << 20}, got {vocab_size!r}")
    if min_frequency < 1:
        raise KobaError(f"tokenizer: min_frequency must be >= 1, got {min_frequency}")
    if out.exists() and any(out.iterdir()):
        raise KobaError(f"tokenizer: {out} is not empty; give a new folder")
    text_inputs(data, "tokenizer")  # a token file's ids are not text (as prepare refuses it)
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()  # the files stream through it one at a time (iter_documents): any corpus size
    bpe.train_from_iterator(iter_documents(data), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=[EOS], show_progress=False)
    out.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(out))
    vocab, merges = out / "vocab.json", out / "merges.txt"
    tokenizer = build_tokenizer("bpe", str(vocab), str(merges))
    n_bytes = n_tokens = gpt2_tokens = 0
    gpt2 = build_tokenizer("gpt2") if whisper_gpt2_ranks() is not None else None
    for text in iter_documents(data):
        n_bytes += len(text.encode("utf-8"))
        n_tokens += len(tokenizer.encode(text))
        gpt2_tokens += len(gpt2.encode(text)) if gpt2 is not None else 0
    result = {"out": str(out), "vocab": str(vocab), "merges": str(merges), "vocab_size": tokenizer.vocab_size,
              "eos_id": tokenizer.eos_id, "data": data, "bytes": n_bytes, "tokens": n_tokens,
              "bytes_per_token": round(n_bytes / n_tokens, 3)}
    if gpt2 is not None:
        result["gpt2_bytes_per_token"] = round(n_bytes / gpt2_tokens, 3)
    return result
