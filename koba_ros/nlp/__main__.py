"""`python -m koba_ros.nlp ACTION ...` is `koba lm ACTION ...` without loading the other commands (bare GPU boxes)."""
import argparse
import sys

from koba_ros.commands import lm
from koba_ros.errors import KobaError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="koba lm", description=lm.HELP)
    lm.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(lm.run(args) or 0)
    except KobaError as exc:
        print(f"koba lm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
