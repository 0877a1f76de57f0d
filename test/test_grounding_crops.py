"""Crop features in the grounding model: the crop window and channels, the crop encoder's inputs and errors, old
checkpoints unchanged, and a crop model that trains (synthetic data only: no rendering, no MiniLM)."""
import numpy as np
import pytest
import torch

from koba_ros.errors import KobaError
from koba_ros.grounding.crop_encoder import CROP_DIM, CropEncoder, crop_tensor, predict_kinds, pretrain
from koba_ros.grounding.features import BASE_DIM, PAIR_DIM
from koba_ros.grounding.grounder import Member, batch_inputs, default_model_path, single_model_path
from koba_ros.grounding.model import GroundingNet, soft_cross_entropy
from koba_ros.perception.crops import CHANNELS, SIDE, object_crop, object_crops
from koba_ros.perception.objects import PerceivedObject

APP_DIM = 4


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # more threads on a busy 2-core machine are many times slower
    yield
    torch.set_num_threads(threads)


def _frame_with_block(x0: int, y0: int, w: int, h: int):
    """A 120x160 frame: grey table at 0.80 m, a red block 3 cm higher (0.77 m) at the given pixels."""
    rgb = np.full((120, 160, 3), 90, np.uint8)
    depth = np.full((120, 160), 0.80, np.float32)
    mask = np.zeros((120, 160), bool)
    mask[y0:y0 + h, x0:x0 + w] = True
    rgb[mask] = (220, 20, 20)
    depth[mask] = 0.77
    obj = PerceivedObject(id=0, bbox=(x0, y0, w, h), position=(0, 0, 0), size=(0.03, 0.02, 0.03), box="top_left",
                          mean_rgb=(0.86, 0.08, 0.08), mask=mask)
    return rgb, depth, obj


def test_crop_is_square_centred_and_keeps_mask_and_height():
    rgb, depth, obj = _frame_with_block(60, 40, 30, 20)
    crops = object_crops(rgb, depth, [obj])
    assert crops.shape == (1, CHANNELS, SIDE, SIDE) and crops.dtype == np.uint8
    c = SIDE // 2
    assert tuple(crops[0, :3, c, c]) == (220, 20, 20)          # the object sits in the middle
    assert crops[0, 3, c, c] == 255 and crops[0, 3, 2, 2] == 0   # its mask; the table around it is not
    assert crops[0, 4, c, c] == 75 and crops[0, 4, 2, 2] == 0    # 3 cm = 75 x 0.4 mm above the window's floor
    # A wide bbox in a square window: the block spans the width but not the height.
    assert crops[0, 3, c, 6] == 255 and crops[0, 3, 6, c] == 0


