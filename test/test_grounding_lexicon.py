"""Box names in any word order (lexicon.box_spans) and the honesty of the phrasing split after session 3's additions."""
import itertools

import numpy as np
import pytest

from koba_ros.grounding import lexicon
from koba_ros.grounding.instructions import BOX_PHRASES, EXTREME, LOCATION, VERT, InstructionGenerator
from koba_ros.grounding.synthetic import perceive_synthetic, random_scene
from koba_ros.sim.catalog import BOXES


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_generated_box_phrasing_parses_to_its_box(split):
    """Every box phrasing the generator can say, every box, both vertical words: the parser reads the right box
    and takes all of its words out (so "the right-hand box in the top row" leaves no stray "right" or "top")."""
    for template, box in itertools.product(BOX_PHRASES[split], BOXES):
        v, h = box.split("_")
        for vert in VERT[v]:
            phrase = template.format(v=vert, h=h, vb=v)
            text = f"put the red cube in {phrase} please"
            assert lexicon.parse_box(text) == box, text
            rest = lexicon.without_boxes(text)
            assert not set(rest) & (set(lexicon.VERTICAL) | set(lexicon.HORIZONTAL)), (text, rest)
            assert lexicon.side(text) is None, text


@pytest.mark.parametrize("text,boxes", [
    ("the top box on the right", ["top_right"]),
    ("the right-hand box in the top row", ["top_right"]),
    ("the lower bin on the left side", ["bottom_left"]),
    ("move the can that is in the upper left one to the left box at the top", ["top_left", "top_left"]),
    ("the ball on the left in the top right box", ["top_right"]),        # "left" is a side, not half a box
    ("the cube left of the duck in the bottom box", []),                 # "of the duck" is not filler
    ("the duck on the right", []),
    # session 5: a side said before a box whose halves are apart is the object's side, not half of the box
    ("put the round block on the left in the top box on the right", ["top_right"]),
    ("the cube at the far right in the bottom bin on the left side", ["bottom_left"]),
    ("put the duck into the box on the left at the top", ["top_left"]),
    ("the left one at the top", ["top_left"]),
    ("put it in the upper far left", ["top_left"]),
    ("put it into the left container in the bottom row right now", ["bottom_left"]),  # "right now" is no side
])
def test_box_mentions_in_either_order_only_across_filler(text, boxes):
    assert [b for _, b in lexicon.box_mentions(text)] == boxes


def test_side_survives_a_box_named_in_the_same_text():
    assert lexicon.side("the ball on the left in the top right box") == "left"
    assert lexicon.side("the can furthest to the right in the box at the bottom left") == "right"


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_the_boxes_of_generated_clear_instructions_are_read(split):
    """The parser against the generator's truth: a clear instruction names its destination and, at most, the box
    its object is in (the dialogue's side, location and destination checks read these). One known misreading is
    allowed for: "box" is also a cube synonym ("the box on the right in the top box on the left")."""
    rng, gen, wrong, n = np.random.default_rng(11), InstructionGenerator(split, 11), [], 0
    while n < 600:
        scene = random_scene(rng)
        objects = perceive_synthetic(scene, np.random.default_rng(int(rng.integers(1 << 30))))
        s = gen.sample(objects, [o["name"] for o in scene], "clear")
        if s is None:
            continue
        n += 1
        said = {b for _, b in lexicon.box_mentions(s.text)}
        if s.destination not in said or said - {s.destination, s.location}:
            wrong.append(s.text)
    assert len(wrong) <= 3, wrong


def _texts(split: str, n: int = 800, seed: int = 3) -> list[str]:
    rng, gen, out = np.random.default_rng(seed), InstructionGenerator(split, seed), []
    while len(out) < n:
        scene = random_scene(rng)
        s = gen.generate(perceive_synthetic(scene, np.random.default_rng(int(rng.integers(1 << 30)))),
                         [o["name"] for o in scene])
        if s is not None:
            out.append(" " + s.text.lower() + " ")
    return out


def test_no_held_out_box_location_or_extreme_phrasing_reaches_training():
    """Each held-out (test) phrasing, filled in for every box / side, never occurs in a training text."""
    train = " || ".join(_texts("train"))
    held_out = [t.format(v=vert, h=box.split("_")[1], vb=box.split("_")[0])
                for t in BOX_PHRASES["test"] for box in BOXES for vert in VERT[box.split("_")[0]]]
    held_out += [t.split("{box}")[0].replace("{np}", "").strip() for t in LOCATION["test"]]
    held_out += [t.replace("the {n} ", "") for which in ("left", "right") for t in EXTREME["test"][which]]
    for phrase in held_out:
        assert phrase not in train, phrase
    # and the new training variety is there
    assert "all the way to the" in train and " row" in train
