"""Where the package's data (config/, sim/, models/, launch/) lives.

In a checkout (the embedded default, editable install) that is the repository root. Installed, it is share/koba_ros
of the install prefix: setup.py's data_files put it there for `pip install` (the prefix of the Python that installed
it, or of --prefix / --user) and for `colcon build` (the install space, also found through ament_index).
"""
from functools import cache
from pathlib import Path

from koba_ros.errors import KobaError

PACKAGE = "koba_ros"


def _is_share_dir(folder: Path) -> bool:
    return (folder / "config").is_dir() and (folder / "package.xml").is_file()


def _installed_candidates() -> list[Path]:
    """share/koba_ros of each prefix an installed koba_ros may sit in, most specific first."""
    import sys
    import sysconfig

    here = Path(__file__).resolve().parent  # <prefix>/lib/pythonX.Y/site-packages/koba_ros when installed
    prefixes = [here.parents[3]] if len(here.parents) > 3 else []
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        try:
            prefixes.append(Path(sysconfig.get_path("data", scheme)))
        except KeyError:  # a scheme this interpreter lacks
            pass
    prefixes.append(Path(sys.prefix))
    out = []
    for prefix in prefixes:
        folder = prefix / "share" / PACKAGE
        if folder not in out:
            out.append(folder)
    return out


@cache
def share_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent
    if _is_share_dir(checkout):
        return checkout
    candidates = _installed_candidates()
    for folder in candidates:
        if _is_share_dir(folder):
            return folder
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        why = "ament_index_python is not installed"
    else:
        try:
            folder = Path(get_package_share_directory(PACKAGE))
        except (OSError, PackageNotFoundError, RuntimeError, ValueError) as exc:  # AMENT_PREFIX_PATH unset, ...
            why = f"ament_index: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        else:
            if _is_share_dir(folder):
                return folder
            why = f"ament_index names {folder}, which has no config/ and package.xml"
    raise KobaError(f"koba_ros data (config/, sim/, models/) not found: not a checkout, not in "
                    f"{', '.join(map(str, candidates))}, and {why}")


def config_dir() -> Path:
    return share_dir() / "config"


def sim_dir() -> Path:
    return share_dir() / "sim"


def models_dir() -> Path:
    return share_dir() / "models"


def launch_dir() -> Path:
    return share_dir() / "launch"
