"""The run's tokenizer as Hugging Face GPT-2 tokenizer files, written by `koba lm export` beside the model, so
`AutoTokenizer.from_pretrained(DIR)` and `pipeline("text-generation", model=DIR)` work on the exported folder.

* `tokenizer: bpe` (a `koba lm tokenizer` vocabulary, or any vocab.json + merges.txt) is already GPT-2's format: the
  two files are copied.
* `tokenizer: gpt2` is GPT-2's BPE read from tiktoken ranks (a byte string per rank, no merge list). The merge list
  is recovered the way byte-level BPE made the ranks: the token of rank r was made by merging two tokens of lower
  rank, and running BPE on its bytes with the ranks below r stops at exactly those two. vocab.json spells each
  token's bytes with GPT-2's byte-to-unicode table (Radford et al. 2019, the released encoder.py: printable bytes
  as themselves, the others shifted past 255).
* `tokenizer: byte` is byte-level BPE with no merges: every byte stays its own symbol, so a vocab.json that gives
  byte b's GPT-2 character the id b, and an empty merge list, make GPT-2's tokenizer produce our ids 0-255. Our
  pad, bos and eos (256-258) follow as special tokens. `koba lm import` recognises such a folder as `byte`.

Tested: the written tokenizer gives our tokenizer's ids on text with spaces, newlines, accents, CJK and an emoji.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from koba_ros.errors import KobaError
from koba_ros.nlp.checkpoint import hf_tokenizer_files, write_tokenizer_files
from koba_ros.nlp.tokenizer import RECORDED_EOS_IDS, tokenizer_config_object

EOS = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table, shift = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def _merge_parts(token: bytes, ranks: dict[bytes, int], limit: int) -> list[bytes]:
    """BPE on `token`'s bytes using only ranks below `limit`: the lowest-ranked adjacent pair merged first."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < limit and (best is None or rank < best):
                best, at = rank, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return parts


def tiktoken_to_gpt2_files(ranks: dict[bytes, int], out: Path) -> None:
    """vocab.json + merges.txt of the byte-level BPE whose merge ranks are `ranks` (tiktoken's format)."""
    table = bytes_to_unicode()

    def spell(token: bytes) -> str:
        return "".join(table[b] for b in token)

    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = _merge_parts(token, ranks, rank)
        if len(parts) != 2:
            raise KobaError(f"export: token {token!r} (rank {rank}) is not a merge of two lower-ranked tokens")
        merges.append(f"{spell(parts[0])} {spell(parts[1])}")
    vocab = {spell(token): rank for token, rank in ranks.items()}
    vocab[EOS] = len(ranks)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


BYTE_SPECIALS = {"<|pad|>": 256, "<|startoftext|>": 257, EOS: 258}  # ByteTokenizer's pad_id, bos_id, eos_id


def byte_level_vocab() -> dict[str, int]:
    """vocab.json of the byte tokenizer as merge-free byte-level BPE: byte b's GPT-2 character has id b."""
    return {char: b for b, char in bytes_to_unicode().items()} | BYTE_SPECIALS


def is_byte_level_folder(folder: Path) -> bool:
    """Whether `folder` holds the byte tokenizer as written by `write_hf_tokenizer` (for import to recognise)."""
    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        merges = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
    except (OSError, ValueError):
        return False
    return vocab == byte_level_vocab() and not [m for m in merges[1:] if m.strip()]




def write_hf_tokenizer(config: dict, out: str | Path) -> str:
    """Write the tokenizer of a run's recorded `config` into `out` for transformers (GPT2TokenizerFast; for `hf`,
    the run's own tokenizer.json); returns its kind."""
    out = Path(out)
    kind = config.get("tokenizer", "byte")
    if kind == "hf":
        source = Path(config.get("vocab", ""))
        if not source.is_file():
            raise KobaError(f"export: the run's tokenizer.json {config.get('vocab')!r} is not there to copy")
        files = hf_tokenizer_files(source)
        # The stop ids go into generation_config.json (export_checkpoint), where transformers reads them; a record
        # left here would override that file on a re-import, also after someone edits it.
        recorded = tokenizer_config_object(files.get("tokenizer_config.json"))
        if RECORDED_EOS_IDS in recorded:
            files["tokenizer_config.json"] = {k: v for k, v in recorded.items() if k != RECORDED_EOS_IDS}
        write_tokenizer_files(files, out)
        # transformers' AutoTokenizer needs a class to build. Decided by the run's own folder, not by what was just
        # written: where its model's files list several eos ids, hf_tokenizer_files makes a tokenizer_config.json
        # (the record, taken out above) that has no class and no bos.
        if not (source.parent / "tokenizer_config.json").is_file():
            from koba_ros.nlp.tokenizer import HFTokenizer

            tokenizer = HFTokenizer(source)
            specials = {key: tokenizer.token(i) for key, i in (("bos_token", tokenizer.bos_id),
                                                               ("eos_token", tokenizer.eos_id)) if i is not None}
            written = tokenizer_config_object(out / "tokenizer_config.json")
            (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                                   **specials, **written}))
        return kind
    specials = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS}
    if kind == "byte":
        (out / "vocab.json").write_text(json.dumps(byte_level_vocab(), ensure_ascii=False), encoding="utf-8")
        (out / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        specials = {"bos_token": "<|startoftext|>", "eos_token": EOS, "unk_token": EOS, "pad_token": "<|pad|>"}
    elif kind == "bpe":
        for name, key in (("vocab.json", "vocab"), ("merges.txt", "merges")):
            if not Path(config.get(key, "")).is_file():
                raise KobaError(f"export: the run's {key} file {config.get(key)!r} is not there to copy")
            shutil.copyfile(config[key], out / name)
    elif kind == "gpt2":
        from koba_ros.nlp.tokenizer import _read_ranks, whisper_gpt2_ranks

        path = Path(config["vocab"]) if config.get("vocab") else whisper_gpt2_ranks()
        if path is None or not path.is_file():
            raise KobaError("export: GPT-2's ranks (whisper/assets/gpt2.tiktoken) are not installed")
        tiktoken_to_gpt2_files(_read_ranks(path), out)
    else:
        raise KobaError(f"export: unknown tokenizer {kind!r}")
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    if EOS not in vocab:
        raise KobaError(f"export: the vocabulary has no {EOS}")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", **specials, "add_prefix_space": False,
        "model_max_length": int(config.get("model", {}).get("max_len", 1024)),
        "split_special_tokens": True}))  # "<|endoftext|>" typed in a text stays text, as in ours
    return kind
