"""Relations read by composition (grounding/relations.py, session 28): the words are split into the rest, the landmark
and the side; the grounder reads the parts; the object meant is the one nearest the landmark on that side among those
the rest fits."""
import dataclasses

import numpy as np
import pytest

from koba_ros.grounding import lexicon, relations
from koba_ros.grounding.dialogue import Dialogue, Settings
from koba_ros.grounding.grounder import Grounding
from koba_ros.grounding.instructions import EXTREME, RELATION, SPLITS
from koba_ros.grounding.synthetic import perceive_synthetic

# Three red cubes in a row in the top left box with the duck between the middle one and the right one; a fourth red
# cube in the bottom right box (as in test_grounding_relations.py).
ROW = [{"name": "red_cube", "box": "top_left", "xy": [-0.08, 0.0]},
       {"name": "red_cube", "box": "top_left", "xy": [-0.02, 0.0]},
       {"name": "duck", "box": "top_left", "xy": [0.02, 0.0]},
       {"name": "red_cube", "box": "top_left", "xy": [0.08, 0.0]},
       {"name": "red_cube", "box": "bottom_right", "xy": [0.0, 0.0]}]
WRAPPERS = ["put {np} in the top right box", "{np} in the top left box goes in the bottom right box",
            "could you move {np} to the lower left bin please", "the top right box is where {np} belongs"]


def objects(spec=ROW, seed=0):
    return perceive_synthetic(spec, np.random.default_rng(seed))


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_every_generated_relation_wording_parses_into_rest_landmark_and_side(split, side):
    for template in RELATION[split][side]:
        for wrapper in WRAPPERS:
            np_text = template.format(n="red cube", lm="the rubber duck")
            text = wrapper.format(np=np_text)
            rel = relations.parse(text)
            assert rel is not None, text
            assert (rel.landmark, rel.side) == ("the rubber duck", side), text
            # The rest is the instruction with the plain noun phrase: every box it named, nothing of the landmark.
            assert rel.rest == " ".join(lexicon.words(wrapper.format(np="the red cube"))), text


@pytest.mark.parametrize("text", [
    *[t.format(n="cube") + " in the top left box" for split in SPLITS for side in ("left", "right")
      for t in EXTREME[split][side]],
    "put the cube to the left of the others in the top right box", "the cube left of the rest goes top right",
    "let's put the block of wood in the top left box", "put the cube on the left in the top right box",
    "put it in the left box at the top right away", "the one on the left", "the duck", "",
    "move the mug from the top left box to the bottom right box",
    # a place that is no object (session 29 review)
    "put the blue cylinder near the front in the top right box", "put the red cube close to you in the top right box",
    "the leftmost cube near the front in the top left box goes top right", "put the cube next to the edge top left",
    # right after a box name it says where the object goes, not which object (session 29 review)
    "put the cube in the top right box next to the domino in the top left box",
    "move the duck into the bottom left bin, to the left of the mug"])
def test_words_without_a_landmark_are_no_relation(text):
    assert relations.parse(text) is None


def test_beside_without_a_side_means_either_side():
    rel = relations.parse("put the cube next to the duck in the top right box")
    assert rel == relations.Relation("put the cube in the top right box", "the duck", None)
    assert relations.parse("the cube close to the mug goes top right").side is None


def _grounding(target, dest=(0, 1, 0, 0, 0)):
    return Grounding(np.array(target, float), np.array(dest, float))


# The rest's words ("the red cube") fit every cube; the landmark's words ("the duck") fit the duck.
CUBES_FIT = _grounding([0.25, 0.25, 0.0, 0.25, 0.2, 0.05])
DUCK = _grounding([0, 0, 1.0, 0, 0, 0])


@pytest.mark.parametrize("side, expected", [("left", 1), ("right", 3)])
def test_the_nearest_look_alike_on_the_side_said_takes_the_mass(side, expected):
    g = relations.compose(CUBES_FIT, DUCK, objects(), side, fit_ratio=0.1)
    assert g.ranked()[0][0] == expected and g.target_probs[expected] == pytest.approx(0.95)
    assert g.target_probs.sum() == pytest.approx(1.0) and g.none_prob == pytest.approx(0.05)
    assert np.array_equal(g.dest_probs, CUBES_FIT.dest_probs)   # the box is the rest's


def test_either_side_takes_the_nearest_and_another_box_is_never_beside():
    objs = objects()
    g = relations.compose(CUBES_FIT, DUCK, objs, None, fit_ratio=0.1)
    centre = [o.bbox[0] + o.bbox[2] / 2 for o in objs]
    nearest = min((1, 3), key=lambda i: abs(centre[i] - centre[2]))
    assert g.ranked()[0][0] == nearest
    assert g.target_probs[4] == 0.0   # the cube in the bottom right box is no neighbour of the duck


