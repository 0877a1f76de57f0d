"""koba feedback --keyboard: give human feedback from this terminal (keyboard_feedback_node's core)."""
from koba_ros.commands.arg_types import non_negative_float

HELP = "Give human feedback to a running learner from the keyboard (+ good, - bad, q quit)."


def add_arguments(p):
    p.add_argument("--keyboard", action="store_true", help="Read keys from this terminal (the only source so far).")
    p.add_argument("--wait", type=non_negative_float, default=10.0,
                   help="Wait up to this many seconds for a learner to subscribe before reading keys (a key sent "
                        "before DDS has matched the learner is lost).")
    p.add_argument("--json", action="store_true", help="Print one JSON object when done.")


def run(args):
    import sys
    import time

    from koba_ros.errors import KobaError

    if not args.keyboard:
        raise KobaError("choose a feedback source: --keyboard")
    if not sys.stdin.isatty():
        raise KobaError("--keyboard needs a terminal on stdin")
    import rclpy
    from rclpy.parameter import Parameter

    from koba_ros.cli import print_json
    from koba_ros.nodes.keyboard_feedback_node import KeyboardFeedbackNode
    from koba_ros.rl.keyboard import key_value, read_keys

    rclpy.init(args=sys.argv[:1])
    node = KeyboardFeedbackNode(parameter_overrides=[Parameter("device", value="")])
    sent = 0
    print("waiting for a learner on /human_feedback ...", file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.wait
    while node.pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    listening = node.pub.get_subscription_count()
    print(f"{listening} listening" if listening else "no learner is listening yet; keys are published anyway",
          file=sys.stderr)
    print("keys: + g y 1 = good, - b n 0 = bad, q = quit", file=sys.stderr)
    try:
        for key, pressed_at in read_keys(sys.stdin.fileno(), node.now):
            if node.publish_key(key, pressed_at):
                sent += 1
                print("+" if key_value(key) > 0 else "-", end="", flush=True, file=sys.stderr)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    if args.json:
        print_json({"sent": sent})
    return 0
