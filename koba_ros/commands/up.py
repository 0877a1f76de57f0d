"""koba up GRAPH: start a graph from bringup.py on a plain machine."""
from koba_ros.commands.arg_types import timer_seconds

HELP = "Start a graph (picking, teleop, maze_training): composed in one process, or one process per node."


def add_arguments(p):
    from koba_ros.bringup import GRAPHS

    p.add_argument("graph", choices=sorted(GRAPHS), help="Which graph to start.")
    p.add_argument("--processes", action="store_true", help="One process per node instead of one composed process.")
    p.add_argument("--scene", help="Scene file for the simulated cell (graph argument 'scene').")
    p.add_argument("--headless", action="store_true", help="No GUI; CPU rendering (graph argument 'headless').")
    p.add_argument("--feedback", choices=("simulated", "keyboard", "face", "none"),
                   help="Who teaches the maze agent (graph argument 'feedback' of maze_training).")
    p.add_argument("--arg", action="append", default=[], metavar="NAME:=VALUE",
                   help="Any graph argument, as in ros2 launch (repeatable).")
    p.add_argument("--duration", type=timer_seconds, default=0.0,
                   help="Stop after this many seconds (0: run until Ctrl-C).")
    p.add_argument("--list", action="store_true",
                   help="Print the graph's nodes (with --json, its arguments too) and exit.")
    p.add_argument("--json", action="store_true", help="Print what was started as JSON.")


def parse_graph_args(args) -> dict:
    from koba_ros.errors import KobaError

    values = {}
    for item in args.arg:
        if ":=" not in item:
            raise KobaError(f"--arg expects NAME:=VALUE, got {item!r}")
        name, value = item.split(":=", 1)
        values[name] = value
    if args.scene:
        values["scene"] = args.scene
    if args.headless:
        values["headless"] = "true"
    if args.feedback:
        values["feedback"] = args.feedback
    return values


def run(args):
    import threading

    from koba_ros.bringup import graph
    from koba_ros.cli import print_json
    from koba_ros.launcher import run_composed, run_processes

    g = graph(args.graph)
    given = parse_graph_args(args)
    specs = g.resolve(**given)
    summary = {"graph": g.name, "mode": "processes" if args.processes else "composed",
               "nodes": [s.name for s in specs],
               "arguments": {a.name: given.get(a.name, a.default) for a in g.arguments}}  # what this run uses
    if args.list:
        summary["arguments"] = {a.name: {"default": a.default, "description": a.description} for a in g.arguments}
        print_json(summary) if args.json else print("\n".join(f"{s.name} ({s.executable})" for s in specs))
        return 0
    stop = threading.Event()
    if args.duration > 0:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True
        timer.start()

    def ready():
        if args.json:
            print_json({**summary, "status": "running"})
        else:
            print(f"koba up {g.name}: {len(specs)} nodes running ({summary['mode']}): "
                  f"{', '.join(summary['nodes'])}. Ctrl-C stops.", flush=True)

    (run_processes if args.processes else run_composed)(specs, stop=stop, on_ready=ready)
    return 0
