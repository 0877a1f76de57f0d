"""Clarification dialogue, driven exactly by a table grounder: answers are read against the objects the question
named (then the others), look-alikes are asked about however sure the model is, a box that may be the object's
place is checked, and the scripted person of the benchmark answers the question that was asked."""
import dataclasses

import numpy as np

from koba_ros.grounding import lexicon, seen_colours
from koba_ros.grounding.dialogue import Dialogue, Reply, Settings, said_kinds
from koba_ros.grounding.evaluation import scripted_answer
from koba_ros.grounding.instructions import Sample
from koba_ros.grounding.synthetic import perceive_synthetic
from test.test_grounding_core import TableGrounder

TR = [0, 1, 0, 0, 0]          # destination: top right, sure
TL = [1, 0, 0, 0, 0]
# Two red cubes side by side in the top left box, one in the bottom right box, a duck, a blue ball.
CUBES = [{"name": "red_cube", "box": "top_left", "xy": [-0.06, 0.0]},
         {"name": "red_cube", "box": "top_left", "xy": [0.06, 0.0]},
         {"name": "red_cube", "box": "bottom_right", "xy": [0.0, 0.0]},
         {"name": "duck", "box": "top_left", "xy": [0.0, 0.07]},
         {"name": "blue_ball", "box": "top_right", "xy": [0.0, 0.0]}]
NOUNS = ["cube", "cube", "cube", "duck", "ball"]


def scene(spec=CUBES, seed=0):
    return perceive_synthetic(spec, np.random.default_rng(seed))


def test_answer_is_read_against_the_candidates_it_answers():
    g = TableGrounder({"the red cube to the top right box": ([0.34, 0.33, 0.33, 0, 0, 0], TR)}, 5, NOUNS)
    for answer, target in (("the one on the right in the top left box", 1), ("the one on the left in the top left "
                           "box", 0), ("the one in the bottom right box", 2), ("the second one", 1)):
        d = Dialogue(g, scene())
        assert d.start("the red cube to the top right box").status == "question" and set(d.candidates) == {0, 1, 2}
        r = d.answer(answer)
        assert (r.status, r.target, r.destination) == ("done", target, "top_right"), (answer, r)
    # Two answers: the box first (two cubes left there), then the side.
    d = Dialogue(g, scene())
    d.start("the red cube to the top right box")
    r = d.answer("the top left one")
    assert r.status == "question" and set(r.candidates) == {0, 1}
    assert d.answer("the one on the right").target == 1
    # An answer that fits every object named answers nothing (and does not wander off to other objects).
    d = Dialogue(g, scene())
    d.start("the red cube to the top right box")
    r = d.answer("the red one")
    assert r.status == "question" and r.text.startswith("Sorry") and set(r.candidates) == {0, 1, 2}


def as_the_camera_sees(objects, names, shade=1.0):
    """The objects with the camera's colour of their catalog entries (seen_colours.json), under some shading."""
    seen = seen_colours.load()
    return [dataclasses.replace(o, mean_rgb=tuple(float(c) for c in np.clip(np.array(seen[n]) * shade, 0, 1)))
            for o, n in zip(objects, names, strict=True)]


def test_colour_answer_fits_what_the_camera_sees_of_objects_people_call_that_colour():
    # The camera sees the jenga block (catalog: tan) as a dark orange-brown nearer the teddy bear than the word's
    # reference tan (0.53 vs 0.35 from it); by the reference alone "the tan one" would be the bear (validation,
    # session 8: 6 needless "look-alike" questions on "the tan thingy"). By the camera's colour of the entries
    # people call tan, it is the block, under any shading; "the brown one" is still the bear.
    spec = [{"name": "teddy_bear", "box": "top_left", "xy": [-0.05, 0.0]},
            {"name": "jenga_block", "box": "top_left", "xy": [0.05, 0.0]}]
    g = TableGrounder({"the toy": ([0.5, 0.5, 0.0], TR)}, 2, ["teddy bear", "jenga block"])
    for shade in (0.8, 0.9, 1.0, 1.15):
        objects = as_the_camera_sees(scene(spec), ["teddy_bear", "jenga_block"], shade)
        assert lexicon.colour_name(objects[0].mean_rgb) == lexicon.colour_name(objects[1].mean_rgb) == "brown"
        for answer, target in (("the tan one", 1), ("the brown one", 0)):
            d = Dialogue(g, objects)
            d.start("the toy")
            assert d.answer(answer).target == target, (shade, answer)
        # Without the camera's colours (the reference colour only), the tan block is not the nearest to "tan"; the
        # bear is nearer but is not tan either (session 24: the one left must fit the colour named), so it asks.
        d = Dialogue(g, objects, Settings(seen_colours=False))
        d.start("the toy")
        r = d.answer("the tan one")
        assert r.target is None and r.status == "question"


