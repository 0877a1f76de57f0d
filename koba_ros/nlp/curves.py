"""Training curves: metrics.csv (one row per step), curves.png, and the same scalars as TensorBoard event files.

`tensorboard --logdir <out>/tensorboard` shows train/loss, train/lr, train/grad_norm, val/loss and tokens/s (and fp16's
train/loss_scale).
A resumed run first drops the rows logged after its checkpoint (steps it is about to redo), and the TensorBoard
folder is rewritten from metrics.csv each time, so neither ever holds a step twice.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from koba_ros.errors import KobaError

COLUMNS = ("step", "tokens", "lr", "loss", "grad_norm", "val_loss", "tokens_per_s", "loss_scale")
SCALARS = {"loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm", "val_loss": "val/loss",
           "tokens_per_s": "speed/tokens_per_s", "loss_scale": "train/loss_scale"}


class MetricsLog:
    """metrics.csv, appended one row per optimiser step so a resumed run continues the same file."""

    def __init__(self, path: Path, enabled: bool, resume_step: int = 0):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if path.exists():
            self._drop_after(resume_step)
        else:
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(COLUMNS)

    def _drop_after(self, step: int) -> None:
        """Keep the rows up to the checkpoint's step: the run redoes the later ones (it stopped after saving)."""
        rows = read_rows(self.path)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")  # a newer version's extra columns
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["step"]) <= step)

    def write(self, **row) -> None:
        if self.enabled:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([row.get(c, "") for c in COLUMNS])


def read_rows(csv_path: Path) -> list[dict]:
    with Path(csv_path).open(newline="") as f:
        return list(csv.DictReader(f))


def plot_curves(csv_path: Path, png_path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional on bare GPU machines
        return
    rows = read_rows(csv_path)
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=90)
    ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label="train")
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def is_own_logdir(logdir: Path) -> bool:
    """May write_tensorboard delete and rewrite `logdir`? Only if it is absent, or a folder holding nothing but
    event files (what it writes): never a file, or a folder holding anything else."""
    if not logdir.exists():
        return True
    return logdir.is_dir() and not logdir.is_symlink() and all(
        p.is_file() and p.name.startswith("events.out.tfevents.") for p in logdir.iterdir())


def write_tensorboard(csv_path: Path, logdir: Path) -> str:
    """Rewrite logdir's event files from metrics.csv (x = optimiser step). Returns logdir, or "" without the
    tensorboard package (bare GPU machines: the CSV and PNG still exist)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return ""
    if not is_own_logdir(logdir):
        raise KobaError(f"{logdir} exists and is not a TensorBoard folder of this run's; move it away")
    shutil.rmtree(logdir, ignore_errors=True)
    with SummaryWriter(log_dir=str(logdir)) as writer:
        for row in read_rows(csv_path):
            for column, tag in SCALARS.items():
                if row.get(column):
                    writer.add_scalar(tag, float(row[column]), int(row["step"]))
    return str(logdir)
