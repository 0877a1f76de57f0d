"""Frames -> feedback events: landmarks, the largest usable face, features, expression, events.

One FacePipeline per stream (camera, video file); `read_still` judges a single photo. The node,
`koba face` and bench/face.py all go through here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from koba_ros.errors import KobaError
from koba_ros.face.expression import Expression, NeutralCalibrator, classify
from koba_ros.face.features import FaceFeatures, extract_features
from koba_ros.face.feedback import ExpressionDebouncer, FeedbackEvent, HeadGestureDetector
from koba_ros.face.landmarks import Face, LandmarkDetector, check_frame


@dataclass
class FaceConfig:
    max_faces: int = 4                  # faces FaceMesh looks for; the largest usable one is read
    min_detection_confidence: float = 0.5
    calibration_s: float = 2.0          # seconds of the person's rest face taken as their neutral (0: prior only)
    smoothing_s: float = 0.1            # time constant of the score's exponential smoothing
    on_threshold: float = 0.45          # smoothed score that makes an event
    off_threshold: float = 0.2          # score below which the next event is armed
    min_duration_s: float = 0.2         # an expression must last this long (from its onset) to count
    max_gap_s: float = 0.5              # face lost longer than this ends an expression
    forget_s: float = 5.0               # face lost longer than this: recalibrate (maybe another person)
    gestures: bool = True               # nod -> +1, shake -> -1
    min_face_px: float = 60.0           # faces narrower than this are too small to read
    min_visible: float = 0.9            # share of landmarks inside the frame; below: cut by the edge
    dark_level: float = 25.0            # mean brightness (0..255) below which a frame is called too dark

    def __post_init__(self):
        if not 0.0 < self.off_threshold < self.on_threshold <= 1.0:
            raise KobaError(f"need 0 < off_threshold < on_threshold <= 1, got {self.off_threshold}, "
                            f"{self.on_threshold}")
        for name in ("calibration_s", "smoothing_s", "min_duration_s", "max_gap_s", "forget_s", "min_face_px",
                     "dark_level"):
            if not 0 <= getattr(self, name) < math.inf:  # NaN fails too: it would silently disable the step
                raise KobaError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.min_visible <= 1.0 or not 0.0 <= self.min_detection_confidence <= 1.0:
            raise KobaError(f"min_visible and min_detection_confidence must be in [0, 1], got {self.min_visible}, "
                            f"{self.min_detection_confidence}")
        if isinstance(self.max_faces, bool) or not isinstance(self.max_faces, int) or self.max_faces < 1:
            raise KobaError(f"max_faces must be a whole number >= 1, got {self.max_faces!r}")


@dataclass
class FrameResult:
    t: float
    faces: list[Face]
    brightness: float
    face: Face | None = None                 # the face that was read (largest usable)
    features: FaceFeatures | None = None
    expression: Expression | None = None
    events: list[FeedbackEvent] = field(default_factory=list)
    skipped: str = ""                         # why nothing was read: no face, too dark, at the edge, too small

    def as_dict(self) -> dict:
        e = self.expression
        return {"t": round(self.t, 3), "faces": len(self.faces), "expression": e.label if e else None,
                "confidence": round(e.confidence, 3) if e else None, "skipped": self.skipped,
                "events": [ev.as_dict() for ev in self.events]}


def brightness(rgb: np.ndarray) -> float:
    return float(rgb[::4, ::4].mean())  # every 16th pixel is plenty for a mean


class FacePipeline:
    def __init__(self, config: FaceConfig | None = None, video: bool = True):
        self.config = config or FaceConfig()
        c = self.config
        self.detector = LandmarkDetector(c.max_faces, video=video, min_detection_confidence=c.min_detection_confidence)
        self.calibrator = NeutralCalibrator(c.calibration_s)
        self.debouncer = ExpressionDebouncer(c.smoothing_s, c.on_threshold, c.off_threshold, c.min_duration_s,
                                             c.max_gap_s)
        self.gestures = HeadGestureDetector()
        self.last_face_t: float | None = None
        self.last_t: float | None = None

    def read(self, frame, t: float) -> FrameResult:
        """Landmarks and expression of one frame, without events (what a still photo gets)."""
        rgb = check_frame(frame)
        result = FrameResult(t, self.detector.detect(rgb), brightness(rgb))
        if not result.faces:
            result.skipped = "too dark" if result.brightness < self.config.dark_level else "no face"
            return result
        # The largest usable face: a bigger one cut by the frame edge (a bystander) must not hide it. Nothing usable:
        # the largest face's reason is the one reported.
        reasons = [self._unusable(face) for face in result.faces]
        if "" not in reasons:
            result.skipped = reasons[0]
            return result
        face = result.faces[reasons.index("")]
        result.face = face
        result.features = extract_features(face.points)
        result.expression = classify(result.features, self.calibrator.neutral)
        return result

    def _unusable(self, face: Face) -> str:
        """Why a face cannot be read ("" if it can)."""
        if not np.isfinite(face.points).all():  # NaN/inf points: their features would be NaN (and poison the rest)
            return "bad landmarks"
        if face.visible_fraction < self.config.min_visible:
            return f"face at the edge of the frame ({face.visible_fraction:.0%} visible)"
        if face.bbox[2] < self.config.min_face_px:
            return f"face too small ({face.bbox[2]:.0f} px wide, need {self.config.min_face_px:.0f})"
        return ""

    def process(self, frame, t: float) -> FrameResult:
        """One frame of a stream at time t (seconds): the frame's reading plus any feedback events it completes.

        A clock that jumps back (a camera, bag or simulation restarted) starts a new stream: every time window
        below assumes time moves forward and would otherwise keep, and rescan, all frames since."""
        if not math.isfinite(t):
            raise KobaError(f"frame time must be a finite number of seconds, got {t}")
        if self.last_t is not None and t < self.last_t:
            self.restart()
        self.last_t = t
        if self.last_face_t is not None and t - self.last_face_t > self.config.forget_s:
            # no face read for that long (faceless frames, or no frames at all): maybe another person now
            self.calibrator.reset()
            self.gestures.reset()
            self.last_face_t = None
        result = self.read(frame, t)
        f = result.features
        if f is None:
            self.debouncer.update(t, None)
            return result
        self.last_face_t = t
        if not self.calibrator.done:
            self.calibrator.add(t, f)
            return result  # no feedback while learning the person's rest face
        if not result.expression.read:   # a face, pitched away: not a face gone (that resets the debouncer)
            self.debouncer.hold(t)
            event = None
        else:
            event = self.debouncer.update(t, result.expression.score)
        if event:
            result.events.append(event)
        if self.config.gestures:
            gesture = self.gestures.update(t, f.yaw, f.pitch)
            if gesture:
                result.events.append(gesture)
        return result

    def restart(self) -> None:
        """Forget the stream so far: the rest face, a half-seen expression or gesture."""
        self.calibrator.reset()
        self.gestures.reset()
        self.debouncer.reset()
        self.last_face_t = None

    @property
    def calibrating(self) -> bool:
        return not self.calibrator.done

    def close(self) -> None:
        self.detector.close()


def read_still(frame, config: FaceConfig | None = None) -> tuple[FrameResult, list[FeedbackEvent]]:
    """A photo: its reading, and the one feedback event a held non-neutral expression gives (stamped 0)."""
    pipeline = FacePipeline(config, video=False)
    try:
        result = pipeline.read(frame, 0.0)
    finally:
        pipeline.close()
    e = result.expression
    events = [FeedbackEvent(0.0, 0.0, e.value, e.confidence, "smile" if e.value > 0 else "frown")] \
        if e and e.value else []
    return result, events
