"""Review 25 of the koba command and the package around it: every source folder ships in the package, set-up stops on
a failed pip and notices a new node, an installed koba_ros finds its data, bounded --threads, `koba tamer bench`
keeps an earlier run's results, keys typed before cbreak are read, ROS_DOMAIN_ID is checked, a closed stdout ends
quietly, and options a run would ignore are refused."""
import os
import pty
import runpy
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from koba_ros.cli import build_parser, main
from koba_ros.errors import KobaError

ROOT = Path(__file__).resolve().parents[1]


# 1. Packaging: find_packages() takes only folders with an __init__.py; a folder without one is left out of a wheel,
# `pip install .` and `colcon build`.

def test_every_folder_of_python_files_is_a_package_setup_py_ships(monkeypatch):
    import setuptools

    calls = []
    monkeypatch.setattr(setuptools, "setup", lambda **kw: calls.append(kw))
    monkeypatch.chdir(ROOT)  # setup.py's find_packages() looks in the current folder, as pip runs it
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    packages = set(calls[0]["packages"])
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "koba_ros").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert folders - packages == set(), "folders of koba_ros/ that a wheel would leave out (no __init__.py?)"


# 2. scripts/setup.sh in a scratch root: a stub .venv/bin/python (pip fails when told to), stub system tools.

def _scratch_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", root / "scripts")
    for name in ("requirements.txt", "requirements-ros.txt", "setup.py", "setup.cfg", "package.xml"):
        shutil.copy(ROOT / name, root)
    (root / "interfaces" / "koba_interfaces" / "msg").mkdir(parents=True)
    (root / "interfaces" / "koba_interfaces" / "msg" / "A.msg").write_text("int32 a\n")
    (root / "koba_ros" / "nodes").mkdir(parents=True)
    (root / "koba_ros" / "nodes" / "a_node.py").write_text("")
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    scripts = {
        venv_bin / "python": f"""echo "$*" >> {root}/calls.log
if [ "$1 $2 $3" = "-m pip install" ]; then
  case " $* " in *" -e . "*) what=editable ;; *) what=requirements ;; esac
  if [ "${{STUB_PIP_FAILS:-}}" = "$what" ]; then echo "ERROR: No matching distribution found" >&2; exit 1; fi
fi
exit 0""",
        venv_bin / "koba": "exit 0",
        stubs / "dpkg-query": "printf 'install ok installed'",
        stubs / "python3.11": "exit 0",
        stubs / "cmake": "exit 0",
        stubs / "make": "exit 0",
        stubs / "apt-get": "echo 'apt-get called' >&2; exit 1",
        stubs / "sudo": "echo 'sudo called' >&2; exit 1",
    }
    for path, body in scripts.items():
        path.write_text("#!/usr/bin/env bash\n" + body + "\n")
        path.chmod(0o755)
    return root


def _setup(root: Path, fails: str = "") -> subprocess.CompletedProcess:
    env = {"PATH": f"{root.parent / 'stubs'}:/usr/bin:/bin", "HOME": str(root.parent), "KOBA_TORCH_INDEX": "",
           "STUB_PIP_FAILS": fails}
    return subprocess.run(["bash", str(root / "scripts" / "setup.sh")], capture_output=True, text=True, env=env,
                          timeout=120)


def _pip_installs(root: Path, editable: bool) -> int:
    lines = (root / "calls.log").read_text().splitlines() if (root / "calls.log").exists() else []
    return sum(1 for line in lines if line.startswith("-m pip install") and (" -e ." in line) == editable)


def test_setup_stops_when_pip_install_fails_and_the_next_run_tries_again(tmp_path):
    root = _scratch_root(tmp_path)
    stamps = root / ".venv" / ".koba-stamps"
    for attempt in (1, 2):
        out = _setup(root, fails="requirements")
        assert out.returncode != 0, out.stderr
        assert "[setup] pip install -r requirements-ros.txt -r requirements.txt failed" in out.stderr
        assert not (stamps / "requirements").exists()
        assert _pip_installs(root, editable=False) == attempt  # no stamp: the next run installs again
    assert _pip_installs(root, editable=True) == 0  # stopped at the failure
    out = _setup(root, fails="editable")
    assert out.returncode != 0 and "[setup] pip install -e . (koba_ros) failed" in out.stderr
    assert (stamps / "requirements").exists() and not (stamps / "package").exists()
    assert _setup(root).returncode == 0 and (stamps / "package").exists()
    again = _setup(root)
    assert again.returncode == 0 and "[setup]" not in again.stderr, again.stderr  # idempotent


