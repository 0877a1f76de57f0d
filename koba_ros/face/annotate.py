"""The debug picture: every face's box, the read face's landmarks and expression, recent events."""
from __future__ import annotations

import numpy as np

from koba_ros.face.pipeline import FrameResult

COLOURS = {"positive": (40, 200, 40), "negative": (220, 40, 40), "neutral": (200, 200, 200)}  # RGB
FAR = 1 << 20  # cv2 refuses coordinates past int32; clipping an axis-aligned box or a dot this far out draws the same


def _pixels(values) -> np.ndarray:
    return np.clip(np.asarray(values, dtype=np.float64), -FAR, FAR).astype(int)


def annotate(rgb: np.ndarray, result: FrameResult, status: str = "") -> np.ndarray:
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    for face in result.faces:
        if not np.isfinite(face.points).all():
            continue  # the pipeline's "bad landmarks" (FacePipeline._unusable): no box or dot can be drawn from them
        x, y, w, h = face.bbox
        x0, y0, x1, y1 = (int(v) for v in _pixels((x, y, x + w, y + h)))
        colour = (120, 120, 120)
        if face is result.face and result.expression:
            colour = COLOURS[result.expression.label]
            for px, py in _pixels(face.points[::3, :2]):
                cv2.circle(out, (int(px), int(py)), 1, colour, -1)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, 2)
    lines = [status] if status else []
    if result.expression:
        e = result.expression
        lines.append(f"{e.label} {e.confidence:.2f}  smile {e.smile:.2f} frown {e.frown:.2f}")
    elif result.skipped:
        lines.append(result.skipped)
    lines += [f"FEEDBACK {ev.value:+d} ({ev.cue})" for ev in result.events]
    for i, text in enumerate(lines):
        cv2.putText(out, text, (8, 22 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2, cv2.LINE_AA)
    return out