def test_no_look_alike_on_that_side_leaves_the_rest_reading_so_the_robot_asks():
    # "the cube left of cube 0": nothing is on its left in its box; the rest's reading decides (the robot asks).
    first_cube = _grounding([1.0, 0, 0, 0, 0, 0])
    g = relations.compose(CUBES_FIT, first_cube, objects(), "left", fit_ratio=0.1)
    assert g.target_probs == pytest.approx(CUBES_FIT.target_probs) and max(g.target_probs) < 0.7


def test_a_side_within_the_margin_is_unsure_and_look_alikes_about_as_near_share_the_mass():
    # A cube 5 mm (4-5 px) left of the duck's centre, in front of it, and a cube clearly on its left: either may be
    # "the cube left of the duck", so neither is sure.
    front = [{"name": "red_cube", "box": "top_left", "xy": [-0.06, 0.0]},
             {"name": "duck", "box": "top_left", "xy": [0.0, 0.0]},
             {"name": "red_cube", "box": "top_left", "xy": [-0.005, 0.05]}]
    fit_cubes = _grounding([0.5, 0.0, 0.5, 0.0])
    g = relations.compose(fit_cubes, _grounding([0, 1.0, 0, 0]), objects(front), "left", 0.1)
    assert g.target_probs[0] == pytest.approx(0.5) and g.target_probs[2] == pytest.approx(0.5)
    # "next to the duck" with a cube on each side at the same distance: a tie, not a pick.
    tie = [{"name": "red_cube", "box": "top_left", "xy": [-0.06, 0.0]},
           {"name": "duck", "box": "top_left", "xy": [0.0, 0.0]},
           {"name": "red_cube", "box": "top_left", "xy": [0.06, 0.0]}]
    g = relations.compose(fit_cubes, _grounding([0, 1.0, 0, 0]), objects(tie, seed=1), None, 0.1)
    assert max(g.target_probs) < 0.7 and g.target_probs[0] + g.target_probs[2] == pytest.approx(1.0)
    # Straight behind the duck (4 cm) is nearer than beside it (6 cm): "next to" measures in the image plane.
    behind = [*tie[:2], {"name": "red_cube", "box": "top_left", "xy": [0.0, 0.04]}]
    g = relations.compose(_grounding([0.5, 0, 0.5, 0]), _grounding([0, 1.0, 0, 0]), objects(behind), None, 0.1)
    assert g.ranked()[0][0] == 2


@pytest.mark.parametrize("text, landmark, rest", [
    ("put the cube left of the duck right away", "the duck", "put the cube right away"),
    ("move the cube left of the duck right into the top right box", "the duck", "move the cube into the top right box"),
    ("put the cube to the left of the duck right there", "the duck", "put the cube right there"),
    ("put the ball left of the right cube in the top left box", "the right cube", "put the ball in the top left box")])
def test_right_as_an_adverb_after_the_landmark_is_not_part_of_it(text, landmark, rest):
    rel = relations.parse(text)
    assert (rel.landmark, rel.rest) == (landmark, rest)


def test_an_answer_that_says_a_relation_is_read_as_one_not_as_the_extreme():
    from test.test_grounding_core import TableGrounder

    # Three red cubes in the top left box, the duck between the middle one and the right one: "put the red cube in
    # the bottom right box" asks which; "the one to the left of the duck" is the middle cube, not the leftmost.
    table = {"put the red cube in the bottom right box": ([0.25, 0.25, 0, 0.25, 0.25, 0], [0, 0, 0, 1, 0])}
    nouns = ["cube", "cube", "duck", "cube", "cube"]
    for answer, target in (("the one to the left of the duck", 1), ("the one on the duck's right", 3),
                           ("the one next to the duck", 1)):
        d = Dialogue(TableGrounder(table, 5, nouns), objects())
        assert d.start("put the red cube in the bottom right box").status == "question"
        reply = d.answer(answer)
        assert (reply.status, reply.target, reply.destination) == ("done", target, "bottom_right"), (answer, reply)
    # Ruling one out by a relation: "not the one left of the duck" leaves the others.
    d = Dialogue(TableGrounder(table, 5, nouns), objects())
    d.start("put the red cube in the bottom right box")
    d.answer("not the one left of the duck")
    assert 1 in d.ruled_out and 0 not in d.ruled_out and 3 not in d.ruled_out


