"""The scene-aware "none of them" (model.SceneNone) and the colour head (model.ColourHead): the none logit reads the
scene, it can learn what a words-only none cannot, checkpoints with or without them load, empty or padded scenes
stay finite, and the colour labels training uses are the colour the words give the object. No trained weights."""
import torch

from koba_ros.grounding.features import BASE_DIM, BOX_COLUMNS, PAIR_DIM
from koba_ros.grounding.instructions import COLOURS, Sample
from koba_ros.grounding.model import GroundingNet, SceneNone, soft_cross_entropy
from koba_ros.grounding.training import said_colour

TEXT_DIM, APP_DIM, N = 16, 21, 5


def inputs(seed: int, batch: int = 3):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, 7, TEXT_DIM, generator=g)
    mask = torch.ones(batch, 7, dtype=torch.bool)
    objects = torch.randn(batch, N, BASE_DIM + APP_DIM, generator=g)
    objects[..., BOX_COLUMNS] = torch.eye(4)[torch.randint(4, (batch, N), generator=g)]   # each object in one box
    pairs = torch.randn(batch, N, N, PAIR_DIM, generator=g)
    return states, mask, objects, pairs, torch.ones(batch, N, dtype=torch.bool)


def net(scene_none: bool) -> GroundingNet:
    torch.manual_seed(0)
    n = GroundingNet(TEXT_DIM, APP_DIM, hidden=16)
    n.use_location()
    if scene_none:
        n.use_scene_none()
        n.use_colour()
    return n.eval()


def test_none_logit_reads_the_scene_only_with_scene_none():
    states, mask, objects, pairs, obj_mask = inputs(0)
    other_objects = inputs(1)[2]
    for scene_none, differs in ((False, False), (True, True)):
        n = net(scene_none)
        with torch.no_grad():
            a = n(states, mask, objects, pairs, obj_mask)[0][:, -1]
            b = n(states, mask, other_objects, pairs, obj_mask)[0][:, -1]
        assert (not torch.allclose(a, b)) == differs, (scene_none, a, b)


def test_checkpoints_with_and_without_it_load_into_a_fresh_net():
    for scene_none in (False, True):
        state = net(scene_none).state_dict()
        fresh = GroundingNet(TEXT_DIM, APP_DIM, hidden=16)
        fresh.load_state_dict(state)
        assert (fresh.scene_none is not None) == scene_none and (fresh.colour is not None) == scene_none
        with torch.no_grad():
            x = inputs(2)
            assert torch.allclose(fresh.eval()(*x)[0], net(scene_none)(*x)[0])


def test_it_learns_a_decision_a_words_only_none_cannot():
    """Same words everywhere ("the green duck"): the right answer is "none" exactly when the best candidate's
    match m is low although its catalog fit is high. A words-only none logit is one constant for all scenes and
    gets half wrong; SceneNone learns it from the features of the best candidate."""
    g = torch.Generator().manual_seed(0)
    b, n = 512, N
    feats = torch.randn(b, n, SceneNone.FEATURES, generator=g)
    scores = feats[..., 3]
    best = scores.argmax(-1)
    absent = feats[torch.arange(b), best, 0] < 0                      # best candidate's match is low -> none
    target = torch.zeros(b, n + 1)
    target[torch.arange(b), best] = (~absent).float()
    target[absent, n] = 1.0
    mask = torch.ones(b, n, dtype=torch.bool)
    torch.manual_seed(0)
    head, words_only = SceneNone(), torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([*head.parameters(), words_only], lr=0.02)
    for _ in range(300):
        loss = soft_cross_entropy(torch.cat([scores, (head(feats, scores, mask) + words_only)[:, None]], -1), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        said_none = head(feats, scores, mask) + words_only > scores.max(-1).values
    assert (said_none == absent).float().mean() >= 0.9
    assert max(absent.float().mean(), 1 - absent.float().mean()) <= 0.6     # a constant would get this at best


def test_empty_and_padded_scenes_stay_finite():
    states, mask, objects, pairs, obj_mask = inputs(3)
    obj_mask[0] = False              # no object at all
    obj_mask[1, 2:] = False          # padding
    with torch.no_grad():
        target = net(True)(states, mask, objects, pairs, obj_mask)[0]
    assert torch.isfinite(target[:, -1]).all()
    assert torch.isfinite(target.log_softmax(-1)).all()


def test_said_colour_is_the_colour_the_words_give_the_object():
    colour_of = {"duck": "yellow", "red_ball": "red", "blue_cube": "blue"}
    names = ["duck", "red_ball", "blue_cube"]

    def said(text, referents):
        s = Sample(text, [], names, referents, None, "clear" if referents else "absent", None)
        return (*COLOURS, "not said")[said_colour(s, colour_of)]

    assert said("put the yellow duck in the top left box", [0]) == "yellow"
    assert said("put the duck left of the red ball in the top left box", [0]) == "not said"   # landmark's colour
    assert said("put the green duck in the top left box", []) == "green"                     # absent: what is asked
    assert said("put the duck in the box", [0]) == "not said"
