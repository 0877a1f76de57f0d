"""Face feedback throughput and latency on CPU at 640x480; prints one JSON object.

The clip: Grace Hopper at rest and the smiling astronaut (photos that ship with matplotlib and
scikit-image) alternating every 1.5 s, played as a 15 fps stream. Two runs in this process:
  tracking  - the pipeline as the node runs it (FaceMesh tracks landmarks between frames);
  baseline  - the same pipeline with FaceMesh re-detecting the face on every frame (static mode).
Frame-to-feedback latency = decision delay (stream time from the expression's onset to the frame
that confirms it: smoothing + min_duration) + the wall time to process that frame.

    .venv/bin/python bench/face.py [--frames 120]
"""
import argparse
import json
import time

import numpy as np

from koba_ros.face import samples
from koba_ros.face.pipeline import FaceConfig, FacePipeline


def clip(n: int, fps: float = 15.0) -> tuple[list[tuple[float, np.ndarray]], int]:
    """(time, frame) pairs, and how many smiles begin in them."""
    rest, smile = samples.on_canvas(samples.grace_hopper()), samples.on_canvas(samples.astronaut())
    hold = round(1.5 * fps)
    smiling = [(i // hold) % 2 == 1 for i in range(n)]
    starts = sum(1 for i in range(1, n) if smiling[i] and not smiling[i - 1])
    return [(i / fps, smile if smiling[i] else rest) for i in range(n)], starts


def run(frames, video: bool) -> dict:
    pipeline = FacePipeline(FaceConfig(calibration_s=0), video=video)
    try:
        pipeline.process(frames[0][1], -1.0)  # warm-up: the first call builds the TFLite interpreters
        wall, delays, event_wall = [], [], []
        for t, frame in frames:
            start = time.perf_counter()
            result = pipeline.process(frame, t)
            wall.append(time.perf_counter() - start)
            for event in result.events:
                delays.append(event.decided - event.onset)
                event_wall.append(wall[-1])
    finally:
        pipeline.close()
    wall = np.array(wall)
    latency = np.array(delays) + np.array(event_wall)
    return {"fps": round(len(wall) / wall.sum(), 1), "frame_ms_median": round(1000 * float(np.median(wall)), 2),
            "frame_ms_p95": round(1000 * float(np.percentile(wall, 95)), 2), "events": len(delays),
            "decision_delay_s_median": round(float(np.median(delays)), 3) if delays else None,
            "frame_to_feedback_s_median": round(float(np.median(latency)), 3) if delays else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    frames, smiles = clip(args.frames)
    tracking, baseline = run(frames, video=True), run(frames, video=False)
    print(json.dumps({"resolution": "640x480", "stream_fps": 15, "frames": len(frames),
                      "smiles_in_clip": smiles,
                      "tracking": tracking, "baseline_static_detection": baseline,
                      "speedup_tracking_vs_static": round(tracking["fps"] / baseline["fps"], 2)}))


if __name__ == "__main__":
    main()