def test_correction_looks_beyond_the_objects_named_and_plain_no_gives_up():
    # The box leaves the right cube and the duck; the grounder ranks "duck" among those two.
    g = TableGrounder({"the yellow one to the top right box": ([0.5, 0.0, 0.45, 0.0, 0.0, 0.05], TR),
                       "no, the duck in the top left box": ([0.02, 0.98, 0.0], [0, 0, 0, 0, 1])}, 5, NOUNS)
    d = Dialogue(g, scene())
    assert d.start("the yellow one to the top right box").status == "question" and set(d.candidates) == {0, 2}
    r = d.answer("no, the duck in the top left box")
    assert (r.status, r.target) == ("done", 3)
    for no in ("neither", "none of them", "no"):
        d = Dialogue(g, scene())
        d.start("the yellow one to the top right box")
        assert d.answer(no).status == "rejected"


def test_a_box_the_words_never_name_is_not_said_however_sure_the_box_head():
    # "is it possible to hoist the duck?": the box head reads the top right box (val2, session 8: 48 of 134 such
    # instructions, p 0.62-1.0), though the words name none. The robot asks for the box; with a box named it acts.
    g = TableGrounder({"is it possible to hoist the duck?": ([0.0, 0.0, 0.0, 0.97, 0.0, 0.03], TR),
                       "is it possible to hoist the duck into the top right box?": ([0, 0, 0, 0.97, 0, 0.03], TR)},
                      5, NOUNS)
    d = Dialogue(g, scene())
    r = d.start("is it possible to hoist the duck?")
    assert r.status == "question" and d.pending == "destination" and d.target == 3, r
    assert (d.answer("the top right one").status, d.destination) == ("done", "top_right")
    r = Dialogue(g, scene()).start("is it possible to hoist the duck into the top right box?")
    assert (r.status, r.target, r.destination) == ("done", 3, "top_right"), r
    r = Dialogue(g, scene(), Settings(box_needs_words=False)).start("is it possible to hoist the duck?")
    assert (r.status, r.destination) == ("done", "top_right"), r


def test_look_alikes_are_asked_about_however_sure_the_model_is():
    table = {"put the red cube in the top right box": ([0.0, 0.85, 0.12, 0.0, 0.0, 0.03], TR),
             "put the red cube in the top left box in the top right box": ([0.0, 0.85, 0.12, 0.0, 0.0, 0.03], TR),
             "put the red cube on the right in the top right box": ([0.12, 0.85, 0.0, 0.0, 0.0, 0.03], TR),
             "put the duck in the top right box": ([0.0, 0.0, 0.0, 0.9, 0.08, 0.02], TR)}
    g = TableGrounder(table, 5, NOUNS)
    d = Dialogue(g, scene())
    r = d.start("put the red cube in the top right box")
    # p 0.85, but the words fit every red cube -- the left one too, though the model gives it p 0 (session 3,
    # last step: a named kind's look-alikes no longer depend on the model's probability)
    assert r.status == "question" and set(r.candidates) == {0, 1, 2}, r
    assert "top left" in r.text and "bottom right" in r.text
    # Words that tell some apart: its box leaves the two red cubes in it; "on the right" rules out the left one of
    # the pair, not the cube in the bottom right box (also on the right of the table).
    r = Dialogue(g, scene()).start("put the red cube in the top left box in the top right box")
    assert r.status == "question" and set(r.candidates) == {0, 1}, r
    r = Dialogue(g, scene()).start("put the red cube on the right in the top right box")
    assert r.status == "question" and set(r.candidates) == {1, 2}, r
    # A sure pick with no look-alike among the likely objects (the ball is not a duck) is acted on.
    assert Dialogue(g, scene()).start("put the duck in the top right box").status == "done"


