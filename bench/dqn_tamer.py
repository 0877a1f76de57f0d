"""The DQN-TAMER reproduction behind docs/dqn_tamer.md: DQN vs TAMER vs DQN-TAMER on the maze and Taxi with the
default simulated human, then a sweep of DQN-TAMER over the human's wrong-sign rate and feedback probability
(DQN, the baseline, from the same run). Prints one JSON object; with --out writes it and the PNGs there.

    .venv/bin/python bench/dqn_tamer.py --seeds 5 --out docs/dqn_tamer_results

Parts may run as separate processes (--envs maze --no-sweep, --envs taxi --no-sweep, --envs "" for the sweep alone)
and be merged afterwards: --merge DIR1 DIR2 ... --out DIR writes the combined bench.json and sweep.png.
"""
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from koba_ros.rl.agents import ENV_AGENT_CONFIG, AgentConfig, with_overrides
from koba_ros.rl.bench import BenchConfig, plot_curves, run_bench, summarize
from koba_ros.rl.human import HumanConfig

EPISODES = {"maze": 300, "taxi": 300}
WRONG_RATES = (0.0, 0.1, 0.2, 0.3, 0.4)
FEEDBACK_PROBS = (0.05, 0.1, 0.25, 0.5, 1.0)


def log(run):
    print(f"  {run['agent']} seed {run['seed']}: solved {run['episodes_to_solve']}, final {run['final_return']:.2f}",
          file=sys.stderr, flush=True)


def slim(result):
    """Per-episode curves rounded (the merged PNGs are drawn from them), everything else as measured."""
    return {**result, "runs": [{**r, "returns": [round(x, 2) for x in r["returns"]]} for r in result["runs"]]}


def plot_sweep(report: dict, path: str) -> None:
    """Median episodes to solve the maze (25-75% bars) against each human parameter; DQN's median as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), dpi=90, sharey=True)
    dqn = report.get("sweep_dqn") or report["tables"].get("maze", {}).get("summary", {}).get("dqn")
    for ax, name in zip(axes, ("p_wrong", "p_feedback"), strict=True):
        pts = [p for p in report["sweep"] if p["parameter"] == name]
        x = [p["value"] for p in pts]
        med = [p["episodes_to_solve"]["median"] for p in pts]
        err = [[m - p["episodes_to_solve"]["q25"] for m, p in zip(med, pts, strict=True)],
               [p["episodes_to_solve"]["q75"] - m for m, p in zip(med, pts, strict=True)]]
        ax.errorbar(x, med, yerr=err, marker="o", capsize=3, label="DQN-TAMER")
        if dqn:
            ax.axhline(dqn["episodes_to_solve"]["median"], color="gray", ls="--", label="DQN alone (median)")
        ax.set_xlabel(name)
        ax.set_xscale("log" if name == "p_feedback" else "linear")
    axes[0].set_ylabel("maze: episodes to solve")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(report: dict) -> str:
    """The tables of docs/dqn_tamer.md: median [25%, 75%] over seeds."""
    def cell(d, fmt="{:.0f}"):
        return f"{fmt.format(d['median'])} [{fmt.format(d['q25'])}, {fmt.format(d['q75'])}]"

    lines = []
    for result in report["tables"].values():
        cfg = result["config"]
        lines += [f"**{result['env_id']}** ({cfg['seeds']} seeds, {cfg['episodes']} episodes; unsolved = "
                  f"{cfg['episodes'] + 1})", "",
                  "| agent | episodes to solve | solved runs | final return | feedback used |", "|---|---|---|---|---|"]
        for name in cfg["agents"]:
            s = result["summary"][name]
            lines.append(f"| {name} | {cell(s['episodes_to_solve'])} | {s['solved_runs']}/{s['runs']} | "
                         f"{cell(s['final_return'], '{:.2f}')} | {cell(s['feedback_used'])} |")
        lines.append("")
    if report["sweep"]:
        settings = report.get("sweep_settings") or {}
        changed = ", ".join(f"{k} {v}" for k, v in settings.items() if v not in (None, "", []))
        lines += [f"**Sweep** (DQN-TAMER on the maze; other human parameters at their defaults"
                  f"{'; ' + changed if changed else ''})", "",
                  "| parameter | value | episodes to solve | solved runs | final return | feedback used |",
                  "|---|---|---|---|---|---|"]
        if "sweep_dqn" in report:
            s = report["sweep_dqn"]
            lines.append(f"| DQN alone (baseline) | - | {cell(s['episodes_to_solve'])} | "
                         f"{s['solved_runs']}/{s['runs']} | {cell(s['final_return'], '{:.2f}')} | "
                         f"{cell(s['feedback_used'])} |")
        for p in report["sweep"]:
            lines.append(f"| {p['parameter']} | {p['value']} | {cell(p['episodes_to_solve'])} | "
                         f"{p['solved_runs']}/{p['runs']} | {cell(p['final_return'], '{:.2f}')} | "
                         f"{cell(p['feedback_used'])} |")
    return "\n".join(lines)


def merge(folders: list[str]) -> dict:
    """Join parts; parts of the same environment (split by --agents) become one table, summary recomputed."""
    report = {"tables": {}, "sweep": []}
    for folder in folders:
        part = json.loads((Path(folder) / "bench.json").read_text())
        for env, result in part["tables"].items():
            if env in report["tables"]:
                joined = report["tables"][env]
                joined["runs"] += result["runs"]
                joined["config"]["agents"] += [a for a in result["config"]["agents"]
                                               if a not in joined["config"]["agents"]]
            else:
                report["tables"][env] = result
        report["sweep"] += part["sweep"]
        if "sweep_settings" in part:
            report["sweep_settings"] = part["sweep_settings"]
        if "sweep_dqn" in part:
            report["sweep_dqn"] = part["sweep_dqn"]
    for result in report["tables"].values():
        cfg = result["config"]
        config = BenchConfig(env=result["env"], agents=tuple(cfg["agents"]), seeds=cfg["seeds"],
                             episodes=cfg["episodes"])
        result["summary"] = summarize(config, result["runs"])
    return report


def agent_config(env: str, args) -> AgentConfig:
    """The environment's agent settings with --alpha-h and --set applied (tables and sweep alike)."""
    agent = ENV_AGENT_CONFIG[env] if args.alpha_h is None else replace(ENV_AGENT_CONFIG[env], alpha_h=args.alpha_h)
    return with_overrides(agent, args.set)


