"""Learning curves as TensorBoard scalars, next to curve.csv: `tensorboard --logdir <out>/tensorboard`.

The folder is rewritten from the whole episode history each time (as curve.csv is), so a resumed run or the
learner node's periodic saves never leave duplicate points in the event files.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from koba_ros.rl.bench import moving_average
from koba_ros.rl.session import EpisodeRecord

SCALARS = ("episode/return", "episode/return_ma10", "episode/steps", "episode/reached_goal", "episode/feedback")


def write_tensorboard(folder: Path, episodes: list[EpisodeRecord]) -> str:
    """Scalars per episode (x = episode number) in folder/tensorboard; returns that folder."""
    from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when curves are written

    logdir = Path(folder) / "tensorboard"
    shutil.rmtree(logdir, ignore_errors=True)
    averages = moving_average([e.ret for e in episodes]) if episodes else []
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for e, average in zip(episodes, averages, strict=True):
            values = (e.ret, average, e.steps, float(e.reached_goal), e.feedback)
            for tag, value in zip(SCALARS, values, strict=True):
                writer.add_scalar(tag, float(value), e.episode)
    return str(logdir)
