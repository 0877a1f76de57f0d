"""Tokenisers: byte-level (always available), GPT-2's own BPE, any byte-level BPE from vocab.json + merges.txt, and
any Hugging Face tokenizer.json (`hf`: a SentencePiece-converted Llama's, Llama 3's, SmolLM's...).

GPT-2's BPE (`gpt2`): its 50,256 merge ranks ship with the openai-whisper package (whisper/assets/gpt2.tiktoken,
whisper's English tokenizer) and are read through tiktoken with GPT-2's pre-tokenisation pattern; "Hello world" ->
[15496, 995] as in GPT-2 (tested). Nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from koba_ros.errors import KobaError


def file_digest(*paths: str | Path) -> str:
    """Which files made a tokenizer's ids (recorded in token files and checkpoints): two vocabularies of one size
    give different ids. sha256 of the files' bytes joined by a NUL, 16 hex digits (bpe, gpt2; an hf tokenizer's
    covers its special tokens too, HFTokenizer)."""
    return bytes_digest(*(Path(path).read_bytes() for path in paths))


def bytes_digest(*chunks: bytes) -> str:
    """sha256 of the chunks joined by a NUL, 16 hex digits (file_digest's, and an hf tokenizer's with its specials)."""
    return hashlib.sha256(b"\0".join(chunks)).hexdigest()[:16]


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, plus pad (256), bos (257) and eos (258)."""

    pad_id, bos_id, eos_id = 256, 257, 258
    vocab_size = 259

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def batch(self, texts: list[str], max_len: int = 256, bos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad (right) and truncate a list of texts: (ids [B, T] long, mask [B, T] bool, True = real token)."""
        if not texts:
            raise KobaError("tokenizer: empty batch")
        encoded = [self.encode(t, bos=bos)[:max_len] for t in texts]
        length = max(1, max(len(e) for e in encoded))
        ids = torch.full((len(texts), length), self.pad_id, dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, : len(e)] = torch.tensor(e, dtype=torch.long)
        return ids, ids != self.pad_id


class BPETokenizer:
    """GPT-2 byte-level BPE from vocab.json + merges.txt (through the `tokenizers` package)."""

    def __init__(self, vocab_path: str | Path, merges_path: str | Path):
        needs = "bpe needs a vocab.json and a merges.txt"
        if not vocab_path or not merges_path:  # not "tokenizer:  not found", an empty path read as a file
            raise KobaError(f"tokenizer: {needs} (vocab: and merges: in a config, --vocab and --merges on the "
                            "command line)")
        for path in (vocab_path, merges_path):
            if not Path(path).is_file():
                raise KobaError(f"tokenizer: {path} not found ({needs})")
        from tokenizers import ByteLevelBPETokenizer

        try:
            self._tok = ByteLevelBPETokenizer(str(vocab_path), str(merges_path))
        except Exception as exc:  # the Rust side raises plain Exceptions for malformed files
            raise KobaError(f"tokenizer: cannot read BPE files: {exc}") from exc
        self.vocab_size = self._tok.get_vocab_size()
        self.digest = file_digest(vocab_path, merges_path)
        self.eos_id = self._tok.token_to_id("<|endoftext|>")
        # pad and bos are eos, as GPT-2's; None without one (not id 0, a real token that `sample` would then ban)
        self.pad_id = self.bos_id = self.eos_id

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self._tok.encode(text).ids
        start = [self.bos_id] if bos and self.bos_id is not None else []
        return start + ids + ([self.eos_id] if eos and self.eos_id is not None else [])

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])


# GPT-2's pre-tokenisation (Radford et al. 2019, the released encoder.py): contractions, letter runs, digit runs,
# other symbols, each optionally with one leading space; whitespace runs.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def whisper_gpt2_ranks() -> Path | None:
    """whisper/assets/gpt2.tiktoken if openai-whisper is installed (found without importing whisper)."""
    import importlib.util

    spec = importlib.util.find_spec("whisper")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "assets" / "gpt2.tiktoken"
    return path if path.is_file() else None


class GPT2Tokenizer:
    """GPT-2's byte-level BPE: 50,257 ids, <|endoftext|> = 50256 (also used as pad and bos).

    `ranks`: a .tiktoken file (one "base64-token rank" per line); default: the copy inside openai-whisper."""

    vocab_size = 50257
    eos_id = pad_id = bos_id = 50256

    def __init__(self, ranks: str | Path = ""):
        path = Path(ranks) if ranks else whisper_gpt2_ranks()
        if path is None or not path.is_file():
            raise KobaError(f"tokenizer: GPT-2 BPE ranks {ranks or 'whisper/assets/gpt2.tiktoken'} not found "
                            "(install openai-whisper or set vocab: to a .tiktoken file)")
        try:
            import tiktoken
        except ImportError as exc:
            raise KobaError("tokenizer: gpt2 needs the tiktoken package") from exc
        mergeable = _read_ranks(path)
        self.digest = file_digest(path)  # a custom ranks file of GPT-2's size is another vocabulary
        if len(mergeable) != self.eos_id:
            raise KobaError(f"tokenizer: {path} has {len(mergeable)} tokens, GPT-2 has {self.eos_id}")
        self._enc = tiktoken.Encoding("koba_gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=mergeable,
                                      special_tokens={"<|endoftext|>": self.eos_id})

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self._enc.encode_ordinary(text)  # "<|endoftext|>" typed in the text stays text
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        return self._enc.decode([int(i) for i in ids])


def _read_ranks(path: Path) -> dict[bytes, int]:
    import base64
    import binascii

    ranks = {}
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise KobaError(f"tokenizer: {path} is not a .tiktoken ranks file ({str(exc)[:80]})") from exc
    # tiktoken needs ranks 0..n-1, each once: a duplicate panics in Rust (a BaseException), a negative one overflows,
    # and one past the end is accepted and gives ids the model has no row for (or the end-of-text id's).
    seen: set[int] = set()
    for rank in ranks.values():
        if not 0 <= rank < len(ranks) or rank in seen:
            what = "given twice" if rank in seen else "out of range"
            raise KobaError(f"tokenizer: {path}: rank {rank} is {what}; the ranks of its {len(ranks)} tokens must be "
                            f"0..{len(ranks) - 1}, each once")
        seen.add(rank)
    return ranks


class HFTokenizer:
    """Any Hugging Face `tokenizer.json`, through the `tokenizers` package: what a pretrained Llama-family model
    comes with (`koba lm import` copies it into the checkpoint). Its bos / eos / pad ids come from the
    `tokenizer_config.json` beside it (bos_token, eos_token, pad_token), then from a `special_tokens_map.json` (older
    transformers wrote them there); a bos the tokenizer's post-processor puts first is found without them. With no
    eos named there, the model's eos_token_id beside it is taken (generation_config.json, then config.json; a list's
    first): openai-community/gpt2's tokenizer_config.json names none, transformers' GPT-2 class knows its own.
    `stop_ids` are the ids a sample ends at: the eos, and every id of such a list (Llama-3-Instruct's end of text,
    of message and of turn), as transformers' generate() stops at any of them (stops_of). Missing ones fall back
    as GPT-2's do (pad and bos = eos), or are None when there is no eos either. Ids added past
    the base vocabulary (`base_vocab_size`) may lie past the model's rows (check_ids_fit). Texts are encoded without
    the tokenizer's own special tokens (the trainer and `sample` add bos / eos themselves; `prompt_bos` says whether
    the tokenizer starts texts with bos, as its post-processor or the config's add_bos_token says), and decoded
    without them."""

    def __init__(self, path: str | Path):
        if not str(path):
            raise KobaError("tokenizer: hf needs vocab: the path of a tokenizer.json")
        path = Path(path)
        if not path.is_file():
            raise KobaError(f"tokenizer: {path} not found (tokenizer: hf needs vocab: a tokenizer.json)")
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exceptions for malformed files
            raise KobaError(f"tokenizer: cannot read {path}: {str(exc).splitlines()[0][:120]}") from None
        self.path = path
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.base_vocab_size = self._tok.get_vocab_size(with_added_tokens=False)
        config = special_tokens(path.parent)
        ids = {key: self._tok.token_to_id(config[key]) for key in ("bos_token", "eos_token", "pad_token")
               if isinstance(config.get(key), str)}
        self.eos_id = hf_eos_id(path.parent, self._tok, config)
        # Not in the digest: they end a sample, but neither the training stream nor the ids depend on them.
        self.stop_ids = stops_of(self.eos_id, path.parent, self._tok, config)
        # Does the tokenizer's own post-processing start every text with a token (Llama's: bos)? `sample` then does.
        plain, marked = (self._ids("a", special) for special in (False, True))
        bos = ids.get("bos_token")
        if bos is None and marked[1:] == plain and len(marked) == len(plain) + 1:
            bos = marked[0]
        adds_bos = config.get("add_bos_token")
        self.prompt_bos = bos is not None and (adds_bos if isinstance(adds_bos, bool) else marked == [bos] + plain)
        self.bos_id = bos if bos is not None else self.eos_id
        self.pad_id = ids.get("pad_token", self.eos_id)
        # The digest covers what the files beside tokenizer.json decide too: the eos that ends each document and the
        # bos a text starts with make the training stream as much as the vocabulary does (review 29). `file_digest`
        # is what versions before it recorded (tokenizer.json alone): older_digest_note.
        data = path.read_bytes()
        self.file_digest = bytes_digest(data)  # = file_digest(path)
        specials = json.dumps({"eos": self.eos_id, "bos": self.bos_id, "prompt_bos": self.prompt_bos}, sort_keys=True)
        self.digest = bytes_digest(data, specials.encode())
        # prepared.py cuts an hf tokenizer's long texts after a lone newline between non-spaces (CUT_AFTER), not
        # before a newline (CUT): Llama-3 / Qwen-style patterns attach the newline to the piece before ("red.\n").
        # Do pieces cut there encode to the whole text's ids, after letters, punctuation and digits alike? Not with
        # SentencePiece-style Metaspace, which marks every piece's start as a word start; `koba lm prepare` then
        # encodes each document whole.
        self.cut_after_newline = True
        self.piece_safe = all(self.encode(a + b) == self.encode(a) + self.encode(b)
                              for a, b in (("put the cube\n", "in the box"), ("a\n", "b"), ("a.\n", "b"),
                                           ("red.\n", "Put"), ("now!\n", "then"), ("1\n", "2"), ("a\n", ".b")))

    def token(self, i: int | None) -> str | None:
        return None if i is None else self._tok.id_to_token(i)

    def _ids(self, text: str, special: bool = False) -> list[int]:
        """The tokenizer's ids of `text`; a tokenizer.json the `tokenizers` package cannot encode with (a WordLevel
        model without its unk token, ...) is one line, not a Rust-side traceback."""
        try:
            return self._tok.encode(text, add_special_tokens=special).ids
        except Exception as exc:  # the Rust side raises plain Exceptions
            raise KobaError(f"tokenizer: {self.path} cannot encode the text starting {text[:40]!r}: "
                            f"{(str(exc).splitlines() or [type(exc).__name__])[0][:120]}") from None

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self._ids(text)
        start = [self.bos_id] if bos and self.bos_id is not None else []
        return start + ids + ([self.eos_id] if eos and self.eos_id is not None else [])

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)


def tokenizer_config_object(source: Path | dict | None) -> dict:
    """The JSON object of a tokenizer_config.json (a file, or an object as checkpoint.hf_tokenizer_files gives it);
    {} where it is missing, unreadable or not an object. The one reader of these files (tokenizer_config, checkpoint
    and export read them through it)."""
    if isinstance(source, dict):
        return source
    try:
        config = json.loads(source.read_text(encoding="utf-8")) if source is not None else None
    except (OSError, ValueError):
        config = None
    return config if isinstance(config, dict) else {}


def tokenizer_config(path: Path) -> dict:
    """A transformers tokenizer_config.json's bos_token / eos_token / pad_token (a string, or a dict with its
    "content") and add_bos_token; empty when the file is missing or unreadable."""
    config = tokenizer_config_object(path)
    found = {}
    for key in ("bos_token", "eos_token", "pad_token"):
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str) and value:
            found[key] = value
    if isinstance(config.get("add_bos_token"), bool):
        found["add_bos_token"] = config["add_bos_token"]
    if isinstance(config.get(RECORDED_EOS_IDS), list):
        found[RECORDED_EOS_IDS] = config[RECORDED_EOS_IDS]
    return found


def special_tokens(folder: Path) -> dict:
    """The special tokens the tokenizer files in `folder` name (tokenizer_config): tokenizer_config.json's, and
    special_tokens_map.json's where it names none."""
    return tokenizer_config(folder / "special_tokens_map.json") | tokenizer_config(folder / "tokenizer_config.json")


