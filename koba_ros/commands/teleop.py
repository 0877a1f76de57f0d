"""koba teleop --say TEXT [--json]: one spoken teleop command, parsed, planned and run in the simulated cell."""
HELP = "Run one spoken teleop command (\"move left five centimeters\", \"open the gripper\", \"stop\") in the sim cell."


def add_arguments(p):
    p.add_argument("--say", required=True, metavar="TEXT", help="The command, as it would be recognised.")
    p.add_argument("--json", action="store_true", help="Print a JSON object.")


def run(args):
    from koba_ros.cli import print_json
    from koba_ros.teleop.session import run_once

    result = run_once(args.say)
    if args.json:
        print_json(result)
    else:
        print(result["reply"])
    # Like `koba pick`: a refused command (unknown words, "" or a target outside the workspace) or a motion that did
    # not finish is a failure for a calling script.
    return 0 if result["accepted"] and result["finished"] else 1
