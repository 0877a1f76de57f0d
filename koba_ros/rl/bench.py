"""The DQN / TAMER / DQN-TAMER benchmark, with the simulated human in simulated time.

Each run: one agent, one seed, `episodes` episodes; the clock advances `step_seconds` per step, the simulated human
watches every step and its reactions are delivered when their (simulated) time comes, exactly as in the ROS graph.
Solved: maze, the first episode at which the moving average (10 episodes) of steps to the goal is within 10% of the
shortest path (an episode cut by the step limit counts its full length); taxi, the first episode at which the moving
average (10 episodes) of the return reaches `taxi_threshold`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.rl.agents import AGENTS, ENV_AGENT_CONFIG, AgentConfig, make_agent
from koba_ros.rl.credit import DEFAULT_DELAY, CreditAssigner
from koba_ros.rl.delay import Delay
from koba_ros.rl.envs import DEFAULT_ENCODING, ENCODINGS, make_env, state_codes, tabular_model
from koba_ros.rl.human import HumanConfig, SimulatedHuman
from koba_ros.rl.session import TrainingSession

WINDOW = 10  # episodes in the moving average that decides "solved"


@dataclass(frozen=True)
class BenchConfig:
    env: str = "maze"
    layout: str = "default"            # maze layout (koba_ros/rl/maze.py LAYOUTS)
    agents: tuple[str, ...] = AGENTS
    seeds: int = 5
    first_seed: int = 0                # seeds first_seed .. first_seed + seeds - 1 (tune on others than you report)
    episodes: int = 150
    human: HumanConfig = field(default_factory=HumanConfig)
    agent: AgentConfig | None = None   # None = the environment's (agents.ENV_AGENT_CONFIG)
    step_seconds: float = 1.0          # simulated time per step (the ROS learner's default rate is 1 Hz)
    credit_delay: str = str(DEFAULT_DELAY)
    credit_model: str = "onset"
    taxi_threshold: float = 0.0        # moving-average return that counts as solving Taxi (optimum is about 8)
    q_encoding: str = ""               # state input of Q's network (envs.state_codes); "" = the env's default
    h_encoding: str = ""               # ... of H's network

    def __post_init__(self):
        bad = [a for a in self.agents if a not in AGENTS]
        if bad or not self.agents:
            raise KobaError(f"unknown agent {', '.join(bad) or '(none)'}; agents: {', '.join(AGENTS)}")
        if self.seeds < 1 or self.episodes < 1:
            raise KobaError(f"seeds and episodes must be >= 1, got {self.seeds}, {self.episodes}")
        if self.first_seed < 0:
            raise KobaError(f"first_seed must be >= 0, got {self.first_seed}")
        if self.step_seconds <= 0:
            raise KobaError(f"step_seconds must be > 0, got {self.step_seconds}")
        Delay.parse(self.credit_delay)
        self.make_env()  # validates env and layout
        for encoding in (self.q_encoding, self.h_encoding):
            if encoding and encoding not in ENCODINGS:
                raise KobaError(f"unknown encoding {encoding!r}; choose one of {', '.join(ENCODINGS)}")

    @property
    def agent_config(self) -> AgentConfig:
        return self.agent or ENV_AGENT_CONFIG[self.env]

    def make_env(self):
        return make_env(self.env, **({"layout": self.layout} if self.env == "maze" else {}))


def moving_average(x: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Trailing mean over up to `window` episodes (shorter at the start)."""
    c = np.cumsum(np.insert(np.asarray(x, dtype=np.float64), 0, 0.0))
    n = np.minimum(np.arange(1, len(x) + 1), window)
    return (c[1:] - c[np.arange(1, len(x) + 1) - n]) / n


def episodes_to_solve(env: str, steps: np.ndarray, returns: np.ndarray, shortest: int | None,
                      taxi_threshold: float) -> int | None:
    """1-based episode at which the run counts as solved (needs a full window), or None."""
    if env == "maze":
        solved = moving_average(steps) <= 1.1 * shortest
    else:
        solved = moving_average(returns) >= taxi_threshold
    solved[: WINDOW - 1] = False
    hits = np.flatnonzero(solved)
    return int(hits[0]) + 1 if hits.size else None


def build_run(config: BenchConfig, agent_name: str, seed: int):
    """Environment, agent, training session and (for agents that listen) simulated human of one run."""
    env = config.make_env()
    inner = env.unwrapped
    q_default, h_default = DEFAULT_ENCODING[config.env]
    q_codes = state_codes(env, config.q_encoding or q_default)
    h_codes = state_codes(env, config.h_encoding or h_default)
    agent = make_agent(agent_name, env.observation_space.n, env.action_space.n, config.agent_config, seed, q_codes,
                       h_codes)
    session = TrainingSession(env, agent, CreditAssigner(Delay.parse(config.credit_delay), config.credit_model),
                              seed=seed)
    human = None
    if agent.uses_feedback:
        grid = {"position_of": inner.position_of, "goal": inner.goal} if config.env == "maze" else {}
        human = SimulatedHuman(config.human, tabular_model(env).steps_to_goal(), seed=10_000 + seed, **grid)
    return env, agent, session, human