def test_a_box_that_may_be_the_objects_place_is_checked():
    # The model reads the only box named as the destination, and picks a cube that is in that very box.
    table = {"put the red cube in the top left box": ([0.9, 0.05, 0.05, 0, 0, 0], TL),
             "put the red cube in the": ([0.34, 0.33, 0.33, 0, 0, 0], [0, 0, 0, 0, 1])}
    g = TableGrounder(table, 5, NOUNS)
    d = Dialogue(g, scene())
    r = d.start("put the red cube in the top left box")
    assert r.status == "question" and set(r.candidates) == {0, 1, 2}       # which red cube?
    r = d.answer("the one in the bottom right box")
    assert (r.status, r.target, r.destination) == ("done", 2, "top_left")  # elsewhere: the box was the goal
    d = Dialogue(g, scene())
    d.start("put the red cube in the top left box")
    d.answer("the top left one")
    r = d.answer("the one on the left")
    assert r.status == "question" and r.text.startswith("It is already in the top left box") and \
        d.pending == "destination"
    assert (d.answer("bottom left").status, d.target, d.destination) == ("done", 0, "bottom_left")


def test_scripted_person_answers_the_question_that_was_asked():
    objs = scene()
    sample = Sample("put the red cube in the top right box", objs, ["red_cube"] * 3 + ["duck", "blue_ball"],
                    [0, 1, 2], "top_right", "ambiguous", 1, answer="the one on the right")
    ask = lambda named: scripted_answer(sample, "target", Reply("question", "?", candidates=named))  # noqa: E731
    assert ask([0, 1]) == "the one on the right"                       # the generator's answer does it
    assert ask([0, 1, 2]) == "the one on the right in the top left box"  # across boxes it needs the box
    assert ask([1, 2]) == "the one in the top left box"
    assert ask([0, 2]).startswith("no, ")                              # the target was not named
    assert scripted_answer(sample, "confirm", Reply("question", "?", candidates=[1])) == "yes"
    assert scripted_answer(sample, "destination", Reply("question", "?")) == "top right"


def test_words_name_kinds_of_objects_from_the_catalog():
    assert said_kinds("put the can in the top left box") == {"red_cylinder", "green_cylinder", "blue_cylinder",
                                                             "yellow_cylinder"}
    assert said_kinds("the round block") == said_kinds("the can")             # longest phrase: not a cube "block"
    assert said_kinds("the yellow building block") == {"lego_brick"}
    assert said_kinds("grab the ball you kick") == {"soccer_ball"}
    assert said_kinds("the red box in the top left box") == said_kinds("the cube")    # a box after a colour
    # No kind: a colour and a generic word, "can" as a verb, a box, a landmark of a relation.
    for text in ("the blue item", "can you put the red one in the top left box", "move it to the bottom right box",
                 "the tan object you can see in the box at the top", "the green thing to the left of the duck",
                 "the green one on the duck's left"):
        assert said_kinds(text) == set(), text
    # In the colour the other words say: no green duck in the catalog.
    assert said_kinds("the red can", colour=True) == {"red_cylinder"}
    assert said_kinds("the green duck", colour=True) == set() and said_kinds("the yellow duck", colour=True)


def test_a_sure_pick_of_another_kind_than_the_words_name_is_asked_about():
    # The model is sure of a red cube, but the words say "duck" (the duck is the likely answer) or "can" (no
    # cylinder here): the robot asks instead of moving the cube.
    table = {"put the duck in the top right box": ([0.9, 0.0, 0.0, 0.06, 0.0, 0.04], TR),
             "put the can in the top right box": ([0.9, 0.0, 0.0, 0.06, 0.0, 0.04], TR)}
    g = TableGrounder(table, 5, NOUNS)
    d = Dialogue(g, scene())
    r = d.start("put the duck in the top right box")
    assert r.status == "question" and d.pending == "confirm" and r.candidates == [3] and "duck" in r.text
    assert d.why == "pick not of the kind named"     # the rule that made it ask, for the bench's breakdown
    assert (d.answer("yes").status, d.target) == ("done", 3)
    d = Dialogue(g, scene())
    r = d.start("put the can in the top right box")
    assert r.status == "question" and r.candidates == [0]
    assert d.answer("no").status == "rejected"                  # nothing moved


