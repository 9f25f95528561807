"""The served pipeline: what `wafer predict` and the demo serve, and what the `infer` and
`evaluate` stages compute and report on.

A die map goes through, in this order:

1. **Input**: the map is checked (:func:`wafer.data.maprules.check_map`; the input formats
   live in :mod:`wafer.inputs`) and block-max resized to the checkpoint's input size
   (:func:`wafer.data.shard.resize_map`, as for the training shards):
   :meth:`Predictor.prepare`.
2. **Logits** (:func:`wafer.model.forward.predict_outputs`): the model in fp32 on every
   device; the mean of the logits of ``infer.views`` dihedral views (the `infer` stage writes
   these for val and test; calibration and thresholds are fit on exactly them).
3. **Temperature**: calibrated probabilities ``softmax(logits / T)``
   (:class:`wafer.serving.files.Calibration`, fit on validation by the `calibrate` stage).
4. **Decision rule** (:func:`wafer.serving.decision.decide`) at the served operating point
   (:class:`wafer.serving.files.Thresholds`, fit on validation by the `thresholds` stage):
   :meth:`wafer.serving.decision.ServingConfig.decide`, which the `evaluate` stage also calls,
   so its figures describe exactly the served predictions.
5. **Novelty** (optional, `index` stage): :class:`wafer.serving.novelty.NoveltyScorer` from
   the same forward pass's features.

:class:`Predictor` runs 1-5 from the pipeline's files (paths: dvc.yaml's ``paths``); the
Grad-CAM that explains a served prediction is :func:`wafer.explain.report.served_cam` (it
changes no decision). The served files are bound to the model by SHA-256
(:func:`wafer.serving.files.check_binding`): a mismatch is a one-line
:class:`wafer.core.errors.WaferInputError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wafer.core.classes import CLASS_NAMES, NONE_INDEX
from wafer.core.errors import WaferInputError
from wafer.core.io import sha256_file
from wafer.data.maprules import check_map
from wafer.data.shard import resize_maps
from wafer.model.checkpoint import Checkpoint
from wafer.model.forward import Outputs, predict_outputs, resolve_device
from wafer.model.runtime import QuantizationError, Runtime, make_runtime
from wafer.serving.decision import ServingConfig
from wafer.serving.novelty import NoveltyScorer

# The most nearest training maps returned per map: a review shows a handful; a larger K would
# only cost memory (K rows per map) and output (K entries per CSV cell).
MAX_NEIGHBOURS = 100


@dataclass
class Predictor:
    """The served pipeline: model + runtime + TTA + temperature + thresholds + operating
    point."""

    model: nn.Module
    checkpoint: Checkpoint
    serving: ServingConfig
    device: torch.device
    # Grad-CAM layer and method for explaining its predictions (the gradcam section; None: no
    # CAM): wafer.explain.report.served_cam and served_cam_png
    cam_layer: str | None
    cam_method: str | None
    paths: dict[str, str] = field(default_factory=dict)
    novelty: NoveltyScorer | None = None  # index + novelty.json: novelty score, neighbours
    runtime: Runtime = field(init=False, repr=False)  # the served runtime over ``model``

    def __post_init__(self) -> None:
        try:
            self.runtime = make_runtime(
                self.model, self.device, self.serving.runtime, self.serving.quantization
            )
        except QuantizationError as exc:  # the served int8 graph cannot be rebuilt here
            raise WaferInputError(self.paths.get("calibration", "calibration"), str(exc)) from None

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        calibration: str | os.PathLike,
        thresholds: str | os.PathLike,
        device: str | torch.device,
        cam_layer: str | None = None,
        cam_method: str | None = None,
        index: str | os.PathLike | None = None,
        novelty: str | os.PathLike | None = None,
        objective: str | None = None,
    ) -> Predictor:
        """Load the three pipeline outputs, each by its explicit path, and with ``index`` and
        ``novelty`` the novelty scorer (stage `index`); ``objective`` serves another fitted
        operating point than the file's. Bad files, or a refused point, raise
        :class:`WaferInputError` (one line naming the file)."""
        dev = resolve_device(device) if isinstance(device, str) else device
        for p in (model, calibration, thresholds):
            if not Path(p).is_file():
                raise WaferInputError(p, "no such file")
        try:
            ckpt = Checkpoint.load(model, dev)
            net = ckpt.build(dev)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
            msg = str(exc).splitlines()[0] if str(exc) else ""
            raise WaferInputError(
                model, f"not a loadable checkpoint: {type(exc).__name__}: {msg}"
            ) from None
        # checks every field and that the calibration and thresholds were fit for this model
        digest = sha256_file(model)
        serving = ServingConfig.load(
            calibration, thresholds, model=model, objective=objective, model_sha256=digest
        )
        paths = {
            "model": str(model),
            "calibration": str(calibration),
            "thresholds": str(thresholds),
        }
        scorer = None
        if (index is None) != (novelty is None):
            raise ValueError("the novelty scorer needs both the index and novelty.json")
        if index is not None:
            scorer = NoveltyScorer.load(index, novelty, digest, serving.temperature, serving.views)
            paths |= {"index": str(index), "novelty": str(novelty)}
        return cls(net, ckpt, serving, dev, cam_layer, cam_method, paths, scorer)

    @property
    def input_size(self) -> int:
        return self.checkpoint.input_size

    def prepare(self, maps: list[np.ndarray]) -> np.ndarray:
        """Valid die maps -> the uint8 ``(N, S, S)`` model input (block-max resize)."""
        return resize_maps(maps, self.input_size)

    def outputs(self, maps: list[np.ndarray], batch_size: int = 256) -> Outputs:
        """Served logits and, with the novelty scorer, the features it was built on, from one
        forward pass."""
        x = self.prepare(maps)
        mode = self.novelty.features_mode if self.novelty is not None else None
        if len(x) == 0:
            return Outputs(np.zeros((0, len(CLASS_NAMES)), dtype=np.float32), None)
        return predict_outputs(self.runtime, x, batch_size, views=self.serving.views, features=mode)

    def predict(
        self,
        maps: list[np.ndarray],
        sources: list[str] | None = None,
        batch_size: int = 256,
        neighbours: int = 0,
    ) -> list[dict]:
        """One row per map: source, predicted class (after the per-class thresholds and the
        operating point), confidence (its calibrated probability), defect decision (1 - p_none
        >= tau), p_defect, tau, the served operating point's name, top-3 [(class, p)], all
        calibrated probabilities and, with a set rule, the prediction set (the classes whose
        conformal score clears it: the true class is in it with the stated coverage); with the
        novelty scorer its score, flag (``novel``) and method, and with ``neighbours`` K the K
        nearest training maps (ingested row, label, distance), nearest first."""
        if neighbours and self.novelty is None:
            raise ValueError("neighbours need the embedding index (index stage)")
        if not 0 <= neighbours <= MAX_NEIGHBOURS:
            raise ValueError(f"neighbours must be 0 to {MAX_NEIGHBOURS}, not {neighbours}")
        checked = [
            check_map(m, sources[i] if sources else f"map {i}", max_side=None)
            for i, m in enumerate(maps)
        ]
        out = self.outputs(checked, batch_size)
        d = self.serving.decide(out.logits)
        score = flag = near = None
        if self.novelty is not None and len(checked):
            score = self.novelty.score(out.logits, out.features)
            flag = self.novelty.flag(score)
            if neighbours:
                near = self.novelty.index.neighbours(out.features, neighbours)
        rows = []
        for i in range(len(checked)):
            p = d.probs[i]
            k = int(d.pred[i])
            top = np.argsort(-p, kind="stable")[:3]
            rows.append(
                {
                    "source": sources[i] if sources else f"map {i}",
                    "predicted": CLASS_NAMES[k],
                    "confidence": float(p[k]),
                    "defect": bool(d.defect[i]),
                    "p_defect": float(1.0 - p[NONE_INDEX]),
                    "tau": float(self.serving.tau),
                    "operating_point": self.serving.objective,
                    "top3": [(CLASS_NAMES[j], float(p[j])) for j in top],
                    "probabilities": {c: float(v) for c, v in zip(CLASS_NAMES, p, strict=True)},
                }
            )
            if d.sets is not None:  # the classes it may be, most probable first
                members = [j for j in np.argsort(-p, kind="stable") if d.sets[i, j]]
                rows[-1]["prediction_set"] = [CLASS_NAMES[j] for j in members]
            if score is not None:
                rows[-1] |= {
                    "novelty_score": float(score[i]),
                    "novel": bool(flag[i]),
                    "novelty_method": self.novelty.config.method,
                }
            if near is not None:
                idx = self.novelty.index
                rows[-1]["neighbours"] = [
                    {
                        "row": int(idx.rows[j]),
                        "label": CLASS_NAMES[int(idx.labels[j])],
                        "distance": float(dist),
                    }
                    for dist, j in zip(near[0][i], near[1][i], strict=True)
                ]
        return rows