MODEL_EOS_FILES = ("generation_config.json", "config.json")  # what generate() stops at first, then the model's own
# A checkpoint's copy of tokenizer_config.json records under this key the stop ids its model's files listed
# (model_files_record): a checkpoint carries neither file, and transformers keeps a key it does not know as it is.
RECORDED_EOS_IDS = "model_eos_token_ids"


def _model_eos_lists(folder: Path):
    """Each model file's eos_token_id in MODEL_EOS_FILES' order, as a list (an id alone is a list of one)."""
    for name in MODEL_EOS_FILES:
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            continue
        yield value if isinstance(value, list) else [value]


def _is_token(value, tok) -> bool:
    """Is `value` an id of the `tokenizers` Tokenizer `tok`? (id_to_token raises OverflowError outside 0..2^32-1;
    not the vocabulary's size: an added token's id may lie past it.)"""
    return (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 32
            and tok.id_to_token(value) is not None)


def model_eos_ids(folder: Path, tok) -> list[int]:
    """Every eos_token_id the first of the model's files in `folder` that lists a token of `tok` lists, each a token
    of `tok`, in its order: the ids transformers' generate() stops at (MODEL_EOS_FILES)."""
    for listed in _model_eos_lists(folder):
        ids = [i for i in listed if _is_token(i, tok)]
        if ids:
            return list(dict.fromkeys(ids))
    return []


