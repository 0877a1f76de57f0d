"""koba teleop --say TEXT [--json]: one spoken teleop command, parsed and run in the simulated cell."""
HELP = "Run one spoken teleop command (\"move left five centimeters\", \"open the gripper\", \"stop\") in the sim cell."


def add_arguments(p):
    p.add_argument("--say", required=True, metavar="TEXT", help="The command, as it would be recognised.")
    p.add_argument("--json", action="store_true", help="Print a JSON object.")


def run(args):
    from koba_ros.cli import print_json
    from koba_ros.errors import KobaError
    from koba_ros.teleop.commands import parse_command

    try:
        command = parse_command(args.say)
        result = {"command": type(command).__name__.lower(), "accepted": True, "reply": ""}
    except KobaError as exc:
        result = {"command": None, "accepted": False, "reply": str(exc)}
    if args.json:
        print_json(result)
    else:
        print(result["reply"] or result["command"])
