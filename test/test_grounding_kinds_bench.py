"""bench/grounding_kinds.py's crop extraction on synthetic frames (no rendering, no training)."""
import importlib.util
from pathlib import Path

import numpy as np

from koba_ros.perception.objects import PerceivedObject

_spec = importlib.util.spec_from_file_location(
    "grounding_kinds", Path(__file__).resolve().parents[1] / "bench" / "grounding_kinds.py")
kinds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kinds)


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
    crops = kinds.object_crops(rgb, depth, [obj])
    assert crops.shape == (1, kinds.CHANNELS, kinds.SIDE, kinds.SIDE) and crops.dtype == np.uint8
    c = kinds.SIDE // 2
    assert tuple(crops[0, :3, c, c]) == (220, 20, 20)          # the object sits in the middle
    assert crops[0, 3, c, c] == 255 and crops[0, 3, 2, 2] == 0   # its mask; the table around it is not
    assert crops[0, 4, c, c] > 60 and crops[0, 4, 2, 2] == 0     # 3 cm above the floor of the window; floor is 0
    # A wide bbox in a square window: the block spans the width but not the height.
    assert crops[0, 3, c, 6] == 255 and crops[0, 3, 6, c] == 0


def test_crop_at_the_image_edge_is_zero_outside_the_image():
    rgb, depth, obj = _frame_with_block(0, 0, 12, 12)
    crops = kinds.object_crops(rgb, depth, [obj])
    assert crops[0, :3, 0, 0].tolist() == [0, 0, 0]              # outside the image
    assert tuple(crops[0, :3, kinds.SIDE // 2, kinds.SIDE // 2]) == (220, 20, 20)

