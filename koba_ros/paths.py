"""Where the package's data (config/, sim/, models/, launch/) lives.

In a checkout (the embedded default, editable install) that is the repository root; after
`colcon build` it is share/koba_ros of the install space.
"""
from functools import cache
from pathlib import Path

PACKAGE = "koba_ros"


@cache
def share_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "config").is_dir() and (checkout / "package.xml").is_file():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError as exc:  # pragma: no cover - only outside a checkout and outside ROS
        raise RuntimeError("koba_ros data not found: not a checkout and ament_index_python missing") from exc
    return Path(get_package_share_directory(PACKAGE))


def config_dir() -> Path:
    return share_dir() / "config"


def sim_dir() -> Path:
    return share_dir() / "sim"


def models_dir() -> Path:
    return share_dir() / "models"


def launch_dir() -> Path:
    return share_dir() / "launch"
