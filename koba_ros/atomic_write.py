"""Write a file so that readers see the old file or the whole new one, never a part.

Caches under ~/.cache/koba_ros are filled by whichever process needs them first; two processes (two commands, or
two test workers) may fill the same one at once, and two threads of one process may save the same file (speech_node
saves its echo path from the audio thread and on shutdown). Each writer (process and thread) writes its own temporary
file in the target's folder and renames it over the target (atomic on POSIX within one filesystem), so the last whole
copy wins."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to fill a temporary file next to `path`, then rename it to `path`.

    If `write` raises, the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # per process and thread: concurrent writers never share one (per process only, two threads tore the file)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
