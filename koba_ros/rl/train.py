"""One training run of one agent with the simulated human: learning curves (CSV, PNG, TensorBoard scalars) and a
checkpoint that `--resume` continues from (torch.save of tensors and numbers; loaded with weights_only=True)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from koba_ros.atomic_write import write_atomically
from koba_ros.errors import KobaError, reason
from koba_ros.rl.bench import BenchConfig, build_run, moving_average, simulate
from koba_ros.rl.session import EpisodeRecord
from koba_ros.rl.tensorboard_log import write_tensorboard

CURVE_FIELDS = ("episode", "steps", "ret", "reached_goal", "feedback", "time")


def save_checkpoint(path: Path, agent, session, now: float, env_name: str, human=None) -> None:
    """Agent, episode history, the session's state (the environment's random state, the steps on screen for credit,
    the feedback rate limiter) and, for koba tamer train, the simulated human's: a resumed run equals one that never
    stopped (session.TrainingSession.state_dict says what a save in the middle of an episode does). Written to a
    temporary file renamed over `path`: a save that fails (disk full, killed) leaves the previous checkpoint whole."""
    state = {"env": env_name, "agent": agent.state_dict(), "now": now, "total_steps": session.total_steps,
             "episodes": [[e.episode, e.steps, e.ret, float(e.reached_goal), e.feedback, e.time]
                          for e in session.episodes], "session": session.state_dict(),
             **({"human": human.state_dict()} if human is not None else {})}
    write_atomically(path, lambda tmp: torch.save(state, tmp))


CHECKPOINT_KEYS = ("env", "agent", "now", "total_steps", "episodes")


def load_checkpoint(path: Path, agent, session, env_name: str, human=None) -> float:
    """Restores agent, session and (if given and saved) the simulated human; returns the clock. Raises KobaError for
    a missing or foreign file. (Checkpoints from before session 22 hold no session or human state: those restart.)"""
    if not path.is_file():
        raise KobaError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's bad input
        raise KobaError(f"cannot read checkpoint {path}: {reason(exc)}") from None
    if not isinstance(state, dict) or not all(k in state for k in CHECKPOINT_KEYS):
        raise KobaError(f"{path} is not a koba tamer checkpoint (needs keys {', '.join(CHECKPOINT_KEYS)})")
    if state["env"] != env_name:
        raise KobaError(f"checkpoint {path} is for env {state['env']!r}, not {env_name!r}")
    try:  # the session is parsed before the agent changes; a torn file leaves at most a half-restored agent
        episodes = [EpisodeRecord(int(e[0]), int(e[1]), e[2], bool(e[3]), int(e[4]), e[5]) for e in state["episodes"]]
        total_steps, now = int(state["total_steps"]), float(state["now"])
        if not isinstance(state["agent"], dict):
            raise TypeError(f"agent is a {type(state['agent']).__name__}, not a dict")
        agent.load_state_dict(state["agent"])
        session.total_steps, session.episodes, session.episode = total_steps, episodes, len(episodes)
        if "session" in state:
            session.load_state_dict(state["session"], now)
        if human is not None and "human" in state:
            human.load_state_dict(state["human"])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise KobaError(f"checkpoint {path} is damaged: {reason(exc)}") from None
    return now


def write_curves(folder: Path, episodes: list[EpisodeRecord], title: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path, png_path = folder / "curve.csv", folder / "curve.png"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CURVE_FIELDS)
        for e in episodes:
            writer.writerow([e.episode, e.steps, round(e.ret, 4), int(e.reached_goal), e.feedback, round(e.time, 2)])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=90)
    returns = np.array([e.ret for e in episodes])
    ax.plot(returns, alpha=0.3, label="return")
    if len(returns):
        ax.plot(moving_average(returns), label="moving average (10)")
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return [str(csv_path), str(png_path), write_tensorboard(folder, episodes)]


def prepare_output(folder: Path, resume: bool, out_name: str = "--out", resume_name: str = "--resume") -> None:
    """Checks a run's output folder before any work (koba tamer train, tamer_learner_node) and creates it. The names
    are the caller's option names, for the messages."""
    checkpoint = folder / "checkpoint.pt"
    if resume and not checkpoint.is_file():
        raise KobaError(f"{resume_name}: no checkpoint at {checkpoint}")
    if not resume and checkpoint.exists():  # a finished run is never trained over by accident
        raise KobaError(f"{folder} already holds a run (checkpoint.pt); add {resume_name} to continue it, or give "
                        f"another {out_name}")
    make_folder(folder, out_name)


def make_folder(folder: Path, out_name: str = "--out") -> None:
    """Creates an output folder (and its parents), or raises KobaError naming it: a file there, or no permission."""
    if folder.exists() and not folder.is_dir():
        raise KobaError(f"{out_name} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KobaError(f"cannot create {folder}: {exc.strerror or exc}") from None


def train(config: BenchConfig, agent_name: str, seed: int, out: str, resume: bool = False) -> dict:
    folder = Path(out)
    checkpoint = folder / "checkpoint.pt"
    prepare_output(folder, resume)
    _, agent, session, human = build_run(config, agent_name, seed)
    now = load_checkpoint(checkpoint, agent, session, config.env, human) if resume else 0.0
    start = len(session.episodes)
    now = simulate(session, human, start + config.episodes, config.step_seconds, now)
    save_checkpoint(checkpoint, agent, session, now, config.env, human)
    files = [str(checkpoint), *write_curves(folder, session.episodes, f"{agent_name} on {config.env}, seed {seed}")]
    return {"agent": agent_name, "env": config.env, "seed": seed, "resumed_from_episode": start,
            "episodes": len(session.episodes), "last_return": session.episodes[-1].ret,
            "total_steps": session.total_steps, **agent.stats(), "files": files}
