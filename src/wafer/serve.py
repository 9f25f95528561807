"""The served pipeline as one object: model + TTA + temperature + thresholds + operating point.

Everything that reports a number about served predictions (the `evaluate` stage) and everything
that serves them (`wafer predict`, the demo) goes through :meth:`Served.decide`, so the numbers
describe exactly the predictions that are served.

Files (written by the pipeline, always read by explicit path):

* ``models/model.pt``        -- weights + architecture (``torch.load(weights_only=True)``)
* ``models/calibration.json`` -- ``{"temperature": T, "tta": bool, ...}`` (stage `calibrate`)
* ``models/thresholds.json``  -- ``{"tau": ..., "class_thresholds": {...}, ...}`` (`thresholds`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wafer.calibration import softmax
from wafer.classes import CLASS_NAMES, NONE_INDEX
from wafer.io import read_json
from wafer.thresholds import decide


@dataclass(frozen=True)
class Decision:
    probs: np.ndarray  # (N, C) calibrated probabilities
    pred: np.ndarray  # (N,) class index after thresholds and operating point
    defect: np.ndarray  # (N,) bool: flagged as a defect (1 - p_none >= tau)


@dataclass(frozen=True)
class ServingConfig:
    temperature: float = 1.0
    tta: bool = True
    tau: float = 0.5
    class_thresholds: tuple[float, ...] = (0.0,) * len(CLASS_NAMES)
    cost_ratio: float = 10.0  # escape : false-alarm cost the operating point was chosen for

    @classmethod
    def load(cls, calibration: str | Path, thresholds: str | Path | None = None) -> ServingConfig:
        cal = read_json(calibration)
        kw = {"temperature": float(cal["temperature"]), "tta": bool(cal["tta"])}
        if thresholds is not None:
            thr = read_json(thresholds)
            kw["tau"] = float(thr["tau"])
            kw["cost_ratio"] = float(thr["cost_ratio"])
            kw["class_thresholds"] = tuple(float(thr["class_thresholds"][c]) for c in CLASS_NAMES)
        return cls(**kw)

    def decide(self, logits: np.ndarray) -> Decision:
        """Served logits (TTA-combined when ``tta``) -> calibrated probabilities and decisions."""
        probs = softmax(logits, self.temperature)
        pred = decide(probs, np.asarray(self.class_thresholds), self.tau)
        return Decision(probs=probs, pred=pred, defect=(1.0 - probs[:, NONE_INDEX]) >= self.tau)
