"""Features -> positive / negative / neutral, relative to the person's own neutral face.

Faces differ more between people than one person's smile differs from their rest face, so
every cue is a change from a neutral baseline: the person's own (a short calibration, the
medians of a few seconds of their rest face) or, before that, a population prior.

Cues and the change that counts as a full-strength expression (units of the eye-corner distance):
  smile:  mouth corners rise above the lip centre (0.06) and the mouth widens (0.10);
  frown:  corners drop (0.04), brows lower toward the eyes (0.03), brows draw together (0.04).
Brow cues are only used once calibrated: brow height and spacing vary too much between people
to read against a population prior. The scales are the geometry of the cues, not fitted to data.

The cues are image-plane geometry, so turning the head moves them too: the mouth corners sit behind the lip centre,
and a head pitched by 0.1 rad shifts the corners' lift by about 0.02 (half a frown), so a nod read as a frown. Once
calibrated, a frame whose head pitch is further than POSE_PITCH_OFF from the rest face's is not read
(Expression.read False, score None: the debouncer holds, its time moving on with its smoothed score and the
expression reported left as they were, so a smile held through a nod is one event; a face gone still resets it). The
cost: an expression made with the head tilted up or down from its rest pose, or in the middle of a nod, is not seen.
Yaw (a head turn) barely moves the cues (measured) and is not held back.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import astuple, dataclass, replace

import numpy as np

from koba_ros.face.features import FaceFeatures


@dataclass(frozen=True)
class Neutral:
    mouth_corner_lift: float
    mouth_width: float
    brow_raise: float
    brow_gap: float
    calibrated: bool
    pitch: float = math.nan   # head pitch of the rest face (radians); NaN for the prior: no person, no pose to compare


# Prior for an uncalibrated person: at rest the mouth corners sit level with the lip centre, and the
# mouth is about 0.59 of the outer-eye-corner width (anthropometric norms: mouth width ch-ch ~52 mm,
# biocular width ex-ex ~88 mm, Farkas 1994). Brow values are placeholders that the weights ignore.
POPULATION_NEUTRAL = Neutral(mouth_corner_lift=0.0, mouth_width=0.59, brow_raise=0.0, brow_gap=0.0, calibrated=False)

LIFT_FULL, WIDTH_FULL = 0.06, 0.10
DROP_FULL, BROW_LOWER_FULL, BROW_GATHER_FULL = 0.04, 0.03, 0.04
DECISION = 0.5  # evidence (0..1) an expression needs to be called
# Head pitch further than this (radians) from the calibrated rest pose: the cues are not read. Measured on the
# astronaut's rest landmarks turned in 3-D (docs/face.md "Session 30"): pitch moves the lift by ~0.19 per rad, so
# 0.08 rad gives a rest face frown evidence 0.37, below the debouncer's `on` (0.45; 0.1 rad gave 0.47). Yaw up to
# 0.8 rad gave no frown and smile evidence 0.17 at most, so it is not checked.
POSE_PITCH_OFF = 0.08


@dataclass(frozen=True)
class Expression:
    label: str          # positive | negative | neutral
    value: int          # +1, -1, 0
    confidence: float   # 0..1
    smile: float        # evidence 0..1
    frown: float        # evidence 0..1
    read: bool = True   # False: head pitched away from the calibrated pose, cues not read (label neutral)

    @property
    def score(self) -> float | None:
        """Signed evidence in -1..1 (what the smoother averages); None when the cues were not read."""
        return self.smile - self.frown if self.read else None


def _ramp(x: float) -> float:
    return float(np.clip(x, 0.0, 1.0))


def _noisy_or(*evidence: float) -> float:
    """Any one cue at full strength is enough; weak cues add up."""
    return float(1.0 - np.prod([1.0 - e for e in evidence]))


def classify(f: FaceFeatures, neutral: Neutral = POPULATION_NEUTRAL) -> Expression:
    lift = f.mouth_corner_lift - neutral.mouth_corner_lift
    # Corners rising carry a smile; a wider mouth alone (talking, a grimace) is only supporting evidence.
    smile = 0.7 * _ramp(lift / LIFT_FULL) + 0.3 * _ramp((f.mouth_width - neutral.mouth_width) / WIDTH_FULL)
    frown_cues = [_ramp(-lift / DROP_FULL)]
    if neutral.calibrated:
        frown_cues += [_ramp((neutral.brow_raise - f.brow_raise) / BROW_LOWER_FULL),
                       _ramp((neutral.brow_gap - f.brow_gap) / BROW_GATHER_FULL)]
    frown = _noisy_or(*frown_cues)
    if neutral.calibrated and abs(f.pitch - neutral.pitch) > POSE_PITCH_OFF:
        return Expression("neutral", 0, 0.0, smile, frown, read=False)  # the pose, not the face, moved the cues
    if smile >= DECISION and smile > frown:
        return Expression("positive", 1, smile, smile, frown)
    if frown >= DECISION and frown > smile:
        return Expression("negative", -1, frown, smile, frown)
    return Expression("neutral", 0, 1.0 - max(smile, frown), smile, frown)


class NeutralCalibrator:
    """The person's neutral face: medians of their features over the first `seconds` of frames that
    look neutral against the population prior (a smile during calibration is not taken as rest).

    A face that never reads neutral against the prior (mouth corners that rest low read as a frown) would keep the
    calibration, and with it all feedback, waiting forever. After `give_up_s` of faces without such a stretch, the
    last `seconds` of the face (at least `min_frames` frames) are taken as its rest (`assumed`): from then on its
    smiles and frowns count from there.
    Not while a neutral stretch is under way (a neutral frame within the last `seconds`): that one may still finish.
    """

    def __init__(self, seconds: float = 2.0, min_frames: int = 10, give_up_s: float | None = None):
        self.seconds, self.min_frames = float(seconds), int(min_frames)
        self.give_up_s = max(8.0, 4 * self.seconds) if give_up_s is None else float(give_up_s)
        self.samples: list[FaceFeatures] = []
        self.recent: deque[tuple[float, FaceFeatures]] = deque()   # every face of the last `seconds`
        self.start: float | None = None
        self.first_face: float | None = None
        self.last_neutral: float | None = None
        self.assumed = False
        self.neutral: Neutral = POPULATION_NEUTRAL

    @property
    def done(self) -> bool:
        return self.neutral.calibrated or self.seconds <= 0

    def add(self, t: float, f: FaceFeatures) -> None:
        if self.done or not np.isfinite(astuple(f)).all():  # a NaN sample would make the medians NaN
            return
        self.first_face = t if self.first_face is None else self.first_face
        self.recent.append((t, f))
        # min_frames kept even if older than `seconds`: below min_frames / seconds fps (5 at the defaults) the
        # window alone never held enough, and the fallback never came.
        while t - self.recent[0][0] > self.seconds and len(self.recent) > self.min_frames:
            self.recent.popleft()
        if classify(f).label == "neutral":
            self.start = t if self.start is None else self.start
            self.last_neutral = t
            self.samples.append(f)
        if self.start is not None and t - self.start >= self.seconds and len(self.samples) >= self.min_frames:
            self.neutral = self._medians(self.samples)
            self.samples.clear()
        elif (t - self.first_face >= self.give_up_s and len(self.recent) >= self.min_frames
              and (self.last_neutral is None or t - self.last_neutral > self.seconds)):   # not inside a neutral stretch
            self.neutral, self.assumed = self._medians([s for _, s in self.recent]), True

    @staticmethod
    def _medians(faces: list[FaceFeatures]) -> Neutral:
        return Neutral(**{k: float(np.median([getattr(s, k) for s in faces]))
                          for k in ("mouth_corner_lift", "mouth_width", "brow_raise", "brow_gap", "pitch")},
                       calibrated=True)

    def reset(self) -> None:
        """Forget the person (a new face took over)."""
        self.samples.clear()
        self.recent.clear()
        self.start = self.first_face = self.last_neutral = None
        self.assumed = False
        self.neutral = replace(POPULATION_NEUTRAL)
