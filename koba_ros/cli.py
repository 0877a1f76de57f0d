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
        code = args._run(args)
    except KobaError as exc:
        print(f"koba {args.command}: error: {exc}", file=sys.stderr)
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
