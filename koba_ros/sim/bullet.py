"""pybullet, imported without its build banner on stdout (which would break `--json` output)."""
import os
import sys


def _import_quietly():
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            import pybullet
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return pybullet


pb = _import_quietly()
