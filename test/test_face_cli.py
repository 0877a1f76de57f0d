"""`koba face IMAGE_OR_VIDEO --json`, run as a user runs it."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from koba_ros.face import samples


def koba_face(*args):
    proc = subprocess.run([sys.executable, "-m", "koba_ros.cli", "face", *map(str, args)], capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def write_png(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_astronaut_image_is_positive(tmp_path):
    annotated = tmp_path / "annotated.png"
    code, out, _ = koba_face(write_png(tmp_path / "astronaut.png", samples.astronaut()), "--json",
                             "--annotated", annotated)
    assert code == 0
    result = json.loads(out)
    assert result["faces"] == 1 and result["expression"] == "positive" and result["feedback"] == 1
    assert result["confidence"] > 0.8 and [e["value"] for e in result["events"]] == [1]
    assert cv2.imread(str(annotated)).shape == (512, 512, 3)


def test_picture_without_a_face_gives_no_feedback(tmp_path):
    code, out, _ = koba_face(write_png(tmp_path / "coffee.png", samples.no_face()), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["faces"] == 0 and result["feedback"] == 0 and result["events"] == []
    assert result["expression"] is None


def test_video_gives_one_event_per_smile(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 480))
    rest, smile = samples.on_canvas(samples.grace_hopper()), samples.on_canvas(samples.astronaut())
    for frame in [rest] * 8 + [smile] * 8 + [rest] * 6:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    code, out, err = koba_face(path, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["frames"] == 22 and result["feedback"] == 1
    assert [e["cue"] for e in result["events"]] == ["smile"]
    assert 0.8 <= result["events"][0]["onset_s"] <= 1.0


@pytest.mark.parametrize("content", [b"\xff\xd8\xff this is no jpeg" * 30, b""])
def test_corrupt_image_is_a_one_line_error(tmp_path, content):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    code, out, err = koba_face(bad, "--json")
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("koba face:")]
    assert len(lines) == 1 and "cannot read" in lines[0]


def test_dark_frame_gives_no_feedback(tmp_path):
    dark = np.clip(samples.on_canvas(samples.astronaut()) * 0.03, 0, 255).astype(np.uint8)
    code, out, _ = koba_face(write_png(tmp_path / "dark.png", dark), "--json")
    result = json.loads(out)
    assert code == 0 and result["feedback"] == 0 and result["skipped"] == ["too dark"]


def test_annotated_output_is_checked_before_any_work(tmp_path, capsys):
    from koba_ros.cli import main

    image = write_png(tmp_path / "coffee.png", samples.no_face())
    assert main(["face", str(image), "--annotated", str(tmp_path / "out.xyz")]) == 2
    assert "no image format for that name" in capsys.readouterr().err
    assert main(["face", str(tmp_path / "clip.avi"), "--annotated", str(tmp_path / "out.png")]) == 2
    assert "needs an image, not a video" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coffee.png"]


@pytest.mark.parametrize("frames", ["0", "-1"])
def test_a_frame_count_that_is_not_positive_is_refused_before_reading(tmp_path, frames):
    code, out, err = koba_face(write_png(tmp_path / "a.png", samples.on_canvas(samples.astronaut())),
                               "--max-frames", frames, "--json")
    assert code == 2 and out == "" and "--max-frames" in err and "readable frames" not in err


def test_a_folder_is_named_as_one_and_an_image_without_a_suffix_is_read_as_an_image(tmp_path):
    code, out, err = koba_face(tmp_path, "--json")
    assert code == 2 and "is a folder" in err
    bare = tmp_path / "smile"
    bare.write_bytes(write_png(tmp_path / "smile.png", samples.on_canvas(samples.astronaut())).read_bytes())
    code, out, err = koba_face(bare, "--json")
    assert code == 0 and json.loads(out)["feedback"] == 1


def test_a_frame_too_small_is_one_line_before_facemesh_loads(tmp_path):
    code, out, err = koba_face(write_png(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8)), "--json")
    assert code == 2 and out == "" and err.strip().splitlines() == [
        "koba face: error: frame 1x1 is too small for face detection (at least 32 px a side)"]
