"""Write a file so that readers see the old file or the whole new one, never a part.

Caches under ~/.cache/koba_ros are filled by whichever process needs them first; two processes (two commands, or
two test workers) may fill the same one at once. Each writes its own temporary file in the target's folder and
renames it over the target (atomic on POSIX within one filesystem), so the last whole copy wins."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to fill a temporary file next to `path`, then rename it to `path`.

    If `write` raises, the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: concurrent writers never share one
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
