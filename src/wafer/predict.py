"""Batch prediction with exactly the served pipeline.

The served pipeline (the one the `evaluate` stage reports on) is: block-max resize of the die
map to the checkpoint's input size (:func:`wafer.shard.resize_map`, as for the training shards)
-> logits, the mean over the 8 D4 views when ``tta`` (:func:`wafer.train.predict_logits`) ->
temperature, per-class thresholds and operating point (:meth:`wafer.serve.ServingConfig.decide`).
:class:`Predictor` runs exactly that, from the three files the pipeline writes, given by explicit
path: ``models/model.pt``, ``models/calibration.json``, ``models/thresholds.json``; with the
`index` stage's ``models/index.npz`` and ``models/novelty.json`` every row also gets a novelty
score and flag (:class:`wafer.novelty.NoveltyScorer`, computed from the same forward pass) and,
when asked, its nearest training maps.

The input formats, the map checks and the PNG encoding live in :mod:`wafer.readers` (re-exported
here: :func:`read_maps`, :func:`check_map`, :func:`encode_png`, ...). Pickles are read only when
asked (``trust_pickle``): a pickle runs code when it is loaded.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wafer.classes import CLASS_NAMES
from wafer.io import WaferInputError, sha256_file
from wafer.novelty import NoveltyScorer
from wafer.readers import (
    MAX_SIDE,
    Item,
    check_map,
    decode_pixels,
    decode_png,
    encode_png,
    looks_like_wafer,
    png_pixels,
    read_maps,
)
from wafer.serve import ServingConfig
from wafer.shard import resize_map
from wafer.train import Outputs, resolve_device

# --------------------------------------------------------------------------- the predictor


@dataclass
class Predictor:
    """The served pipeline: model + TTA + temperature + thresholds + operating point."""

    model: nn.Module
    payload: dict
    serving: ServingConfig
    device: torch.device
    cam_layer: str = "auto"
    cam_method: str = "gradcam++"
    paths: dict[str, str] = field(default_factory=dict)
    novelty: NoveltyScorer | None = None  # index + novelty.json: novelty score, neighbours

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        calibration: str | os.PathLike,
        thresholds: str | os.PathLike,
        device: str | torch.device = "auto",
        cam_layer: str = "auto",
        cam_method: str = "gradcam++",
        index: str | os.PathLike | None = None,
        novelty: str | os.PathLike | None = None,
    ) -> Predictor:
        """Load the three pipeline outputs, each by its explicit path, and with ``index`` and
        ``novelty`` the novelty scorer (stage `index`); bad files raise
        :class:`WaferInputError` (one line naming the file)."""
        from wafer.model import load_checkpoint

        dev = resolve_device(device) if isinstance(device, str) else device
        for p in (model, calibration, thresholds):
            if not Path(p).is_file():
                raise WaferInputError(p, "no such file")
        try:
            net, payload = load_checkpoint(model, dev)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
            msg = str(exc).splitlines()[0] if str(exc) else ""
            raise WaferInputError(
                model, f"not a loadable checkpoint: {type(exc).__name__}: {msg}"
            ) from None
        if tuple(payload.get("class_names", ())) != CLASS_NAMES:
            raise WaferInputError(
                model, f"class names {payload.get('class_names')} differ from {list(CLASS_NAMES)}"
            )
        # checks every field and that the calibration and thresholds were fit for this model
        serving = ServingConfig.load(calibration, thresholds, model=model)
        paths = {
            "model": str(model),
            "calibration": str(calibration),
            "thresholds": str(thresholds),
        }
        scorer = None
        if (index is None) != (novelty is None):
            raise ValueError("the novelty scorer needs both the index and novelty.json")
        if index is not None:
            scorer = NoveltyScorer.load(
                index, novelty, sha256_file(model), serving.temperature, serving.tta
            )
            paths |= {"index": str(index), "novelty": str(novelty)}
        return cls(net, payload, serving, dev, cam_layer, cam_method, paths, scorer)

    @property
    def input_size(self) -> int:
        return int(self.payload["input_size"])

    def prepare(self, maps: list[np.ndarray]) -> np.ndarray:
        """Valid die maps -> the uint8 ``(N, S, S)`` model input (block-max resize)."""
        s = self.input_size
        out = np.empty((len(maps), s, s), dtype=np.uint8)
        for i, m in enumerate(maps):
            out[i] = resize_map(np.asarray(m, dtype=np.uint8), s)
        return out

    def logits(self, maps: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Served logits: the mean over the 8 D4 views when the pipeline was calibrated with
        TTA (``serving.tta``)."""
        from wafer.train import predict_logits

        x = self.prepare(maps)
        if len(x) == 0:
            return np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
        return predict_logits(self.model, x, batch_size, self.device, tta=self.serving.tta)

    def outputs(self, maps: list[np.ndarray], batch_size: int = 256) -> Outputs:
        """Served logits and, with the novelty scorer, the features it was built on, from one
        forward pass."""
        from wafer.train import predict_outputs

        x = self.prepare(maps)
        mode = self.novelty.features_mode if self.novelty is not None else None
        if len(x) == 0:
            return Outputs(np.zeros((0, len(CLASS_NAMES)), dtype=np.float32), None)
        return predict_outputs(
            self.model, x, batch_size, self.device, tta=self.serving.tta, features=mode
        )

    def predict(
        self,
        maps: list[np.ndarray],
        sources: list[str] | None = None,
        batch_size: int = 256,
        neighbours: int = 0,
    ) -> list[dict]:
        """One row per map: source, predicted class (after the per-class thresholds and the
        operating point), confidence (its calibrated probability), defect decision (1 - p_none
        >= tau), p_defect, tau, the served operating point's name, top-3 [(class, p)] and all
        calibrated probabilities; with the novelty scorer its score, flag (``novel``) and
        method, and with ``neighbours`` K the K nearest training maps (ingested row, label,
        distance), nearest first."""
        if neighbours and self.novelty is None:
            raise ValueError("neighbours need the embedding index (models/index.npz)")
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
                    "p_defect": float(1.0 - p[CLASS_NAMES.index("none")]),
                    "tau": float(self.serving.tau),
                    "operating_point": self.serving.objective,
                    "top3": [(CLASS_NAMES[j], float(p[j])) for j in top],
                    "probabilities": {c: float(v) for c, v in zip(CLASS_NAMES, p, strict=True)},
                }
            )
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

    def cam(self, m: np.ndarray, target: str | int) -> np.ndarray:
        """Grad-CAM(++) of class ``target`` for one map (the unrotated view), upsampled to the
        map's own die grid (same CAM method and layer as the `gradcam` stage's defaults)."""
        from wafer.cam import compute_cam, resolve_layer_name, target_layer, upsample_to_grid
        from wafer.model import one_hot

        m = check_map(m, "map", max_side=None)
        k = CLASS_NAMES.index(target) if isinstance(target, str) else int(target)
        x = one_hot(torch.from_numpy(self.prepare([m])).to(self.device))
        t = torch.tensor([k], device=self.device)
        name = resolve_layer_name(
            self.cam_layer, self.payload["model_config"], self.payload["input_size"]
        )
        layer = target_layer(self.model, name)
        cam = compute_cam(self.model, x, t, layer, self.cam_method)[0]
        return upsample_to_grid(cam, m.shape)

    def cam_png(self, m: np.ndarray, row: dict, dpi: int = 80) -> bytes:
        """PNG (map | CAM | overlay, via wafer.gradcam_report.render_example) of the CAM of the
        predicted class of ``row`` (a :meth:`predict` row)."""
        from wafer.gradcam_report import render_example

        grid = self.cam(m, row["predicted"])
        title = f"predicted {row['predicted']} ({row['confidence']:.2f}) | {row['source']}"
        return render_example(np.asarray(m, dtype=np.uint8), grid, title[:90], dpi=dpi)


def safe_name(source: str, index: int) -> str:
    """A file name for the CAM PNG of item ``index``: ``00012_file.pkl_row_12.png``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source)
    return f"{index:05d}_{stem.strip('_')[:80]}.png"


def format_top3(top3: list[tuple[str, float]]) -> str:
    """``[('Center', 0.9), ...]`` -> ``'Center:0.900000;...'`` (the CSV cell)."""
    return ";".join(f"{c}:{p:.6f}" for c, p in top3)


__all__ = [
    "MAX_SIDE",
    "Item",
    "Predictor",
    "check_map",
    "decode_png",
    "decode_pixels",
    "encode_png",
    "format_top3",
    "looks_like_wafer",
    "png_pixels",
    "read_maps",
    "safe_name",
]