def simulate(session: TrainingSession, human: SimulatedHuman | None, episodes: int, step_seconds: float,
             now: float = 0.0) -> float:
    """Run until `episodes` episodes have ended, in simulated time; returns the clock. The human's reactions are
    delivered when their time comes, as in the ROS graph (bad ones are counted in session.rejected)."""
    while len(session.episodes) < episodes:
        if human:
            for fb in human.due(now):
                try:
                    session.feedback(fb.value, fb.stamp, now)
                except KobaError:
                    pass
        record = session.step(now)
        if human:
            human.watch(record.total_steps, record.state, record.action, record.next_state, record.terminated, now)
        now += step_seconds
    return now


def run_one(config: BenchConfig, agent_name: str, seed: int) -> dict:
    env, agent, session, human = build_run(config, agent_name, seed)
    inner = env.unwrapped
    simulate(session, human, config.episodes, config.step_seconds)
    steps = np.array([e.steps for e in session.episodes])
    returns = np.array([e.ret for e in session.episodes])
    shortest = inner.shortest_path if config.env == "maze" else None
    return {"agent": agent_name, "seed": seed,
            "episodes_to_solve": episodes_to_solve(config.env, steps, returns, shortest, config.taxi_threshold),
            "final_return": float(returns[-WINDOW:].mean()), "final_steps": float(steps[-WINDOW:].mean()),
            "feedback_used": agent.feedback_count, "feedback_given": human.given if human else 0,
            "feedback_rejected": sum(session.rejected.values()), "total_steps": session.total_steps,
            "steps": steps.tolist(), "returns": [round(float(r), 3) for r in returns]}


def _spread(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "q25": float(np.percentile(a, 25)), "q75": float(np.percentile(a, 75)),
            "min": float(a.min()), "max": float(a.max())}


def summarize(config: BenchConfig, runs: list[dict]) -> dict:
    """Per agent: medians and quartiles over seeds. An unsolved run counts as episodes + 1 (censored)."""
    out = {}
    for name in config.agents:
        mine = [r for r in runs if r["agent"] == name]
        solve = [r["episodes_to_solve"] or config.episodes + 1 for r in mine]
        out[name] = {"episodes_to_solve": _spread(solve), "solved_runs": sum(r["episodes_to_solve"] is not None
                                                                              for r in mine),
                     "final_return": _spread([r["final_return"] for r in mine]),
                     "feedback_used": _spread([r["feedback_used"] for r in mine]), "runs": len(mine)}
    if "dqn" in out and "dqn_tamer" in out:
        out["dqn_tamer_over_dqn_episodes"] = round(out["dqn_tamer"]["episodes_to_solve"]["median"]
                                                   / out["dqn"]["episodes_to_solve"]["median"], 3)
    return out


def run_bench(config: BenchConfig, progress=None) -> dict:
    runs = []
    for name in config.agents:
        for seed in range(config.first_seed, config.first_seed + config.seeds):
            runs.append(run_one(config, name, seed))
            if progress:
                progress(runs[-1])
    env = config.make_env()
    return {"env": config.env, "env_id": env.spec.id,
            "shortest_path": env.unwrapped.shortest_path if config.env == "maze" else None,
            "config": {**asdict(config), "agents": list(config.agents)}, "summary": summarize(config, runs),
            "runs": runs}


def plot_curves(result: dict, path: str, title: str = "") -> None:
    """Learning curves: median over seeds of the moving-average metric, with the 25-75% band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "steps" if result["env"] == "maze" else "returns"
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=90)
    for name in result["config"]["agents"]:
        curves = np.array([moving_average(r[metric]) for r in result["runs"] if r["agent"] == name])
        x = np.arange(1, curves.shape[1] + 1)
        ax.plot(x, np.median(curves, axis=0), label=name)
        ax.fill_between(x, np.percentile(curves, 25, axis=0), np.percentile(curves, 75, axis=0), alpha=0.2)
    if result["shortest_path"]:
        ax.axhline(1.1 * result["shortest_path"], color="gray", ls="--", lw=0.8, label="110% of shortest path")
    ax.set_xlabel("episode")
    ax.set_ylabel(f"{metric} (moving average of {WINDOW})")
    ax.set_title(title or f"{result['env_id']}: median over {result['config']['seeds']} seeds, 25-75% band")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