def sweep_settings(args) -> dict:
    """What the sweep ran with besides its swept field, for the JSON (the tables' configs carry their own)."""
    return {"alpha_h": args.alpha_h, "set": list(args.set), "human": args.human}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0, help="Seeds of the tables start here (settings were tuned "
                   "on 100-104; the reported tables use 0-4).")
    p.add_argument("--sweep-seeds", type=int, default=3)
    p.add_argument("--envs", default="maze,taxi")
    p.add_argument("--agents", default="dqn,tamer,dqn_tamer", help="Agents of the tables (split a run across "
                   "processes; --merge joins them).")
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--sweep-episodes", type=int, default=100, help="Episodes per sweep run (unsolved = this + 1).")
    p.add_argument("--sweep-params", default="p_wrong,p_feedback", help="Which human parameters the sweep varies.")
    p.add_argument("--alpha-h", type=float, default=None, help="DQN-TAMER's initial alpha_h instead of the "
                   "environment's (agents.ENV_AGENT_CONFIG); keep such a run out of --merge with the default one.")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="Agent settings instead of the "
                   "environment's (agents.with_overrides: alpha_h=10 eps_decay_steps_with_human=5000 q.lr=...).")
    p.add_argument("--human", default="", help="Simulated human of the tables, k=v,... (human.HumanConfig.parse), "
                   "e.g. half_life=0 for one who never tires; default: the issue's default human.")
    p.add_argument("--out", default="")
    p.add_argument("--markdown", action="store_true", help="With --merge: print the tables as Markdown.")
    p.add_argument("--merge", nargs="+", default=[], metavar="DIR", help="Combine earlier runs' bench.json files.")
    args = p.parse_args()
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        report = merge(args.merge)
        if out:
            (out / "bench.json").write_text(json.dumps(report, indent=1))
            if report["sweep"]:
                plot_sweep(report, str(out / "sweep.png"))
            for env, result in report["tables"].items():
                if all("returns" in r for r in result["runs"]):
                    plot_curves(result, str(out / f"{env}_curves.png"))
        print(markdown(report) if args.markdown else json.dumps(
            {"tables": {env: r["summary"] for env, r in report["tables"].items()}, "sweep": report["sweep"],
             "sweep_dqn": report.get("sweep_dqn"), "sweep_settings": report.get("sweep_settings")}))
        return
    human = HumanConfig.parse(args.human)
    envs = list(filter(None, args.envs.split(",")))
    # Every environment's settings before any run, so a bad --set fails at once, not after the first table.
    agents = {env: agent_config(env, args) for env in {*envs, *([] if args.no_sweep else ["maze"])}}
    report = {"tables": {}, "sweep": []}
    for env in envs:
        print(f"{env}: {args.agents} x {args.seeds} seeds", file=sys.stderr, flush=True)
        result = run_bench(BenchConfig(env=env, agents=tuple(args.agents.split(",")), seeds=args.seeds,
                                       first_seed=args.first_seed,
                                       episodes=EPISODES[env], agent=agents[env], human=human),
                           progress=log)
        if out:
            plot_curves(result, str(out / f"{env}_curves.png"))
        report["tables"][env] = slim(result)
    if not args.no_sweep:
        # The same agent settings and human as the tables; each sweep point changes only its one human field.
        base = BenchConfig(env="maze", agents=("dqn_tamer",), seeds=args.sweep_seeds, episodes=args.sweep_episodes,
                           agent=agents["maze"], human=human)
        report["sweep_settings"] = sweep_settings(args)
        print("sweep baseline: dqn", file=sys.stderr, flush=True)  # DQN, same seeds and episodes, this process
        report["sweep_dqn"] = run_bench(replace(base, agents=("dqn",)), progress=log)["summary"]["dqn"]
        points = [(n, v) for n, values in (("p_wrong", WRONG_RATES), ("p_feedback", FEEDBACK_PROBS))
                  if n in args.sweep_params.split(",") for v in values]
        for name, value in points:
            print(f"sweep {name}={value}", file=sys.stderr, flush=True)
            config = replace(base, human=replace(human, **{name: value}))
            s = run_bench(config, progress=log)["summary"]["dqn_tamer"]
            report["sweep"].append({"parameter": name, "value": value, "episodes_to_solve": s["episodes_to_solve"],
                                    "solved_runs": s["solved_runs"], "runs": s["runs"],
                                    "final_return": s["final_return"], "feedback_used": s["feedback_used"]})
    if out:
        (out / "bench.json").write_text(json.dumps(report, indent=1))
        if report["sweep"]:
            plot_sweep(report, str(out / "sweep.png"))
    print(json.dumps({"tables": {env: r["summary"] for env, r in report["tables"].items()}, "sweep": report["sweep"],
             "sweep_dqn": report.get("sweep_dqn"), "sweep_settings": report.get("sweep_settings")}))


if __name__ == "__main__":
    main()