def test_words_that_name_no_kind_fit_every_object_of_their_colour():
    # "the red item": the other red cubes fit the words however unlikely the model finds them; "the duck" with
    # the same kind of sure pick is acted on (the only duck here).
    g = TableGrounder({"put the red item in the top right box": ([0.9, 0.0, 0.0, 0.05, 0.05, 0.0], TR),
                       "put the duck in the top right box": ([0.0, 0.0, 0.0, 0.9, 0.05, 0.05], TR)}, 5, NOUNS)
    d = Dialogue(g, scene())
    r = d.start("put the red item in the top right box")
    assert r.status == "question" and set(r.candidates) == {0, 1, 2} and d.why == "look-alikes", r
    r = Dialogue(g, scene()).start("put the duck in the top right box")
    assert (r.status, r.target) == ("done", 3)


def test_every_object_of_the_kind_and_colour_named_is_a_look_alike():
    # A sharp model is sure of one cube (p 1.0) when the words fit several: "the cube" fits every cube, "the red
    # cube" the red ones, whatever probability the model gives them (the session-3 candidate D acted on 17
    # "square block" / "can" instructions with look-alikes this way). Words that locate it (its box) decide.
    spec = [{"name": "red_cube", "box": "top_left", "xy": [0.0, 0.0]},
            {"name": "blue_cube", "box": "bottom_right", "xy": [0.0, 0.0]},
            {"name": "red_cube", "box": "bottom_left", "xy": [0.0, 0.0]},
            {"name": "duck", "box": "top_left", "xy": [0.0, 0.07]}]
    sure = ([1.0, 0.0, 0.0, 0.0, 0.0], TR)
    texts = ["put the cube in the top right box", "put the red cube in the top right box",
             "put the blue cube in the top right box", "put the red cube in the top left box in the top right box"]
    g = TableGrounder({**{t: sure for t in texts}, "put the blue cube in the top right box": ([0, 1.0, 0, 0, 0], TR)},
                      4, ["cube", "cube", "cube", "duck"])
    objects = scene(spec)
    d = Dialogue(g, objects)
    r = d.start("put the cube in the top right box")
    assert r.status == "question" and set(r.candidates) == {0, 1, 2} and d.why == "look-alikes", r
    assert (d.answer("the blue one").status, d.target) == ("done", 1)
    r = Dialogue(g, objects).start("put the red cube in the top right box")
    assert r.status == "question" and set(r.candidates) == {0, 2}, r           # not the blue cube
    r = Dialogue(g, objects).start("put the blue cube in the top right box")
    assert (r.status, r.target) == ("done", 1)                                 # the only blue cube
    r = Dialogue(g, objects).start(texts[3])   # its box: the words locate it
    assert (r.status, r.target) == ("done", 0)
    # Without the rule, the model's probability alone decides (p 0 for the other cubes): it moves the red cube.
    r = Dialogue(g, objects, Settings(kind_twins=False)).start("put the cube in the top right box")
    assert (r.status, r.target) == ("done", 0)


def test_the_robot_asks_instead_of_refusing_when_a_kind_the_words_name_is_here():
    # The model puts most mass on "none of them" (a wording it never saw), but the words name a duck and there is
    # one: ask about it. A duck in a colour the catalog has none of, or a kind not here, is still refused.
    none_wins = ([0.05, 0.0, 0.0, 0.1, 0.0, 0.85], TR)
    g = TableGrounder({t: none_wins for t in ("put the little yellow bird in the top right box",
                                              "put the green duck in the top right box",
                                              "put the teddy bear in the top right box")}, 5, NOUNS)
    d = Dialogue(g, scene())
    r = d.start("put the little yellow bird in the top right box")
    assert r.status == "question" and r.candidates == [3] and d.pending == "confirm"
    assert (d.answer("yes").status, d.target) == ("done", 3)
    for text in ("put the green duck in the top right box", "put the teddy bear in the top right box"):
        assert Dialogue(g, scene()).start(text).status == "rejected", text


def test_an_answer_the_cameras_colours_cannot_settle_is_ranked_by_the_model():
    # A red cube and a red mug: "the red one" fits both by colour, so the grounder ranks the answer among them; an
    # answer the model finds unlikely for every object ("none" wins) is still ranked among the ones it answers.
    spec = [{"name": "red_cube", "box": "top_left", "xy": [-0.05, 0.0]},
            {"name": "mug", "box": "top_left", "xy": [0.05, 0.0]},
            {"name": "blue_ball", "box": "top_right", "xy": [0.0, 0.0]}]
    g = TableGrounder({"put the red thing in the top right box": ([0.5, 0.45, 0.0, 0.05], TR),
                       "the red one": ([0.1, 0.9, 0.0], TR), "the mug please": ([0.05, 0.15, 0.8], TR)}, 3,
                      ["cube", "mug", "ball"])
    for answer in ("the red one", "the mug please"):
        d = Dialogue(g, scene(spec))
        assert d.start("put the red thing in the top right box").status == "question" and set(d.candidates) == {0, 1}
        r = d.answer(answer)
        assert (r.status, r.target) == ("done", 1), (answer, r)