def test_setup_reinstalls_koba_ros_when_a_node_file_is_added(tmp_path):
    root = _scratch_root(tmp_path)
    assert _setup(root).returncode == 0
    assert _pip_installs(root, editable=True) == 1
    assert "[setup]" not in _setup(root).stderr
    (root / "koba_ros" / "nodes" / "b_node.py").write_text("")  # setup.py makes it an executable
    out = _setup(root)
    assert out.returncode == 0 and _pip_installs(root, editable=True) == 2, out.stderr
    assert "[setup]" not in _setup(root).stderr


# 3. An installed (not editable) koba_ros finds its data without AMENT_PREFIX_PATH.

@pytest.fixture
def installed(monkeypatch, tmp_path):
    """paths.py as if installed at tmp_path/pfx (lib/python3.11/site-packages/koba_ros), no data anywhere yet."""
    import sysconfig

    from koba_ros import paths

    here = tmp_path / "pfx" / "lib" / "python3.11" / "site-packages" / "koba_ros"
    here.mkdir(parents=True)
    monkeypatch.setattr(paths, "__file__", str(here / "paths.py"))
    data = tmp_path / "data"
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(data) if name == "data" else "/nonexistent")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "sys_prefix"))
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    paths.share_dir.cache_clear()
    yield tmp_path
    paths.share_dir.cache_clear()


def _make_share(folder: Path) -> Path:
    (folder / "config").mkdir(parents=True)
    (folder / "package.xml").write_text("<package/>")
    return folder


@pytest.mark.parametrize("prefix", ["data", "pfx", "sys_prefix"])
def test_installed_package_finds_share_koba_ros_under_its_prefix(installed, prefix):
    from koba_ros import paths

    share = _make_share(installed / prefix / "share" / "koba_ros")
    assert paths.share_dir() == share and paths.config_dir() == share / "config"


@pytest.mark.parametrize("ament", [None, "empty"])
def test_installed_package_without_its_data_is_one_koba_error(installed, monkeypatch, ament):
    from koba_ros import paths

    if ament:
        (installed / ament).mkdir()
        monkeypatch.setenv("AMENT_PREFIX_PATH", str(installed / ament))
    with pytest.raises(KobaError) as info:
        paths.share_dir()
    assert "koba_ros data (config/, sim/, models/) not found" in str(info.value) and "\n" not in str(info.value)


# 4. --threads is bounded when the command line is read (torch.set_num_threads(100000) crashed the process).

def test_train_threads_is_bounded_at_parse_time(capsys):
    for value in ("100000", "0", "limit + 1"):
        if value == "limit + 1":
            from koba_ros.commands.arg_types import max_threads

            value = str(max_threads() + 1)
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["train", "grounding", "--threads", value])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert f"a whole number of threads from 1 to {4 * (os.cpu_count() or 1)}" in err and "\n" not in err
    from koba_ros.commands.arg_types import max_threads

    assert build_parser().parse_args(["train", "grounding", "--threads", str(max_threads())]).threads == max_threads()


# 5. koba tamer bench --out keeps an earlier run's results unless --force.