def test_crop_at_the_image_edge_is_zero_outside_the_image():
    rgb, depth, obj = _frame_with_block(0, 0, 12, 12)
    crop = object_crop(rgb, depth, obj.bbox, obj.mask)
    assert crop[:3, 0, 0].tolist() == [0, 0, 0]                 # outside the image
    assert tuple(crop[:3, SIDE // 2, SIDE // 2]) == (220, 20, 20)


def test_missing_depth_counts_as_floor_not_as_garbage():
    rgb, depth, obj = _frame_with_block(60, 40, 30, 20)
    depth[:, :70] = np.nan                                       # a RealSense leaves holes (NaN or 0)
    depth[:, 85:] = 0.0
    crop = object_crop(rgb, depth, obj.bbox, obj.mask)
    assert crop[4, SIDE // 2, SIDE // 2] == 75 and crop[4, SIDE // 2, 1] == 0


def _objects(n: int, rng: np.random.Generator, crops: bool = True) -> list[PerceivedObject]:
    boxes = ("top_left", "top_right", "bottom_left", "bottom_right")
    return [PerceivedObject(id=i, bbox=(int(rng.integers(0, 500)), int(rng.integers(0, 400)), 30, 30),
                            position=(0.0, 0.0, 0.0), size=(0.04, 0.04, 0.03), box=boxes[i % 4],
                            mean_rgb=tuple(rng.random(3)), features=rng.random(APP_DIM).astype(np.float32),
                            crop=rng.integers(0, 256, (CHANNELS, SIDE, SIDE), dtype=np.uint8) if crops else None)
            for i in range(n)]


def test_crop_tensor_shape_and_one_line_errors():
    rng = np.random.default_rng(0)
    objs = _objects(3, rng)
    x = crop_tensor(objs)
    assert x.shape == (3, CHANNELS, SIDE, SIDE) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    net = GroundingNet(8, APP_DIM, 16)
    net.use_crops()
    missing = _objects(2, rng, crops=False)
    with pytest.raises(KobaError, match=r"^object 0 has no crop; .*\)$"):
        batch_inputs(["the duck"], [missing], lambda t: (torch.zeros(1, 2, 8), torch.ones(1, 2, dtype=bool)), net,
                     APP_DIM)
    objs[1].crop = np.zeros((3, SIDE, SIDE), np.uint8)            # an RGB-only crop (the old HxWx3 kind, say)
    with pytest.raises(KobaError, match="object 1 has a crop of shape"):
        crop_tensor(objs)


def test_crop_features_are_computed_once_per_object():
    rng = np.random.default_rng(1)
    objs = _objects(4, rng)
    enc = CropEncoder()
    first = enc.embed(objs)
    assert first.shape == (4, CROP_DIM) and len(enc.memo) == 4
    calls = []
    enc.conv.register_forward_hook(lambda *_: calls.append(1))
    again = enc.embed(objs[::-1])                                # other turn, other order: memo, no CNN
    assert calls == [] and torch.equal(again, first.flip(0))
    objs[0].crop = objs[0].crop.copy()                           # a new frame's crop is a new array: computed
    enc.embed(objs)
    assert calls == [1]


@pytest.mark.parametrize("path", sorted(default_model_path().parent.glob("grounding*.pt")), ids=lambda p: p.name)
def test_every_committed_model_loads_without_a_crop_encoder(path):
    member = Member(path, minilm=lambda: None)    # strict load_state_dict: no missing or unexpected weights
    assert member.net.crop_encoder is None and member.net.object_dim == BASE_DIM + member.appearance_dim


def test_old_checkpoint_loads_and_reads_the_same_inputs_as_before():
    """The committed default has no crop encoder: it loads strictly, its object features keep their width
    (BASE_DIM + appearance) and objects without crops ground as before. (Checked once in session 6: the then default,
    now grounding_session4.pt, grounding_byte.pt and grounding_session1.pt give bit-identical probabilities before and
    after the crop encoder change on 225 validation texts, single and batched; docs/grounding.md.)"""
    ckpt = torch.load(single_model_path(), map_location="cpu", weights_only=True)
    assert not any(k.startswith("crop_encoder.") for k in ckpt["state_dict"])
    member = Member(single_model_path(), minilm=lambda: None)
    assert member.net.crop_encoder is None
    assert member.net.object_dim == BASE_DIM + member.appearance_dim == member.net.obj_mean.shape[0]
    rng = np.random.default_rng(2)
    objs = _objects(5, rng, crops=False)
    for o in objs:
        o.features = rng.random(member.appearance_dim).astype(np.float32)
    states = torch.randn(1, 4, member.net.text_dim)
    inputs = batch_inputs(["x"], [objs], lambda t: (states, torch.ones(1, 4, dtype=torch.bool)), member.net,
                          member.appearance_dim)
    assert inputs[2].shape == (1, 5, BASE_DIM + member.appearance_dim)


def _synthetic_batch(rng, net, n_texts=8, n_obj=6):
    objs = _objects(n_obj, rng)
    states = torch.randn(n_texts, 5, net.text_dim, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(n_texts, 5, dtype=torch.bool)
    inputs = batch_inputs(["x"] * n_texts, [objs] * n_texts, lambda t: (states, mask), net, APP_DIM)
    target = torch.zeros(n_texts, n_obj + 1)
    target[torch.arange(n_texts), torch.arange(n_texts) % n_obj] = 1.0
    return inputs, target


def test_a_crop_model_trains_a_few_steps_with_its_encoder_frozen():
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    net = GroundingNet(8, APP_DIM, 16)
    net.use_crops()
    frozen = {k: v.clone() for k, v in net.crop_encoder.state_dict().items()}
    inputs, target = _synthetic_batch(rng, net)
    assert inputs[2].shape[-1] == BASE_DIM + APP_DIM + CROP_DIM == net.object_dim and inputs[3].shape[-1] == PAIR_DIM
    opt = torch.optim.AdamW(net.parameters(), 1e-2)
    net.train()
    losses = []
    for _ in range(30):
        loss = soft_cross_entropy(net(*inputs)[0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert not net.crop_encoder.training                        # its BatchNorm statistics stay the pretrained ones
    assert all(torch.equal(v, net.crop_encoder.state_dict()[k]) for k, v in frozen.items())
    # Saved and loaded like any checkpoint: a fresh net gets the crop encoder from the weights, same outputs.
    net.eval()
    fresh = GroundingNet(8, APP_DIM, 16)
    fresh.load_state_dict(net.state_dict())
    fresh.eval()
    assert fresh.crop_encoder is not None
    torch.testing.assert_close(fresh(*inputs)[0], net(*inputs)[0])


def test_pretraining_tells_kinds_apart_by_the_crop():
    """Two kinds that differ only in their crops' shape (a disc vs a square, random colours): the pretrained
    trunk names held-out ones."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:SIDE, :SIDE]

    def obj(kind: str) -> PerceivedObject:
        r = int(rng.integers(9, 16))
        c = SIDE // 2
        shape = (yy - c) ** 2 + (xx - c) ** 2 < r * r if kind == "disc" else (abs(yy - c) < r) & (abs(xx - c) < r)
        crop = np.zeros((CHANNELS, SIDE, SIDE), np.uint8)
        crop[:3][:, shape] = rng.integers(60, 256, (3, 1), dtype=np.uint8)
        crop[3][shape], crop[4][shape] = 255, 70
        return PerceivedObject(0, (0, 0, 30, 30), (0, 0, 0), (0.04, 0.04, 0.03), "top_left", (0.5, 0.5, 0.5),
                               crop=crop)

    kinds = ["disc", "square"]
    train = [k for _ in range(24) for k in kinds]
    # batches of 8: enough steps for BatchNorm's running statistics to leave their initial values
    net = pretrain([obj(k) for k in train], train, kinds, epochs=12, seed=0, batch_size=8)
    test = [k for _ in range(10) for k in kinds]
    named = predict_kinds(net, [obj(k) for k in test], kinds)
    assert sum(a == b for a, b in zip(named, test, strict=True)) >= 18