def test_a_ball_is_a_look_alike_of_the_words_ball_but_not_of_soccer_ball():
    # "ball" is a synonym of the soccer ball as well, but an object the model calls "ball" (not "soccer ball") is one
    # of the coloured balls: it fits "the ball", not "the soccer ball" (measured: on training phrasings the look-alike
    # rule asked about every ball for "the black and white ball" until this distinction).
    spec = [{"name": "soccer_ball", "box": "top_left", "xy": [0.0, 0.0]},
            {"name": "red_ball", "box": "bottom_left", "xy": [0.0, 0.0]}]
    sure = ([1.0, 0.0, 0.0], TR)
    g = TableGrounder({"put the soccer ball in the top right box": sure, "put the ball in the top right box": sure},
                      2, ["soccer ball", "ball"])
    objects = scene(spec)
    r = Dialogue(g, objects).start("put the soccer ball in the top right box")
    assert (r.status, r.target) == ("done", 0)
    r = Dialogue(g, objects).start("put the ball in the top right box")
    assert r.status == "question" and set(r.candidates) == {0, 1}, r


def test_words_that_single_out_the_models_pick_are_acted_on_below_the_gate():
    # On unseen wording the model can be right but unsure (p 0.5 < 0.7). When the kind, the colour and the box the
    # words locate it in fit exactly one object, and that is the pick, the robot acts; otherwise it still asks.
    unsure = [0.5, 0.3, 0.1, 0.07, 0.0, 0.03]
    table = {t: (unsure, TR) for t in ("put the duck in the top right box",
                                       "put the red cube in the bottom right box in the top right box",
                                       "put the red cube on the extreme left in the top left box in the top right box",
                                       "put the red cube in the top left box in the top right box")}
    table["put the duck in the top right box"] = ([0.0, 0.0, 0.0, 0.5, 0.47, 0.03], TR)
    table["put the duck into the top right box"] = ([0.0, 0.0, 0.0, 0.5, 0.3, 0.2], TR)
    table["put the red cube in the bottom right box in the top right box"] = ([0.2, 0.27, 0.5, 0.0, 0.0, 0.03], TR)
    table["put the duck to the top right box"] = ([0.0, 0.0, 0.0, 0.5, 0.47, 0.03], [0.3, 0.3, 0.2, 0.2, 0.0])
    table["put the thing in the top right box"] = ([0.0, 0.0, 0.0, 0.5, 0.47, 0.03], TR)
    table["put the ball in the top right box"] = ([0.0, 0.0, 0.0, 0.5, 0.47, 0.03], TR)
    g = TableGrounder(table, 5, NOUNS)
    for text, target in (("put the duck in the top right box", 3),        # the only duck
                         ("put the red cube in the bottom right box in the top right box", 2),   # the only cube there
                         ("put the red cube on the extreme left in the top left box in the top right box", 0)):
        r = Dialogue(g, scene()).start(text)
        assert (r.status, r.target, r.destination) == ("done", target, "top_right"), (text, r)
        # The same words with the rule off: p 0.5 is below the gate, so it asks.
        assert Dialogue(g, scene(), Settings(singled_out=False)).start(text).status == "question", text
    # Two red cubes in the box named and no side: not singled out. The pick is not the one object the words fit
    # (the ball, not the duck), "none of them" is plausible too (p 0.2 vs 0.5), the words name no kind, or the box
    # is unsure: ask.
    for text in ("put the red cube in the top left box in the top right box", "put the duck into the top right box",
                 "put the thing in the top right box", "put the duck to the top right box"):
        d = Dialogue(g, scene())
        assert d.start(text).status == "question" and d.pending == "target" and d.target is None, text