def model_eos_id(folder: Path, tok) -> int | None:
    """The eos_token_id the model's files in `folder` give: the first of model_eos_ids (the end of text where an
    instruction model lists its end of turn too). The same scan as the stop ids, so the eos is always one of them, from
    the same file (a separate scan took it from config.json while the stops came from generation_config.json)."""
    ids = model_eos_ids(folder, tok)
    return ids[0] if ids else None


def hf_eos_id(folder: Path, tok, config: dict) -> int | None:
    """An hf tokenizer's eos: the one its tokenizer files name (`config`: special_tokens), else its model's."""
    return tok.token_to_id(config["eos_token"]) if "eos_token" in config else model_eos_id(folder, tok)


def stops_of(eos: int | None, folder: Path, tok, config: dict) -> tuple[int, ...]:
    """The ids an hf tokenizer's sample ends at: the list its checkpoint recorded (`config`'s RECORDED_EOS_IDS), else
    its model's files' (model_eos_ids), in their order, with `eos` first where they lack it."""
    recorded = config.get(RECORDED_EOS_IDS)
    listed = [i for i in recorded if _is_token(i, tok)] if recorded is not None else model_eos_ids(folder, tok)
    return tuple(dict.fromkeys(([] if eos is None or eos in listed else [eos]) + listed))


