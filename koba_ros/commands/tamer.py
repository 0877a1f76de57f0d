"""koba tamer bench|train: the DQN-TAMER benchmark with a simulated human, or one training run with checkpoints."""
from koba_ros.commands.arg_types import non_negative_int, positive_int

HELP = "DQN-TAMER: benchmark DQN / TAMER / DQN-TAMER with a simulated human, or train one agent."


def add_arguments(p):
    sub = p.add_subparsers(dest="tamer_command", metavar="ACTION", required=True)
    b = sub.add_parser("bench", help="Compare agents over seeds (simulated time; minutes of CPU).")
    _common(b)
    b.add_argument("--agents", default="dqn,tamer,dqn_tamer", help="Comma-separated: dqn, tamer, dqn_tamer.")
    b.add_argument("--seeds", type=positive_int, default=5, help="Seeds per agent (default 5).")
    b.add_argument("--out", default="", help="Folder for bench.json and curves.png (default: print only).")
    b.add_argument("--force", action="store_true", help="Replace a bench.json or curves.png already in --out.")
    t = sub.add_parser("train", help="Train one agent; writes curve CSV/PNG and a checkpoint; --resume continues.")
    _common(t)
    t.add_argument("--agent", default="dqn_tamer", help="dqn, tamer or dqn_tamer (default dqn_tamer).")
    t.add_argument("--seed", type=non_negative_int, default=0, help="Seed (default 0).")
    t.add_argument("--out", required=True, help="Folder for checkpoint.pt, curve.csv, curve.png, tensorboard/.")
    t.add_argument("--resume", action="store_true", help="Continue from OUT/checkpoint.pt.")


def _common(p):
    p.add_argument("--env", default="maze", choices=("maze", "taxi"), help="Environment (default maze).")
    p.add_argument("--layout", help="Maze layout: default (10x10), open5, corridor (the maze only).")
    p.add_argument("--episodes", type=positive_int, default=None,
                   help="Episodes per run (default: maze 300, taxi 300).")
    p.add_argument("--human", default="", metavar="K=V,...",
                   help="Simulated human: p_feedback, p_wrong, half_life, delay, binary, judge (e.g. p_wrong=0.2).")
    p.add_argument("--credit-delay", default="", help="Learner's reaction-delay model, e.g. gamma:0.2:4.0:0.5.")
    p.add_argument("--credit-model", default="onset", choices=("onset", "interval"), help="Credit assignment model.")
    p.add_argument("--json", action="store_true", help="Print one JSON object.")


DEFAULT_EPISODES = {"maze": 300, "taxi": 300}


def _config(args, agents, seeds):
    from koba_ros.errors import KobaError
    from koba_ros.rl.bench import BenchConfig
    from koba_ros.rl.human import HumanConfig

    if args.layout and args.env != "maze":
        raise KobaError(f"--layout is for the maze; {args.env} has one layout")
    extra = {"credit_delay": args.credit_delay} if args.credit_delay else {}
    return BenchConfig(env=args.env, layout=args.layout or "default", agents=tuple(agents), seeds=seeds,
                       episodes=args.episodes or DEFAULT_EPISODES[args.env], human=HumanConfig.parse(args.human),
                       credit_model=args.credit_model, **extra)


def run(args):
    return _bench(args) if args.tamer_command == "bench" else _train(args)


def _bench(args):
    import json
    import sys
    from pathlib import Path

    from koba_ros.cli import print_json
    from koba_ros.errors import KobaError
    from koba_ros.rl.bench import plot_curves, run_bench
    from koba_ros.rl.train import make_folder

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    twice = sorted({a for a in agents if agents.count(a) > 1})
    if twice:
        raise KobaError(f"--agents names {', '.join(twice)} more than once")
    config = _config(args, agents, args.seeds)
    out = Path(args.out) if args.out else None
    if out:  # before the benchmark: a bad --out must not cost its minutes, nor overwrite an earlier run's results
        make_folder(out)
        earlier = [str(out / name) for name in ("bench.json", "curves.png") if (out / name).exists()]
        if earlier and not args.force:
            raise KobaError(f"{' and '.join(earlier)} already exist{'s' if len(earlier) == 1 else ''}; "
                            f"give another --out, or --force to replace {'it' if len(earlier) == 1 else 'them'}")

    def progress(run):
        print(f"{run['agent']} seed {run['seed']}: solved at {run['episodes_to_solve']}, final return "
              f"{run['final_return']:.2f}, feedback {run['feedback_used']}", file=sys.stderr, flush=True)

    result = run_bench(config, progress=progress)
    if out:
        (out / "bench.json").write_text(json.dumps(result))
        plot_curves(result, str(out / "curves.png"))
        result["files"] = [str(out / "bench.json"), str(out / "curves.png")]
    if args.json:
        print_json({k: v for k, v in result.items() if k != "runs"})
    else:
        for name, s in result["summary"].items():
            if isinstance(s, dict):
                e = s["episodes_to_solve"]
                print(f"{name:10s} episodes to solve median {e['median']:.0f} [{e['q25']:.0f}, {e['q75']:.0f}]  "
                      f"solved {s['solved_runs']}/{s['runs']}  final return {s['final_return']['median']:.2f}")
    return 0


def _train(args):
    from koba_ros.cli import print_json
    from koba_ros.rl.train import train

    config = _config(args, [args.agent], 1)
    result = train(config, args.agent, args.seed, args.out, resume=args.resume)
    if args.json:
        print_json(result)
    else:
        print(f"{args.agent} on {args.env}: {result['episodes']} episodes, last return {result['last_return']:.2f}; "
              f"wrote {', '.join(result['files'])}")
    return 0
