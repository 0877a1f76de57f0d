"""Resident memory of this process, for the memory benches: torch's CPU allocations are not seen by tracemalloc,
the kernel's counters are. Imported by bench scripts run as `python bench/NAME.py` (bench/ is then on sys.path)."""
from collections.abc import Callable


def status_kb(key: str) -> int:
    """A /proc/self/status field in kB: VmRSS (resident now) or VmHWM (resident high-water mark)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def peak_above_now_mb(phase: Callable[[], object]) -> tuple[object, float]:
    """(phase(), its resident high-water mark above the resident size just before it, in MB). Writing 5 to
    /proc/self/clear_refs resets VmHWM to the current resident size."""
    before = status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    out = phase()
    return out, round((status_kb("VmHWM") - before) / 1024, 1)