def test_the_one_object_the_words_single_out_is_acted_on_even_when_it_is_not_the_models_pick():
    # "the ball": the model, unsure, prefers the duck (0.5) to the only ball (0.47). The words single the ball out,
    # and the robot would have asked about it, so it acts on the ball; not when the model gives the ball less than
    # pool_ratio of its pick (it would not even have asked about it), nor with the rule off.
    table = {"put the ball in the top right box": ([0.0, 0.0, 0.0, 0.5, 0.47, 0.03], TR),
             "put the ball into the top right box": ([0.0, 0.0, 0.0, 0.62, 0.05, 0.03], TR)}
    g = TableGrounder(table, 5, NOUNS)
    r = Dialogue(g, scene()).start("put the ball in the top right box")
    assert (r.status, r.target, r.destination) == ("done", 4, "top_right"), r
    d = Dialogue(g, scene(), Settings(singled_out_any=False))
    assert d.start("put the ball in the top right box").status == "question" and d.why == "below ask_below"
    d = Dialogue(g, scene())
    assert d.start("put the ball into the top right box").status == "question" and d.why == "below ask_below"


def test_singling_out_needs_firm_evidence_both_to_rule_out_and_to_keep():
    # Words that name no kind fit every object of the colour said: the blue ball is the only blue object.
    unsure = ([0.0, 0.0, 0.0, 0.42, 0.55, 0.03], TR)
    g = TableGrounder({"put the blue thingy in the top right box": unsure}, 5, NOUNS)
    assert Dialogue(g, scene()).start("put the blue thingy in the top right box").target == 4
    # A red cube in shade looks brown, a colour no cube comes in: it may still be the red one, so it is not ruled
    # out and the robot asks. A cube the camera sees blue is ruled out (cubes come in blue).
    shaded = dataclasses.replace(scene()[2], mean_rgb=lexicon.PALETTE["brown"])
    table = {"put the red cube in the top left box in the top right box": ([0.55, 0.42, 0.0, 0.0, 0.0, 0.03], TR),
             "put the green cube in the bottom right box in the top right box": ([0, 0, 0.55, 0.42, 0, 0.03], TR)}
    g = TableGrounder(table, 5, NOUNS)
    objects = scene()
    objects[1] = dataclasses.replace(objects[1], mean_rgb=lexicon.PALETTE["brown"])
    r = Dialogue(g, objects).start("put the red cube in the top left box in the top right box")
    assert r.status == "question" and r.target is None, r
    objects[1] = dataclasses.replace(objects[1], mean_rgb=lexicon.PALETTE["blue"])
    r = Dialogue(g, objects).start("put the red cube in the top left box in the top right box")
    assert (r.status, r.target) == ("done", 0), r
    # The pick must fit firmly too: the only cube left in the box named for "the green cube" is one seen brown
    # (fits only for want of evidence against it), so the robot asks rather than moves it.
    objects = [*scene()[:2], shaded, *scene()[3:]]
    r = Dialogue(g, objects).start("put the green cube in the bottom right box in the top right box")
    assert r.status == "question" and r.target is None, r


def test_right_as_an_adverb_is_not_a_side():
    # "... right away" said both sides to lexicon.side, so the side in "on the extreme left" was lost and the other
    # red cube in that box counted as a look-alike (session 5: 9 of the 21 needless look-alike questions on the
    # validation phrasings).
    text = "get the cube on the extreme left in the top right box into the top left box right away"
    assert lexicon.side(text) == "left"
    assert lexicon.side("the cube on the right, right now") == "right"
    assert lexicon.side("the one on the left or the right") is None
    sure = ([0.97, 0.0, 0.0, 0.0, 0.0, 0.03], TR)
    text = "get the red cube on the extreme left in the top left box into the top right box right away"
    r = Dialogue(TableGrounder({text: sure}, 5, NOUNS), scene()).start(text)
    assert (r.status, r.target, r.destination) == ("done", 0, "top_right"), r