def test_tamer_bench_refuses_to_overwrite_results_unless_forced(tmp_path, monkeypatch, capsys):
    from koba_ros.rl import bench

    ran = []
    monkeypatch.setattr(bench, "run_bench", lambda config, progress=None: ran.append(1) or
                        {"summary": {}, "runs": [], "config": {}})
    monkeypatch.setattr(bench, "plot_curves", lambda result, path: Path(path).write_text("new"))
    (tmp_path / "bench.json").write_text("earlier")
    argv = ["tamer", "bench", "--agents", "dqn", "--seeds", "1", "--episodes", "1", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "bench.json already exists; give another --out, or --force to replace it" in err and "\n" not in err
    assert not ran and (tmp_path / "bench.json").read_text() == "earlier"
    assert main([*argv, "--force"]) == 0 and ran == [1]
    assert (tmp_path / "bench.json").read_text() != "earlier" and (tmp_path / "curves.png").read_text() == "new"


# 6. Keys typed while the terminal was still in line mode (koba feedback waiting for a learner) are read.

def test_read_keys_keeps_keys_typed_before_it_started():
    from koba_ros.rl.keyboard import read_keys

    master, slave = pty.openpty()
    stop = threading.Event()
    timer = threading.Timer(10.0, stop.set)
    timer.start()
    try:
        os.write(master, b"+x-")  # typed before read_keys switched the terminal to cbreak
        keys = []
        for key, _ in read_keys(slave, stop=stop):
            keys.append(key)
            if len(keys) == 3:
                break
    finally:
        timer.cancel()
        os.close(master)
        os.close(slave)
    assert keys == ["+", "x", "-"]


# 8. ROS_DOMAIN_ID is checked before rclpy starts.

@pytest.mark.parametrize("value", ["abc", "300", "233", "-1", "1.5", "08", "0o5", "\u0665"])
def test_bad_ros_domain_id_is_one_line_before_ros_starts(value, monkeypatch, capsys):
    from koba_ros import launcher

    for name in ("run_composed", "run_processes"):
        monkeypatch.setattr(launcher, name, lambda *a, **k: pytest.fail("started ROS"))
    monkeypatch.setenv("ROS_DOMAIN_ID", value)
    assert main(["up", "teleop", "--duration", "1"]) == 2
    assert main(["feedback", "--keyboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in err] == ["koba up", "koba feedback"]
    assert all("ROS_DOMAIN_ID must be a whole number from 0 to 232" in line for line in err)
    assert main(["up", "teleop", "--list"]) == 0  # listing a graph starts no ROS


@pytest.mark.parametrize("value, number", [("", None), ("0", 0), ("42", 42), ("232", 232), (" 5", 5), ("5 ", 5),
                                           ("+5", 5), ("0x10", 16), ("010", 8)])
def test_good_ros_domain_ids_pass_as_rcl_reads_them(value, number):
    """rcl reads ROS_DOMAIN_ID with strtoul(base 0): blanks, "+", hex and octal are fine there (a first version of the
    check refused " 5" and let "08" through to an RCLError traceback)."""
    from koba_ros.cli import check_domain_id, domain_id_number

    check_domain_id({"ROS_DOMAIN_ID": value})
    check_domain_id({})
    assert value == "" or domain_id_number(value) == number
    check_domain_id({"ROS_DOMAIN_ID": "300", "RMW_IMPLEMENTATION": "rmw_zenoh_cpp"})  # no DDS ports to run out of


# 9. A reader that went away (`koba up picking --list | head -1`) ends koba quietly.

def test_a_closed_stdout_pipe_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before koba writes
    try:
        out = subprocess.run([sys.executable, "-m", "koba_ros.cli", "up", "picking", "--list"], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (141, "")


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch, capsys):
    from koba_ros.commands import say

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(say, "run", broken)
    assert main(["say", "hello"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("koba say: error:") and "broken pipe" in err and "\n" not in err


# 10. Options a run would ignore are refused in one line, before any work.

@pytest.mark.parametrize("argv, message", [
    (["asr", "/nonexistent/m.wav", "--checkpoint", "w.pt"], "--checkpoint is for --backend whisper"),
    (["asr", "/nonexistent/m.wav", "--backend", "whisper", "--general"], "--general is for --backend pocketsphinx"),
    (["pick", "--scene", "/nonexistent/s.json", "--target", "0", "--destination", "{box}", "--answer", "yes"],
     "--answer goes with an INSTRUCTION, not with --target"),
    (["pick", "--scene", "/nonexistent/s.json", "--target", "0", "--destination", "{box}", "--model", "m.pt",
      "--answer", "yes"], "--answer and --model go with an INSTRUCTION, not with --target"),
    (["train", "crop-kinds", "--epochs", "3"], "--epochs is for `koba train grounding`"),
    (["train", "crop-kinds", "--per-scene", "3", "--encoder", "byte", "--crops", "--token-drop", "0.1"],
     "--encoder, --per-scene, --token-drop, --crops are for `koba train grounding`"),
])
def test_options_a_run_would_ignore_are_refused(argv, message, tmp_path, monkeypatch, capsys):
    from koba_ros.grounding import crop_kinds, training
    from koba_ros.sim.layout import BOXES

    for module, name in ((training, "train"), (crop_kinds, "train_crop_kinds")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("trained"))
    argv = [BOXES[0] if a == "{box}" else a for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_crop_kinds_with_its_own_options_still_trains(tmp_path, monkeypatch):
    from koba_ros.grounding import crop_kinds

    monkeypatch.setattr(crop_kinds, "train_crop_kinds", lambda *a, **k: pytest.skip("reached training"))
    with pytest.raises(pytest.skip.Exception):
        main(["train", "crop-kinds", "--scenes", "5", "--crop-epochs", "1", "--seed", "3", "--threads", "1",
              "--out", str(tmp_path)])