def stop_ids(tokenizer) -> tuple[int, ...]:
    """The ids that end a sample: an hf tokenizer's stop_ids, any other's eos (none without one)."""
    eos = getattr(tokenizer, "eos_id", None)
    return tuple(getattr(tokenizer, "stop_ids", () if eos is None else (eos,)))


def model_files_record(tokenizer_json: Path) -> dict:
    """What a checkpoint's copy of tokenizer_config.json must add for an hf tokenizer to be the same without its
    model's files beside it (a checkpoint carries no config.json): the eos taken from them where no tokenizer file
    names one (`eos_token`), and the stop ids where they are more than that eos (RECORDED_EOS_IDS). Empty where
    nothing is to record."""
    folder = tokenizer_json.parent
    if not any((folder / name).is_file() for name in MODEL_EOS_FILES):
        return {}  # the common case (and every checkpoint's copy), decided without loading the tokenizer
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tokenizer_json))
    except Exception:  # noqa: BLE001 - HFTokenizer reports an unreadable file in one line where it is read
        return {}
    config = special_tokens(folder)
    eos = hf_eos_id(folder, tok, config)
    record = {} if "eos_token" in config or eos is None else {"eos_token": tok.id_to_token(eos)}
    stops = stops_of(eos, folder, tok, config)
    if set(stops) - {eos}:
        record[RECORDED_EOS_IDS] = list(stops)
    return record