def test_the_box_the_words_leave_for_the_destination_settles_an_unsure_box_head():
    # The box head is unsure (p 0.45 < 0.6) but its pick is the only box the words can mean as the destination:
    # the duck is in the top left box, so "the top right box" is where it goes, and of two boxes named the one it
    # is not in is. When the one box named is where the duck already is, ask; when the head picks another box than
    # the one the words leave, the words decide (session 7: test_grounding_box_reading.py).
    unsure_tr = [0.2, 0.45, 0.2, 0.15, 0.0]
    duck = [0.0, 0.0, 0.0, 0.95, 0.0, 0.05]
    table = {t: (duck, unsure_tr) for t in ("the duck belongs in the top right box",
                                            "the duck placed in the top left box belongs in the top right box",
                                            "the duck belongs in the bottom left box")}
    table["the duck in the top left box"] = (duck, [0.45, 0.2, 0.2, 0.15, 0.0])
    g = TableGrounder(table, 5, NOUNS)
    for text, box in (("the duck belongs in the top right box", "top_right"),
                      ("the duck placed in the top left box belongs in the top right box", "top_right"),
                      ("the duck belongs in the bottom left box", "bottom_left")):
        r = Dialogue(g, scene()).start(text)
        assert (r.status, r.target, r.destination) == ("done", 3, box), (text, r)
    d = Dialogue(g, scene())
    assert d.start("the duck in the top left box").status == "question" and d.pending == "destination"


def test_words_that_name_no_kind_fit_the_objects_nearest_their_colour():
    # "the tan thingy": the camera calls the tan block brown, like the teddy bear, and sees the bear nearer the
    # reference tan than the block; but the block is what the camera sees of the objects people call tan, so the
    # bear is no look-alike (with the reference colour only, it is).
    spec = [{"name": "jenga_block", "box": "top_left", "xy": [-0.05, 0.0]},
            {"name": "teddy_bear", "box": "bottom_left", "xy": [0.0, 0.0]},
            {"name": "blue_ball", "box": "top_right", "xy": [0.0, 0.0]}]
    objects = as_the_camera_sees(scene(spec), [s["name"] for s in spec], shade=0.9)
    assert lexicon.colour_name(objects[0].mean_rgb) == lexicon.colour_name(objects[1].mean_rgb) == "brown"
    sure = ([0.97, 0.0, 0.0, 0.03], TR)
    g = TableGrounder({"put the tan thingy in the top right box": sure,
                       "put the black thingy in the top right box": sure}, 3, ["jenga block", "teddy bear", "ball"])
    r = Dialogue(g, objects).start("put the tan thingy in the top right box")
    assert (r.status, r.target) == ("done", 0), r
    d = Dialogue(g, objects, Settings(seen_colours=False))
    assert d.start("put the tan thingy in the top right box").status == "question" and d.why == "look-alikes"
    # A colour the pick is not the nearest object to: the camera's colour word decides, as before (both brown).
    d = Dialogue(g, objects)
    assert d.start("put the black thingy in the top right box").status == "question" and d.why == "look-alikes"


def test_the_box_is_a_cube_unless_it_is_the_place_something_goes():
    # "the box" is a catalog name of the cubes; after a preposition of place it is a container. Read as no kind,
    # "the box" made every object of the pick's colour a look-alike (session 5: 3 needless questions on the
    # validation phrasings) and never checked that the pick is a cube.
    cubes = said_kinds("the cube")
    for text in ("the box belongs in the bottom right slot", "grab the box", "the box needs to go to the top left box",
                 "I would love the box lying in the upper right slot in the top left spot"):
        assert said_kinds(text) == cubes, text
    for text in ("put the duck in the box at the top right", "the box at the top right is where the duck should go",
                 "put the duck into the box on the left at the top",
                 "take the duck out of the box"):
        assert said_kinds(text) == said_kinds("the duck"), text
    # The only cube here, sure: acted on, though a red mug has the same colour word.
    spec = [{"name": "red_cube", "box": "top_left", "xy": [0.0, 0.0]},
            {"name": "mug", "box": "bottom_left", "xy": [0.0, 0.0]},
            {"name": "blue_ball", "box": "top_right", "xy": [0.0, 0.0]}]
    objects = scene(spec)
    assert lexicon.colour_name(objects[0].mean_rgb) == lexicon.colour_name(objects[1].mean_rgb) == "red"
    g = TableGrounder({"the box belongs in the top right box": ([0.97, 0.0, 0.0, 0.03], TR),
                       "the box belongs in the bottom right box": ([0.0, 0.97, 0.0, 0.03], TR)}, 3,
                      ["cube", "mug", "ball"])
    r = Dialogue(g, objects).start("the box belongs in the top right box")
    assert (r.status, r.target) == ("done", 0), r
    # A sure pick that is not a cube is asked about, as for any kind named.
    d = Dialogue(g, objects)
    assert d.start("the box belongs in the bottom right box").status == "question"
    assert d.why == "pick not of the kind named"


