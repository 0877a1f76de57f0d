"""The robot's spoken-command sentences (speech/domain_lm.domain_sentences: pick-and-place instructions, answers to
the clarifying question, teleop) as a fixed fine-tuning corpus for the NLP benches: shuffled once (seed 0)."""
import random
from pathlib import Path

from koba_ros.speech.domain_lm import domain_sentences


def command_sentences() -> list[str]:
    sentences = sorted(set(domain_sentences()))
    random.Random(0).shuffle(sentences)
    return sentences


def write_command_split(folder: Path) -> tuple[int, int]:
    """folder/train.txt and folder/val.txt, 90 / 10, one sentence a line; returns their sentence counts."""
    sentences = command_sentences()
    cut = int(0.9 * len(sentences))
    (folder / "train.txt").write_text("\n".join(sentences[:cut]) + "\n")
    (folder / "val.txt").write_text("\n".join(sentences[cut:]) + "\n")
    return cut, len(sentences) - cut
