"""The `koba` command.

Each subcommand lives in koba_ros/commands/<name>.py with:
  HELP: one line for `koba --help`
  add_arguments(parser): its flags (keep imports light: heavy imports go inside run)
  run(args) -> int | None: does the work; raises KobaError for bad input
Add a command by adding its module name to COMMANDS.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import select
import sys

from koba_ros.errors import KobaError

COMMANDS = [
    "asr",
    "teleop",
    "up",
    "say",
    "pick",
    "face",
    "lm",
    "train",
    "tamer",
    "feedback",
]


# ROS_DOMAIN_ID: rcl takes a whole number and DDS derives its ports from it; Fast DDS and Cyclone DDS stop at 232.
MAX_DOMAIN_ID = 232


def _starts_ros(args) -> bool:
    """Whether this command line initialises rclpy (`koba up --list` only reads the graph)."""
    return args.command == "feedback" or (args.command == "up" and not args.list)


def domain_id_number(value: str) -> int | None:
    """ROS_DOMAIN_ID read as rcl reads it (C strtoul, base 0: blanks around it, an optional "+", "0x" hex or a
    leading-0 octal), or None where rcl refuses it ("abc", "-1", "1.5", "08")."""
    text = value.strip(" \t\n\r\f\v")
    text = text[1:] if text.startswith("+") else text
    base, digits = (16, text[2:]) if text[:2].lower() == "0x" else (8, text[1:]) if text[:1] == "0" else (10, text)
    if base == 8 and not digits:
        return 0
    allowed = "0123456789abcdef"[:base]
    if not digits or not all(c in allowed for c in digits.lower()):
        return None
    return int(digits, base)


def check_domain_id(environ=os.environ) -> None:
    """KobaError for a ROS_DOMAIN_ID that rcl would refuse with a traceback, or (on a DDS middleware, which derives
    its ports from it) above 232, where Fast DDS only logs an error (empty or unset is rcl's default, 0)."""
    value = environ.get("ROS_DOMAIN_ID", "")
    if not value:
        return
    number = domain_id_number(value)
    dds = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith(("rmw_fastrtps", "rmw_cyclonedds",
                                                                              "rmw_connextdds"))
    if number is None or (dds and number > MAX_DOMAIN_ID):
        raise KobaError(f"ROS_DOMAIN_ID must be a whole number from 0 to {MAX_DOMAIN_ID}, got {value[:40]!r}")


def _stdout_is_a_closed_pipe() -> bool:
    """Whether stdout is a pipe nobody reads any more (`koba ... | head -1` after head has gone): Linux reports
    POLLERR on the write end of such a pipe."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # POLLERR and POLLHUP are reported whatever the mask
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real stdout (a test's capture), or no poll
        return False


def _quit_on_closed_stdout() -> int:
    """As git and cat do when the reader of their output goes: stop without a word. The status is the one a shell
    shows for a process that SIGPIPE ended (128 + 13); stdout goes to /dev/null so that the interpreter's last flush
    of what is still buffered does not report the broken pipe either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line (the default prints usage too)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="koba", description="koba_ros: spoken-instruction picking, teleop, DQN-TAMER, NLP library.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"koba_ros.commands.{name}")
        command = sub.add_parser(name.replace("_", "-"), help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def print_json(obj) -> None:
    """The single JSON object a --json command prints on stdout, as one line in one write: under torchrun every rank
    prints its own to the same pipe, and `print` (text, then newline) let two of them run into one line."""
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv, 1):  # bytes that are not UTF-8 arrive as lone surrogates and fail far downstream
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            parser.exit(2, f"koba: error: argument {i} ({ascii(arg)[:60]}) is not UTF-8 text\n")
    args = parser.parse_args(argv)
    try:
        if _starts_ros(args):
            check_domain_id()
        code = args._run(args)
        sys.stdout.flush()  # here, where a closed pipe is handled, not in the interpreter's exit
    except KobaError as exc:
        print(f"koba {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if _stdout_is_a_closed_pipe():
            return _quit_on_closed_stdout()
        print(f"koba {args.command}: error: a pipe it wrote to was closed (broken pipe)", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system said no (an unwritable --out, a file where a folder should be): one line
        where = f" {exc.filename}" if exc.filename else ""
        print(f"koba {args.command}: error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"koba {args.command}: error: an input file is not UTF-8 text ({exc.reason} at byte {exc.start})",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
