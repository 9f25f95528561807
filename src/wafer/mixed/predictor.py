"""The served mixed-type pipeline (what `wafer predict` serves for a model of the mixed-type
pipeline): the 9-class pipeline's input checks and block-max resize
(:func:`wafer.data.shard.resize_maps`), the same forward pass
(:func:`wafer.model.forward.predict_outputs`, TTA as calibrated), then a temperature per label
and a threshold per label at the served operating point, exactly as the `evaluate` stage of
``pipelines/mixed/dvc.yaml`` scores them. The three files are bound by SHA-256
(:func:`wafer.mixed.served.check_mixed_binding`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wafer.config.mixed import MIXED_OBJECTIVES
from wafer.core.errors import UsageError, WaferInputError
from wafer.core.io import sha256_file
from wafer.data.maprules import check_map
from wafer.data.shard import resize_maps
from wafer.mixed.calibration import sigmoid
from wafer.mixed.labels import MIXED_LABELS, code_of
from wafer.mixed.served import MixedCalibration, MixedThresholds, check_mixed_binding
from wafer.mixed.thresholds import predict as threshold
from wafer.model.checkpoint import Checkpoint
from wafer.model.forward import predict_outputs, resolve_device
from wafer.model.runtime import Runtime, make_runtime


@dataclass
class MixedPredictor:
    model: nn.Module
    checkpoint: Checkpoint
    calibration: MixedCalibration
    thresholds: np.ndarray  # (8,) at the served point
    objective: str
    device: torch.device
    runtime: Runtime = field(init=False, repr=False)  # the served runtime over ``model``

    def __post_init__(self) -> None:
        self.runtime = make_runtime(self.model, self.device, self.calibration.runtime)

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        calibration: str | os.PathLike,
        thresholds: str | os.PathLike,
        device: str | torch.device,
        objective: str | None = None,
    ) -> MixedPredictor:
        """The three files (each checked, and bound together); ``objective`` serves the other
        fitted point (cost or macro_f1) instead of the file's."""
        if objective is not None and objective not in MIXED_OBJECTIVES:
            raise UsageError(
                f"--operating-point {objective!r}: a mixed-type model serves "
                f"{' or '.join(MIXED_OBJECTIVES)}"
            )
        dev = resolve_device(device) if isinstance(device, str) else device
        for p in (model, calibration, thresholds):
            if not Path(p).is_file():
                raise WaferInputError(p, "no such file")
        try:
            ckpt = Checkpoint.load(model, dev, MIXED_LABELS)
            net = ckpt.build(dev)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
            raise WaferInputError(model, f"not a loadable mixed-type checkpoint: {exc}") from None
        cal, thr = MixedCalibration.load(calibration), MixedThresholds.load(thresholds)
        check_mixed_binding(model, sha256_file(model), calibration, cal, thresholds, thr)
        point = objective or thr.objective
        return cls(net, ckpt, cal, np.asarray(thr.points[point]), point, dev)

    def probabilities(self, maps: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Calibrated per-label probabilities ``(N, 8)`` of valid die maps."""
        x = resize_maps(maps, self.checkpoint.input_size)
        if len(x) == 0:
            return np.zeros((0, len(MIXED_LABELS)))
        logits = predict_outputs(self.runtime, x, batch_size, views=self.calibration.views).logits
        return sigmoid(logits, self.calibration.temperatures)

    def predict(
        self,
        maps: list[np.ndarray],
        sources: list[str] | None = None,
        batch_size: int = 256,
        neighbours: int = 0,
    ) -> list[dict]:
        """One row per map: source, the labels present (label order), the pattern code, the
        served point and every label's calibrated probability."""
        if neighbours:
            raise UsageError("--neighbours: the mixed-type pipeline has no embedding index")
        names = [sources[i] if sources else f"map {i}" for i in range(len(maps))]
        checked = [check_map(m, names[i], max_side=None) for i, m in enumerate(maps)]
        probs = self.probabilities(checked, batch_size)
        present = threshold(probs, self.thresholds)
        return [
            {
                "source": names[i],
                "labels": [MIXED_LABELS[k] for k in np.flatnonzero(present[i])],
                "pattern_code": code_of(present[i]),
                "operating_point": self.objective,
                "probabilities": {n: float(v) for n, v in zip(MIXED_LABELS, probs[i], strict=True)},
            }
            for i in range(len(checked))
        ]