def test_two_possible_landmarks_share_the_mass_and_a_weak_fit_lets_the_next_one_through():
    # Landmark read as the duck or cube 1, half each: left of the duck is cube 1, left of cube 1 is cube 0.
    g = relations.compose(CUBES_FIT, _grounding([0, 0.5, 0.5, 0, 0, 0]), objects(), "left", fit_ratio=0.1)
    assert g.target_probs[0] == pytest.approx(0.475) and g.target_probs[1] == pytest.approx(0.475)
    # A nearer object the words fit at 4 % of the best (fit 0.4) passes 60 % on to the next one out.
    rest = _grounding([0.5, 0.02, 0.0, 0.0, 0.0, 0.48])
    g = relations.compose(rest, DUCK, objects(), "left", fit_ratio=0.1)
    assert g.target_probs[1] == pytest.approx(0.52 * 0.4) and g.target_probs[0] == pytest.approx(0.52 * 0.6)


def test_objects_the_words_fit_by_kind_and_colour_fit_fully_whatever_the_model_gives_them():
    # A sharp model all but dismisses cube 1, the cube nearest the duck on its left; by its probability alone the
    # relation passes on to cube 0. The dialogue's kind and colour rules say cube 1 is a red cube too.
    rest = _grounding([0.9, 0.001, 0.0, 0.05, 0.0, 0.049])
    alone = relations.compose(rest, DUCK, objects(), "left", fit_ratio=0.1)
    assert alone.ranked()[0][0] == 0
    told = relations.compose(rest, DUCK, objects(), "left", fit_ratio=0.1, words_fit={0, 1, 3, 4})
    assert told.ranked()[0][0] == 1 and told.target_probs[1] == pytest.approx(0.951)


@pytest.fixture(scope="module")
def grounder():
    import torch

    from koba_ros.grounding.grounder import Grounder
    torch.set_num_threads(1)
    return Grounder()


@pytest.fixture(scope="module")
def rendered():
    """A rendered, segmented scene (a seed never used for training) and relation instructions of the held-out
    wording ("the cube left of the duck") about it."""
    from koba_ros.grounding.instructions import InstructionGenerator
    from koba_ros.grounding.scenes import render_and_perceive

    scene = render_and_perceive(555002, 30)
    gen = InstructionGenerator("test", 0)
    samples = [s for s in (gen.sample(scene.objects, scene.names, "relation") for _ in range(300)) if s is not None]
    return scene.objects, samples[:12]


class Recording:
    """The grounder, noting every text it is asked to read."""

    def __init__(self, grounder):
        self.grounder, self.texts = grounder, []

    def ground(self, text, objects):
        return self.ground_batch([text], [objects])[0]

    def ground_batch(self, texts, object_lists):
        self.texts += texts
        return self.grounder.ground_batch(texts, object_lists)


def test_the_default_grounder_reads_relations_through_the_dialogue(grounder, rendered):
    objs, samples = rendered
    assert len(samples) == 12
    composed, whole = [], []
    for s in samples:
        for out, settings in ((composed, Settings()), (whole, Settings(compose_relations=False))):
            recording = Recording(grounder)
            reply = Dialogue(recording, objs, settings).start(s.text)
            out.append("right" if (reply.status, reply.target, reply.destination) == ("done", s.target, s.destination)
                       else "wrong" if reply.status == "done" else reply.status)
            # Composed, the landmark's words are read on their own; off, only the whole words are (as before).
            landmark = relations.parse(s.text).landmark
            assert (landmark in recording.texts) == settings.compose_relations, s.text
    assert composed.count("wrong") == 0 and composed.count("right") >= 10, composed
    assert composed.count("right") > whole.count("right"), (composed, whole)


def test_a_landmark_that_is_not_here_leaves_the_whole_words(grounder, rendered):
    objs, _ = rendered
    text = "put the red cube to the left of the purple giraffe in the top right box"
    assert relations.parse(text).landmark == "the purple giraffe"
    whole = grounder.ground(text, objs)
    assert grounder.ground(relations.parse(text).landmark, objs).none_prob >= 0.5
    assert np.allclose(relations.read(grounder, text, objs)[0].target_probs, whole.target_probs)


@pytest.mark.parametrize("phrase", ["flanking the duck on the right", "beside the duck on its right side",
                                    "more to the right than the duck"])
