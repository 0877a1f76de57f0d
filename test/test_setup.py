"""scripts/setup.sh is idempotent: a second run with nothing changed does nothing."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_second_setup_run_has_nothing_to_do():
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    # The first run may have had work (a changed requirements.txt, say); the second must not.
    again = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "[setup]" not in again.stderr, f"setup did work on an unchanged checkout: {again.stderr}"


def test_interfaces_import_in_a_clean_environment():
    code = ("import rclpy; from koba_interfaces.msg import DetectedObjectArray; "
            "from koba_interfaces.action import PickPlace; print('ok')")
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, cwd="/", timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
