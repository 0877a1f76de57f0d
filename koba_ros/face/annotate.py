"""The debug picture: every face's box, the read face's landmarks and expression, recent events."""
from __future__ import annotations

import numpy as np

from koba_ros.face.pipeline import FrameResult

COLOURS = {"positive": (40, 200, 40), "negative": (220, 40, 40), "neutral": (200, 200, 200)}  # RGB


def annotate(rgb: np.ndarray, result: FrameResult, status: str = "") -> np.ndarray:
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    for face in result.faces:
        x, y, w, h = (int(v) for v in face.bbox)
        colour = (120, 120, 120)
        if face is result.face and result.expression:
            colour = COLOURS[result.expression.label]
            for px, py, _ in face.points[::3].astype(int):
                cv2.circle(out, (px, py), 1, colour, -1)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
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
