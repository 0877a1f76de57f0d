"""The ASR's domain language model: a trigram ARPA model of what people say to this robot.

The sentences come from four places, so the recogniser knows every word the rest of the
system understands: the object catalog (names, synonyms, descriptions, colours) put into
picking templates, short answers to the robot's clarifying questions, the teleop
commands (koba_ros.teleop.commands.teleop_phrases, every stop word among them) and the
dialogue's cancel words (koba_ros.grounding.lexicon.CANCEL). The model is built with pocketsphinx's
own ARPA builder (fixed-discount backoff) and cached by content hash, so editing the catalog
rebuilds it on the next start; a cached file that is not whole (its sha256 is kept beside it) is built again.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from koba_ros.atomic_write import write_atomically
from koba_ros.errors import KobaError
from koba_ros.sim.catalog import load_catalog
from koba_ros.teleop.commands import teleop_phrases

SPOKEN_BOXES = ("top left", "top right", "bottom left", "bottom right",
                "upper left", "upper right", "lower left", "lower right")
PICK_TEMPLATES = ("put the {o} in the {b} box", "move the {o} to the {b} box", "place the {o} into the {b} box",
                  "pick up the {o} and put it in the {b} box", "put the {o} in the {b}")
# Fixed discount of the backoff trigram: the probability mass moved from seen n-grams to backoff. The domain is
# a closed command language, so little mass is left for unseen word sequences; 0.5 (ArpaBoLM's default) let
# "centimeters" split into "the meters" and "go home" into "go go". Swept on a tuning set (docs/speech.md).
DISCOUNT_MASS = 0.01
ARPA_END = b"\\end\\"   # an ARPA model's last line
ANSWERS = ("yes", "no", "yes please", "that one", "the other one", "the left one", "the right one", "the first one",
           "the second one", "the one on the left", "the one on the right", "pick up the {o}", "the {o}",
           "the {o} in the {b} box", "the one in the {b} box")


def descriptions_of(entry) -> set[str]:
    """The catalog's descriptive names of one object, without their article ("toy that quacks")."""
    return {re.sub(r"^the ", "", d) for d in entry.descriptions}


def names_of(entry) -> set[str]:
    """Every way the catalog lets a person name one object: synonyms, colour + synonym, descriptions."""
    names = set()
    for syn in entry.synonyms:
        names.add(syn)
        names.add(f"{entry.color} {syn}")
    names.update(descriptions_of(entry))
    names.add(f"{entry.color} {entry.shape}")
    names.add(f"{entry.material} {entry.shape}")
    return names


def object_names(catalog=None) -> list[str]:
    return sorted(set().union(*map(names_of, (catalog or load_catalog()).values())))


def picking_phrases(catalog=None) -> list[str]:
    """Pick-and-place instructions and answers to clarifying questions, from the catalog."""
    names = object_names(catalog)
    phrases = [t.format(o=o, b=b) for t, o, b in itertools.product(PICK_TEMPLATES, names, SPOKEN_BOXES)]
    for a in ANSWERS:
        phrases += sorted({a.format(o=o, b=b) for o, b in itertools.product(names, SPOKEN_BOXES)})
    return phrases


def cancel_phrases() -> list[str]:
    """The dialogue's cancel words (grounding.lexicon.CANCEL) that teleop_phrases() does not already hold as stops:
    "never mind", "forget it", "quit", alone ("please never mind" is not said)."""
    from koba_ros.grounding.lexicon import CANCEL

    stops = set(teleop_phrases())
    return [c for c in CANCEL if c not in stops]


def domain_sentences(catalog=None) -> list[str]:
    return [*picking_phrases(catalog), *teleop_phrases(), *cancel_phrases()]


@dataclass(frozen=True)
class DomainModel:
    arpa_path: Path
    sentences: frozenset[str]        # the training sentences (n-best rescoring prefers these)
    vocabulary: tuple[str, ...]
    dropped_words: tuple[str, ...]   # not in the pronunciation dictionary; sentences using them were left out


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "koba_ros" / "asr"


def digest_path(arpa: Path) -> Path:
    return arpa.with_name(arpa.name + ".sha256")


def is_whole(arpa: Path) -> bool:
    """Is the cached model the one written (it ends with \\end\\ and matches the sha256 written beside it)?
    pocketsphinx does not refuse a damaged ARPA file: a truncated one crashed every start (SIGSEGV) while it lay in
    the cache. A model cached before the digests were written is built again, once."""
    try:
        data, stored = arpa.read_bytes(), digest_path(arpa).read_text().strip()
    except OSError:   # missing, or not a file
        return False
    return data.rstrip().endswith(ARPA_END) and hashlib.sha256(data).hexdigest() == stored


def build_domain_lm(known_word, sentences: list[str] | None = None, folder: Path | None = None,
                    discount_mass: float = DISCOUNT_MASS) -> DomainModel:
    """Write (or reuse) the ARPA model of `sentences`; `known_word(w)` says whether the dictionary can say w."""
    from pocketsphinx.lm import ArpaBoLM

    sentences = sentences if sentences is not None else domain_sentences()
    words = sorted({w for s in sentences for w in s.split()})
    dropped = tuple(w for w in words if not known_word(w))
    kept = [s for s in sentences if not set(s.split()) & set(dropped)]
    text = "\n".join(kept) + "\n"
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{discount_mass}\n{text}".encode()).hexdigest()[:16]
    path = folder / f"domain-{key}.arpa"
    if not is_whole(path):
        lm = ArpaBoLM(text=text, add_start=True, case="lower", discount_mass=discount_mass)
        lm.compute()
        digest = []

        def write(tmp: Path) -> None:
            # ArpaBoLM swallows its errors; a half-written model must not be cached
            if not lm.write_file(str(tmp)) or not tmp.read_bytes().rstrip().endswith(ARPA_END):
                raise KobaError(f"could not write the domain language model to {tmp}")
            digest.append(hashlib.sha256(tmp.read_bytes()).hexdigest())

        write_atomically(path, write)
        write_atomically(digest_path(path), lambda tmp: tmp.write_text(digest[0] + "\n"))
    vocab = tuple(w for w in words if w not in dropped)
    return DomainModel(path, frozenset(kept), vocab, dropped)