def same_tokenizer(tokenizer, saved: str | None, copy: Path | None = None) -> bool:
    """Does the digest a checkpoint recorded (`saved`) name `tokenizer`? True where either has none (byte, or a
    checkpoint older than digests). A digest an older version recorded for an hf tokenizer (its tokenizer.json alone)
    names it only if that file is the same and the checkpoint's own copy of the tokenizer files (`copy`: its
    tokenizer.json, with the special tokens the run trained with beside it) gives this tokenizer's digest now."""
    digest = getattr(tokenizer, "digest", None)
    if not digest or not saved or saved == digest:
        return True
    if saved != getattr(tokenizer, "file_digest", None) or copy is None or not Path(copy).is_file():
        return False
    try:
        return HFTokenizer(copy).digest == digest
    except KobaError:
        return False


def older_digest_note(tokenizer, saved) -> str:
    """A refusal's note where `saved` is the digest versions before session 29 recorded for this very tokenizer.json:
    the file is the same, the special tokens it was used with are not known."""
    if saved is None or saved != getattr(tokenizer, "file_digest", None):
        return ""
    return (" (recorded by an older version, whose hf digest covered tokenizer.json alone: the file is the same, but "
            "its special tokens (eos, bos) then cannot be checked)")


def check_ids_fit(ids, rows: int, tokenizer, what: str) -> None:
    """Refuse in one line `ids` (a list, tensor or array) holding one the model has no embedding row for: an hf
    tokenizer's added token past them (CodeLlama-34b's four infilling tokens, Gemma 3's image token), which
    transformers also runs without a row as long as no text holds it."""
    if tokenizer.vocab_size <= rows or len(ids) == 0:
        return  # every id has a row
    top = int(ids.max()) if hasattr(ids, "max") else max(ids)
    if top >= rows:
        name = tokenizer.token(top) if hasattr(tokenizer, "token") else None
        raise KobaError(f"{what} holds id {top} ({name!r}), a token the tokenizer added past the model's {rows} "
                        "embedding rows: the model cannot read it")


def base_vocab_size(tokenizer) -> int:
    """The ids a model must have a row for: all of them, but for an hf tokenizer's tokens added past its base
    vocabulary (check_ids_fit)."""
    return getattr(tokenizer, "base_vocab_size", tokenizer.vocab_size)


KINDS = ("byte", "gpt2", "bpe", "hf")


def build_tokenizer(kind: str = "byte", vocab: str = "", merges: str = ""):
    if kind == "byte":
        return ByteTokenizer()
    if kind == "gpt2":
        return GPT2Tokenizer(vocab)
    if kind == "bpe":
        return BPETokenizer(vocab, merges)
    if kind == "hf":
        return HFTokenizer(vocab)
    raise KobaError(f"tokenizer: kind must be {', '.join(KINDS)}, got {kind!r}")
