"""`koba pick`: DESIGN.md's JSON contract, success from simulator ground truth, one-line errors."""
import json

import pytest

from koba_ros.cli import main
from koba_ros.paths import sim_dir

DEMO = str(sim_dir() / "scenes" / "demo.json")


def run_json(capsys, *argv):
    code = main(["pick", *argv, "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


def test_demo_pick_succeeds_by_ground_truth(capsys):
    code, out, _ = run_json(capsys, "--scene", DEMO, "--target", "0", "--destination", "top_right")
    assert code == 0
    assert out["status"] == "done" and out["success"] is True
    assert out["target"] == 0 and out["destination"] == "top_right" and out["dialogue"] == []
    assert {"setup", "render", "perceive", "plan", "motion"} <= set(out["timing_ms"])


def test_no_motion_plans_only(capsys):
    code, out, _ = run_json(capsys, "--scene", DEMO, "--target", "2", "--destination", "top_left", "--no-motion")
    assert code == 0 and out["status"] == "done" and out["success"] is None and "motion" not in out["timing_ms"]


def test_unknown_target_is_one_line(capsys):
    code, out, err = run_json(capsys, "--scene", DEMO, "--target", "99", "--destination", "top_left")
    assert code == 2 and out is None and "not an object of the scene" in err and err.count("\n") == 1


def test_unknown_box_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["pick", "--scene", DEMO, "--target", "0", "--destination", "middle"])
    assert "invalid choice" in capsys.readouterr().err


def test_bad_scene_file(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"objects": [{"name": "unicorn", "box": "top_left"}]}')
    code, out, err = run_json(capsys, "--scene", str(bad), "--target", "0", "--destination", "top_left")
    assert code == 2 and "unknown object name 'unicorn'" in err