def test_an_answer_whose_box_leaves_one_object_must_fit_its_kind_and_colour_too():
    """The box used to decide alone once it left one object: "the duck in the bottom right box" picked the red cube
    there. Now such an answer fits none of the objects named; nothing else fits it either, so the robot asks again."""
    g = TableGrounder({"the red cube to the top right box": ([0.34, 0.33, 0.33, 0, 0, 0], TR)}, 5, NOUNS)
    for answer in ("the duck in the bottom right box", "the blue one in the bottom right box",
                   "the blue ball in the bottom right box"):
        d = Dialogue(g, scene())
        d.start("the red cube to the top right box")
        r = d.answer(answer)
        assert r.status == "question" and r.target is None and r.text.startswith(("Sorry", "None of them is blue")), \
            (answer, r)
    for answer in ("the red one in the bottom right box", "the cube in the bottom right box"):  # fitting words
        d = Dialogue(g, scene())
        d.start("the red cube to the top right box")
        assert (d.answer(answer).target, d.finished.status) == (2, "done"), answer


def test_the_first_one_means_something_only_after_a_question_that_named_them_in_order():
    g = TableGrounder({"the red cube to the top right box": ([0.34, 0.33, 0.33, 0, 0, 0], TR)}, 5, NOUNS)
    d = Dialogue(g, scene(), Settings(max_candidates=2))  # three candidates: asked about by box, in no order
    assert "Which one do you mean?" in d.start("the red cube to the top right box").text
    r = d.answer("the first one")
    assert r.status == "question" and r.target is None
    d = Dialogue(g, scene())  # named one by one: "the second one" is the second named
    d.start("the red cube to the top right box")
    assert d.answer("the second one").target == 1


def test_a_new_instruction_given_as_the_answer_to_which_box_starts_over_with_it():
    """Asked where the duck goes, "put the blue ball in the top right box" is not a box for the duck."""
    g = TableGrounder({"pick up the duck": ([0, 0, 0, 0.95, 0.05, 0], [0.1, 0.1, 0.1, 0.1, 0.6]),
                       "put the blue ball in the top right box": ([0, 0, 0, 0.02, 0.98, 0], TR)}, 5, NOUNS)
    d = Dialogue(g, scene())
    assert d.start("pick up the duck").status == "question" and d.pending == "destination"
    r = d.answer("put the blue ball in the top right box")
    assert (r.status, r.target, r.destination) == ("done", 4, "top_right")
    assert [h["text"] for h in d.history][:2] == ["pick up the duck", d.history[1]["text"]]  # earlier turns kept
    d = Dialogue(g, scene())
    d.start("pick up the duck")
    assert (d.answer("the duck goes in the top right box").target, d.finished.destination) == (3, "top_right")


def test_an_instruction_too_long_to_read_whole_is_refused_not_cut():
    g = TableGrounder({}, 5, NOUNS)
    long = "move the duck to the top right box, " + "and so on " * 40 + "no, leave the duck, move the ball"
    r = Dialogue(g, scene()).start(long)
    assert r.status == "rejected" and "too long" in r.text and r.target is None


def test_a_restarted_dialogue_reads_its_own_instruction_and_keeps_counting_questions():
    """After a restart the box words came from the old instruction ("from the top left box") and overwrote the box
    the new one said; and the question count started again, so max_turns no longer bounded the conversation."""
    BL = [0, 0, 1, 0, 0]
    g = TableGrounder({"pick up the duck from the top left box": ([0, 0, 0, 0.95, 0.05, 0], [0.1, 0.1, 0.1, 0.1, 0.6]),
                       "put a red cube in the bottom left box": ([0.34, 0.33, 0.33, 0, 0, 0], BL)}, 5, NOUNS)
    d = Dialogue(g, scene())
    d.start("pick up the duck from the top left box")
    assert d.answer("put a red cube in the bottom left box").status == "question"
    assert d.instruction == "put a red cube in the bottom left box"
    r = d.answer("the one in the bottom right box")
    assert (r.status, r.target, r.destination) == ("done", 2, "bottom_left")
    d = Dialogue(g, scene(), Settings(max_turns=2))
    d.start("pick up the duck from the top left box")
    d.answer("put a red cube in the bottom left box")          # the second question
    assert d.answer("xyzzy").status == "rejected"              # a third is one too many