def test_a_relation_without_of_is_not_read_as_the_extreme_when_the_composition_is_unsure(phrase):
    """Two ducks, each with a red cube on its right, and the words name the box the cubes are in: the composition
    splits the mass between those two cubes, and the rule that acts on an unsure reading when the words single one
    object out must not take "on the right" as "the rightmost red cube in that box" (it recognised a landmark only by
    "of" and "'s": every val2 relation wording, session 29)."""
    from test.test_grounding_core import TableGrounder

    row = [{"name": "red_cube", "box": "top_left", "xy": [x, 0.0]} for x in (-0.08, 0.0, 0.08)]
    row[1:1] = [{"name": "duck", "box": "top_left", "xy": [-0.04, 0.0]}]
    row[3:3] = [{"name": "duck", "box": "top_left", "xy": [0.04, 0.0]}]
    row.append({"name": "red_cube", "box": "bottom_right", "xy": [0.0, 0.0]})
    objs = objects(row)
    text = f"the red cube {phrase} in the top left box goes in the bottom right box"
    rest = relations.parse(text).rest
    cubes = ([0.25, 0, 0.25, 0, 0.25, 0.25, 0.0], [0, 0, 0, 0.97, 0.03])
    g = TableGrounder({rest: cubes}, 6, ["cube", "duck", "cube", "duck", "cube", "cube"])
    reply = Dialogue(g, objs).start(text)
    assert reply.status == "question" and set(reply.candidates) == {2, 4}, (reply.status, reply.candidates)


def test_a_sharp_landmark_reading_does_not_hide_a_second_landmark_the_words_name():
    """Two ducks, each with a red cube on its right, and the grounder sure "the duck" is the first: the words still
    say either duck, so each duck the catalog check finds is a landmark as likely as the pick and the robot asks
    about both cubes (session 29's K; without it the robot moves the cube beside the duck the grounder picked)."""
    from test.test_grounding_core import TableGrounder

    row = [{"name": "red_cube", "box": "top_left", "xy": [x, 0.0]} for x in (-0.08, 0.0, 0.08)]
    row[1:1] = [{"name": "duck", "box": "top_left", "xy": [-0.04, 0.0]}]
    row[3:3] = [{"name": "duck", "box": "top_left", "xy": [0.04, 0.0]}]
    row.append({"name": "red_cube", "box": "bottom_right", "xy": [0.0, 0.0]})
    objs = objects(row)
    text = "put the red cube to the right of the duck in the top right box"
    table = {"put the red cube in the top right box": ([0.25, 0, 0.25, 0, 0.25, 0.25, 0.0], [0, 0.97, 0, 0, 0.03]),
             "the duck": ([0, 0.98, 0, 0.01, 0, 0, 0.01], [0, 0, 0, 0, 1])}
    g = TableGrounder(table, 6, ["cube", "duck", "cube", "duck", "cube", "cube"])
    reply = Dialogue(g, objs).start(text)
    assert reply.status == "question" and set(reply.candidates) == {2, 4}, (reply.status, reply.candidates)
    reply = Dialogue(g, objs, Settings(landmark_look_alikes=False)).start(text)
    assert (reply.status, reply.target) == ("done", 2)
    # A pick the catalog check disagrees with is left as the grounder read it.
    landmark = g.ground("the duck", objs)
    assert relations.look_alike_landmarks(landmark, {0, 2}, objs) is landmark
    raised = relations.look_alike_landmarks(landmark, {1, 3}, objs).target_probs
    assert raised[1] == raised[3] == pytest.approx(0.98) and raised[-1] == pytest.approx(0.01)
    # A duck in another box is no landmark for a cube here: it stays as the grounder read it.
    other_box = objects([*row, {"name": "duck", "box": "bottom_right", "xy": [0.06, 0.0]}])
    landmark = dataclasses.replace(landmark, target_probs=np.append(landmark.target_probs[:6], [0.0, 0.01]))
    raised = relations.look_alike_landmarks(landmark, {1, 3, 6}, other_box).target_probs
    assert raised[3] == pytest.approx(0.98) and raised[6] == 0.0


@pytest.mark.parametrize("place", ["near the front", "next to the edge", "close to you"])
def test_a_place_that_is_no_object_leaves_the_kind_rule_asking(place):
    """"near the front" relates the cube to no object: the rule that every red cube fits "the red cube" (and so a
    question, however sure the model is) still holds (a session 29 review found it skipped)."""
    from test.test_grounding_core import TableGrounder

    objs = objects()
    text = f"put the red cube {place} in the top right box"
    sure = ([0.9, 0.05, 0.0, 0.03, 0.02, 0.0], [0, 0.97, 0, 0, 0.03])
    g = TableGrounder({text: sure}, 5, ["cube", "cube", "duck", "cube", "cube"])
    reply = Dialogue(g, objs).start(text)
    assert reply.status == "question" and 0 in reply.candidates, (reply.status, reply.candidates)
