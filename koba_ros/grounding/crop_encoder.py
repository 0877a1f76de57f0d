"""CNN features of each object's crop, the object side of Hatori et al. (ICRA 2018, arXiv 1710.06280, Sec. III-B:
"CNN features of the cropped object image" matched against the encoded instruction).

model.py's object encoder reads e_i = MLP_obj(x_i) with hand-made x_i (colour, size, box, place, appearance). With
the crop encoder x_i grows by c_i:

    c_i = mean_{u,v} Conv4(Conv3(Conv2(Conv1(crop_i))))    96 floats; each ConvK = 3x3 conv, BatchNorm, ReLU, 2x2 max
    x_i <- [x_i, c_i]                                       so e_i, the catalog head, the colour head, the match and the
                                                            landmark all read it

crop_i is perception/crops.py's 5x48x48 window (RGB, the object's mask, height above the floor). The trunk is
pretrained alone on the object kinds of the training scenes (cross-entropy over catalog entries, the recipe of
bench/grounding_kinds.py: AdamW + one-cycle, label smoothing 0.05, flips, 90-degree turns, brightness/contrast
jitter), then frozen: c_i depends on the object alone, so it is computed once per object (memoised), never per turn.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from koba_ros.errors import KobaError
from koba_ros.perception.crops import CHANNELS, SIDE
from koba_ros.perception.objects import PerceivedObject

CROP_DIM = 96
MEMO_LIMIT = 2048    # objects whose features (and crops, 11.5 KB each) are kept; then the memo starts again


def crop_tensor(objects: list[PerceivedObject]) -> torch.Tensor:
    """(N, CHANNELS, SIDE, SIDE) float in [0, 1]; KobaError for an object without a crop of that shape."""
    for o in objects:
        if o.crop is None:
            raise KobaError(f"object {o.id} has no crop; this grounding model reads {CHANNELS}x{SIDE}x{SIDE} crops "
                            f"(perception fills them)")
        if np.shape(o.crop) != (CHANNELS, SIDE, SIDE):
            raise KobaError(f"object {o.id} has a crop of shape {np.shape(o.crop)}; this grounding model reads "
                            f"{CHANNELS}x{SIDE}x{SIDE}")
    if not objects:
        return torch.zeros(0, CHANNELS, SIDE, SIDE)
    return torch.from_numpy(np.stack([np.asarray(o.crop, np.uint8) for o in objects])).float() / 255


def conv_block(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))


class CropEncoder(nn.Module):
    """48 -> 24 -> 12 -> 6 -> 3 px, global average: c_i (CROP_DIM floats) per crop."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(conv_block(CHANNELS, 24), conv_block(24, 48), conv_block(48, 64),
                                  conv_block(64, CROP_DIM))
        self.memo: dict[int, tuple[np.ndarray, torch.Tensor]] = {}

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.conv(crops).mean((2, 3))

    @torch.no_grad()
    def embed(self, objects: list[PerceivedObject]) -> torch.Tensor:
        """[N, CROP_DIM] for these objects in eval mode, each object's row computed once (memo keyed by its crop)."""
        new = [o for o in objects if id(o.crop) not in self.memo or self.memo[id(o.crop)][0] is not o.crop]
        if new:
            if len(self.memo) + len(new) > MEMO_LIMIT:
                self.memo.clear()
            was_training = self.training
            rows = self.eval()(crop_tensor(new))
            self.train(was_training)
            for o, row in zip(new, rows, strict=True):
                self.memo[id(o.crop)] = (o.crop, row)   # the crop itself is kept, so its id is not reused
        if not objects:
            return torch.zeros(0, CROP_DIM)
        return torch.stack([self.memo[id(o.crop)][1] for o in objects])


def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Flips, 90-degree turns, and per-crop brightness/contrast on RGB (shading changes both)."""
    if rng.random() < 0.5:
        x = x.flip(3)
    if rng.random() < 0.5:
        x = x.flip(2)
    x = torch.rot90(x, int(rng.integers(4)), (2, 3))
    gain = torch.from_numpy(rng.uniform(0.55, 1.35, (len(x), 1, 1, 1)).astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-0.12, 0.12, (len(x), 1, 1, 1)).astype(np.float32))
    return torch.cat([(x[:, :3] * gain + shift).clamp(0, 1), x[:, 3:]], 1)


class KindClassifier(nn.Module):
    """Pretraining head: [c_i, 20 * size_i] -> catalog entry. Dropped after pretraining (only the trunk is kept)."""

    def __init__(self, encoder: CropEncoder, n_entries: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(CROP_DIM + 3, 96), nn.ReLU(), nn.Dropout(0.2), nn.Linear(96, n_entries))

    def forward(self, crops: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder(crops), size * 20], 1))


def pretrain(objects: list[PerceivedObject], names: list[str], entries: list[str], epochs: int = 20, seed: int = 0,
             batch_size: int = 64, log=None) -> KindClassifier:
    """Train a CropEncoder (inside a KindClassifier, returned in eval mode) on the objects' catalog entries."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = crop_tensor(objects)
    size = torch.tensor([o.size for o in objects], dtype=torch.float32).reshape(-1, 3)
    y = torch.tensor([entries.index(n) for n in names])
    net = KindClassifier(CropEncoder(), len(entries))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    steps = max(1, epochs * ((len(y) + batch_size - 1) // batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        order, losses, right = torch.from_numpy(rng.permutation(len(y))), [], 0
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:      # BatchNorm needs two crops
                continue
            logits = net(augment(x[idx], rng), size[idx])
            loss = F.cross_entropy(logits, y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            right += int((logits.argmax(1) == y[idx]).sum())
        if log is not None:
            log(f"crop encoder epoch {epoch + 1}: loss {np.mean(losses):.3f} train kind accuracy {right / len(y):.3f}")
    return net.eval()


@torch.no_grad()
def predict_kinds(net: KindClassifier, objects: list[PerceivedObject], entries: list[str]) -> list[str]:
    size = torch.tensor([o.size for o in objects], dtype=torch.float32).reshape(-1, 3)
    return [entries[int(k)] for k in net.eval()(crop_tensor(objects), size).argmax(1)]
