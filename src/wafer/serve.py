"""The served pipeline, all of it in one module: what `wafer predict` and the demo serve, and what
the `infer` and `evaluate` stages compute and report on.

A die map goes through, in this order (each step below, in this file):

1. **Input**: the map is checked (:func:`wafer.readers.check_map`; the input formats live in
   :mod:`wafer.readers`) and block-max resized to the checkpoint's input size
   (:func:`wafer.shard.resize_map`, as for the training shards): :meth:`Predictor.prepare`.
2. **Logits** (:func:`predict_outputs`, on :func:`resolve_device`'s device): the model in fp32
   on every device; with TTA the mean of the logits of the 8 dihedral views (the `infer` stage
   writes these for val and test; calibration and thresholds are fit on exactly them).
3. **Temperature**: calibrated probabilities ``softmax(logits / T)`` (:class:`Calibration`,
   fit on validation by the `calibrate` stage).
4. **Decision rule** (:func:`decide`) at the served operating point (:class:`Thresholds`, fit
   on validation by the `thresholds` stage): :meth:`ServingConfig.decide`, which the
   `evaluate` stage also calls, so its figures describe exactly the served predictions.
5. **Novelty** (optional, `index` stage): :class:`wafer.novelty.NoveltyScorer` from the same
   forward pass's features.

:class:`Predictor` runs 1-5 from the pipeline's files (paths: dvc.yaml's ``paths``); the
Grad-CAM that explains a served prediction is :func:`wafer.gradcam_report.served_cam` (it
changes no decision). The two JSON files record the SHA-256 of the model whose logits they were
fit on, and of those logits; :meth:`ServingConfig.load` checks every field (:data:`FIELD_RULES`)
and, given the model, that the files belong together, and refuses anything else with a one-line
:class:`wafer.io.WaferInputError` naming the file and the field.

Decision rule
-------------
Given class probabilities ``p`` (one row of ``(N, C)``), an operating point ``tau`` and per-class
thresholds ``t`` (length ``C``; the entry for 'none' is ignored), the predicted class is:

1. **Defect or not.** The map is flagged as a defect iff ``P(defect) = 1 - p_none >= tau``.
   If it is not flagged, the prediction is 'none'.
2. **Which defect.** A defect class is *accepted* when its own probability clears its threshold,
   ``p_k >= t_k``; the prediction is the most probable accepted defect class (equal
   probabilities keep class-index order). If no defect class is accepted, it is the most
   probable defect class.

:func:`decide` implements exactly this rule; the fitting code (:mod:`wafer.thresholds`) evaluates
the same functions, so the rule is applied identically at fit time and at prediction time.

Thresholds never go below a floor ``min_threshold`` (> 0), and all start there: with every
threshold at the floor, step 2 is the plain argmax over the defect classes (the most probable
defect class is accepted whenever anything is). A raised threshold ``t_a`` only lets another
class ``b`` take a map from ``a`` when ``p_a < t_a`` *and* ``p_b >= t_b >= min_threshold``: a
class with almost no probability can never take a map, which the earlier all-zero start allowed
(a threshold of 0 always clears).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wafer.augment import N_VIEWS, all_views
from wafer.calibration import softmax
from wafer.classes import CLASS_NAMES, NONE_INDEX
from wafer.io import WaferInputError, sha256_file, write_json
from wafer.model import load_checkpoint, one_hot
from wafer.novelty import NoveltyScorer
from wafer.params import NOVELTY_METHODS, OBJECTIVES
from wafer.readers import check_map
from wafer.shard import resize_map

# ------------------------------------------------------------------ device and forward pass


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else is taken as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device`` (channels-last on CUDA)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def model_inputs(xb: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 maps ``(B, S, S)`` -> the one-hot model input on ``device``."""
    x = one_hot(xb.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


@dataclass(frozen=True)
class Outputs:
    logits: np.ndarray  # (N, C) fp32
    features: np.ndarray | None  # (N, D) fp32: the classifier head's input (penultimate layer)


@torch.no_grad()
def predict_outputs(
    model: nn.Module,
    x: np.ndarray,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    tta: bool = False,
    progress: bool = False,
    features: str | None = None,
) -> Outputs:
    """Logits ``(N, C)`` for uint8 maps ``(N, S, S)``, in fp32 (what is served); with ``tta`` the
    mean of the logits of the 8 dihedral views (batched together in one forward pass). With
    ``features`` also the penultimate-layer features (the input
    of ``model.fc``) from the same forward pass: ``"mean"`` over the 8 views when ``tta`` (the
    head maps the mean feature to the mean logits), ``"first"`` those of the map as given
    (view 0, the same as a pass without TTA). Without ``tta`` both are the one view's."""
    if features not in (None, "mean", "first"):
        raise ValueError(f"features must be None, 'mean' or 'first', not {features!r}")
    device = torch.device(device)
    model = to_device(model, device).eval()
    xt = torch.from_numpy(np.ascontiguousarray(x))
    step = max(1, batch_size // N_VIEWS) if tta else batch_size
    out, feats, seen = [], [], []
    hook = (
        model.fc.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].float()))
        if features
        else None
    )
    try:
        for i in tqdm(range(0, len(xt), step), desc="infer", disable=not progress, unit="batch"):
            xb = xt[i : i + step].to(device)
            if tta:
                xb = all_views(xb)
            logits = model(model_inputs(xb, device)).float()  # fp32 on every device: what is served
            if tta:
                logits = logits.view(N_VIEWS, -1, logits.shape[-1]).mean(dim=0)
            out.append(logits.cpu())
            if features:
                f = seen.pop()
                if tta:
                    f = f.view(N_VIEWS, -1, f.shape[-1])
                    f = f.mean(dim=0) if features == "mean" else f[0]
                feats.append(f.cpu())
    finally:
        if hook is not None:
            hook.remove()
    if not out:
        return Outputs(np.zeros((0, 0), dtype=np.float32), None)
    return Outputs(torch.cat(out).numpy(), torch.cat(feats).numpy() if features else None)


# ------------------------------------------------------------------ the decision rule


def defect_columns(num_classes: int, none_index: int) -> np.ndarray:
    """The class indices other than ``none_index``."""
    return np.array([k for k in range(num_classes) if k != none_index], dtype=np.int64)


def defect_choice(
    probs: np.ndarray, class_thresholds: np.ndarray, none_index: int = NONE_INDEX
) -> np.ndarray:
    """Step 2 of the rule for every row: the chosen defect class (never 'none'), int64 (N,)."""
    cols = defect_columns(probs.shape[1], none_index)
    pd = probs[:, cols]
    td = np.asarray(class_thresholds, dtype=np.float64)[cols]
    order = np.argsort(-pd, axis=1, kind="stable")
    sorted_p = np.take_along_axis(pd, order, axis=1)
    clears = sorted_p >= td[order]
    first = np.argmax(clears, axis=1)  # first clearing position; 0 when none clears
    pos = np.where(clears.any(axis=1), first, 0)  # fallback: the most probable defect
    return cols[order[np.arange(len(pd)), pos]]


def flag_defects(probs: np.ndarray, tau: float, none_index: int = NONE_INDEX) -> np.ndarray:
    """Step 1 of the rule: True where ``1 - p_none >= tau``."""
    return (1.0 - probs[:, none_index]) >= tau


def decide(
    probs: np.ndarray, class_thresholds: np.ndarray, tau: float, none_index: int = NONE_INDEX
) -> np.ndarray:
    """Apply the decision rule (module docstring) to each row of ``probs``; int64 ``(N,)``."""
    probs = np.asarray(probs, dtype=np.float64)
    choice = defect_choice(probs, class_thresholds, none_index)
    return np.where(flag_defects(probs, tau, none_index), choice, none_index).astype(np.int64)


# ------------------------------------------------------------------ the served files


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _hex64(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


# field -> (check, what it must be); one table for the served JSON files
FIELD_RULES = {
    "temperature": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "tta": (lambda v: isinstance(v, bool), "true or false"),
    "tau": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "threshold": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "cost_ratio": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "objective": (lambda v: v in OBJECTIVES, f"one of {', '.join(OBJECTIVES)}"),
    "model_sha256": (_hex64, "a SHA-256 hex digest"),
    "logits_sha256": (_hex64, "a SHA-256 hex digest"),
    # novelty.json (wafer.novelty.Novelty)
    "method": (lambda v: v in NOVELTY_METHODS, f"one of {', '.join(NOVELTY_METHODS)}"),
    "score": (_finite, "a finite number"),
    "k": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "false_flag_rate": (lambda v: _finite(v) and 0 < v < 1, "a number in (0, 1)"),
    "index_sha256": (_hex64, "a SHA-256 hex digest"),
}


def checked_field(data: dict, key: str, path: str | Path, rule: str | None = None, where: str = ""):
    """``data[key]``, checked by its rule in :data:`FIELD_RULES` (``rule``: another rule's
    name); a missing or bad field raises :class:`WaferInputError` naming the file and field."""
    name = f"{where}{key}"
    if not isinstance(data, dict) or key not in data:
        raise WaferInputError(path, f"missing field '{name}'")
    ok, what = FIELD_RULES[rule or key]
    if not ok(data[key]):
        raise WaferInputError(path, f"field '{name}' must be {what}, got {data[key]!r}")
    return data[key]


def read_object(path: str | Path) -> dict:
    """A served JSON file's object; a missing or unreadable file raises WaferInputError."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WaferInputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WaferInputError(path, f"not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WaferInputError(path, "not a JSON object")
    return data


@dataclass(frozen=True)
class Calibration:
    """The `calibrate` stage's output (``paths.calibration``): temperature fit on the served
    validation logits, whether those logits were TTA-combined, and what they came from."""

    temperature: float
    tta: bool
    n_val: int  # validation maps it was fit on
    model_sha256: str
    logits_sha256: str

    def save(self, path: str | os.PathLike) -> None:
        write_json(
            path,
            {
                "temperature": self.temperature,
                "tta": self.tta,
                "fit_on": "val",
                "n_val": self.n_val,
                "model_sha256": self.model_sha256,  # the served files belong to this model
                "logits_sha256": self.logits_sha256,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        data = read_object(path)
        n_val = data.get("n_val")
        return cls(
            temperature=float(checked_field(data, "temperature", path)),
            tta=checked_field(data, "tta", path),
            n_val=n_val if isinstance(n_val, int) else 0,
            model_sha256=checked_field(data, "model_sha256", path),
            logits_sha256=checked_field(data, "logits_sha256", path),
        )


@dataclass(frozen=True)
class OperatingPoint:
    tau: float
    class_thresholds: tuple[float, ...]  # in CLASS_NAMES order

    def to_dict(self) -> dict:
        named = dict(zip(CLASS_NAMES, map(float, self.class_thresholds), strict=True))
        return {"tau": float(self.tau), "class_thresholds": named}


def _point(data: dict, name: str, path: str | Path) -> OperatingPoint:
    where = f"operating_points.{name}."
    tau = float(checked_field(data, "tau", path, where=where))
    ct = data.get("class_thresholds")
    if not isinstance(ct, dict) or set(ct) != set(CLASS_NAMES):
        raise WaferInputError(
            path, f"field '{where}class_thresholds' must map each of the 9 class names to a value"
        )
    values = tuple(
        float(checked_field(ct, c, path, "threshold", f"{where}class_thresholds."))
        for c in CLASS_NAMES
    )
    return OperatingPoint(tau, values)


@dataclass(frozen=True)
class Thresholds:
    """The `thresholds` stage's output (``paths.thresholds``): both operating points fit on
    validation at ``temperature``, the one served (``objective``), the cost ratio and class
    prior they were fit under, and what the logits came from."""

    objective: str
    cost_ratio: float
    prior: dict[str, float]  # class shares every validation count was weighted to
    points: dict[str, OperatingPoint]  # by objective
    temperature: float
    model_sha256: str
    logits_sha256: str

    def save(self, path: str | os.PathLike) -> None:
        write_json(
            path,
            {
                "objective": self.objective,
                "cost_ratio": self.cost_ratio,
                "prior": self.prior,
                "fit_on": "val",
                "operating_points": {k: p.to_dict() for k, p in self.points.items()},
                "temperature": self.temperature,
                "model_sha256": self.model_sha256,
                "logits_sha256": self.logits_sha256,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Thresholds:
        data = read_object(path)
        objective = checked_field(data, "objective", path)
        pts = data.get("operating_points")
        if not isinstance(pts, dict) or objective not in pts:
            raise WaferInputError(path, f"missing field 'operating_points.{objective}'")
        for name in pts:
            if name not in OBJECTIVES:
                raise WaferInputError(
                    path, f"field 'operating_points.{name}': not one of {', '.join(OBJECTIVES)}"
                )
        prior = data.get("prior")
        return cls(
            objective=objective,
            cost_ratio=float(checked_field(data, "cost_ratio", path)),
            prior=prior if isinstance(prior, dict) else {},
            points={name: _point(pts[name], name, path) for name in sorted(pts)},
            temperature=float(checked_field(data, "temperature", path)),
            model_sha256=checked_field(data, "model_sha256", path),
            logits_sha256=checked_field(data, "logits_sha256", path),
        )


@dataclass(frozen=True)
class Decision:
    probs: np.ndarray  # (N, C) calibrated probabilities
    pred: np.ndarray  # (N,) class index after thresholds and operating point
    defect: np.ndarray  # (N,) bool: flagged as a defect (1 - p_none >= tau)


@dataclass(frozen=True)
class ServingConfig:
    """Temperature, TTA flag and the served operating point: what turns served logits into
    served decisions."""

    temperature: float
    tta: bool
    tau: float
    class_thresholds: tuple[float, ...]
    cost_ratio: float  # escape : false-alarm cost of the `cost` operating point
    objective: str  # which operating point is served
    points: tuple[tuple[str, OperatingPoint], ...]  # every fitted point, by objective

    @classmethod
    def load(
        cls,
        calibration: str | Path,
        thresholds: str | Path,
        model: str | Path | None = None,
        objective: str | None = None,
        model_sha256: str | None = None,
    ) -> ServingConfig:
        """Read and check the served files; ``objective`` overrides the file's served point.
        With ``model``, also check that the three files belong together (module docstring);
        ``model_sha256``: the model file's digest when the caller has it already."""
        cal, thr = Calibration.load(calibration), Thresholds.load(thresholds)
        if model is not None:
            digest = model_sha256 or sha256_file(model)
            _check_binding(model, digest, calibration, cal, thresholds, thr)
        served = objective or thr.objective
        if served not in thr.points:
            raise WaferInputError(thresholds, f"missing field 'operating_points.{served}'")
        point = thr.points[served]
        return cls(
            temperature=cal.temperature,
            tta=cal.tta,
            tau=point.tau,
            class_thresholds=point.class_thresholds,
            cost_ratio=thr.cost_ratio,
            objective=served,
            points=tuple(thr.points.items()),
        )

    def at(self, objective: str) -> ServingConfig:
        """The same pipeline served at another fitted operating point."""
        point = dict(self.points).get(objective)
        if point is None:
            raise ValueError(f"no operating point {objective!r} (have {dict(self.points)})")
        return replace(
            self, objective=objective, tau=point.tau, class_thresholds=point.class_thresholds
        )

    def decide(self, logits: np.ndarray) -> Decision:
        """Served logits (TTA-combined when ``tta``) -> calibrated probabilities and decisions."""
        probs = softmax(logits, self.temperature)
        pred = decide(probs, np.asarray(self.class_thresholds), self.tau)
        return Decision(probs=probs, pred=pred, defect=flag_defects(probs, self.tau))


def _check_binding(
    model: str | Path,
    digest: str,
    calibration: str | Path,
    cal: Calibration,
    thresholds: str | Path,
    thr: Thresholds,
) -> None:
    """The calibration and thresholds files were fit on this model's logits, the same logits,
    and the thresholds on this temperature; else one line naming the files that disagree."""
    for path, fit_for in ((calibration, cal.model_sha256), (thresholds, thr.model_sha256)):
        if fit_for != digest:
            raise WaferInputError(
                path,
                f"fit for another model (model_sha256 {fit_for[:12]}…, but {model} is "
                f"{digest[:12]}…): these files do not belong together; re-run `dvc repro` "
                "or `dvc checkout` to get a matching set",
            )
    if cal.logits_sha256 != thr.logits_sha256:
        a, b = cal.logits_sha256, thr.logits_sha256
        raise WaferInputError(
            f"{calibration} / {thresholds}",
            f"fit on different logits (logits_sha256 {a[:12]}… vs {b[:12]}…): re-run "
            "`dvc repro` or `dvc checkout` to get a matching set",
        )
    if not math.isclose(cal.temperature, thr.temperature, rel_tol=1e-6, abs_tol=1e-9):
        raise WaferInputError(
            f"{calibration} / {thresholds}",
            f"thresholds were fit at temperature {thr.temperature}, the calibration serves "
            f"{cal.temperature}",
        )


# ------------------------------------------------------------------ the predictor


@dataclass
class Predictor:
    """The served pipeline: model + TTA + temperature + thresholds + operating point."""

    model: nn.Module
    payload: dict
    serving: ServingConfig
    device: torch.device
    # Grad-CAM layer and method for explaining its predictions (the gradcam section; None: no
    # CAM): wafer.gradcam_report.served_cam and served_cam_png
    cam_layer: str | None
    cam_method: str | None
    paths: dict[str, str] = field(default_factory=dict)
    novelty: NoveltyScorer | None = None  # index + novelty.json: novelty score, neighbours

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
    ) -> Predictor:
        """Load the three pipeline outputs, each by its explicit path, and with ``index`` and
        ``novelty`` the novelty scorer (stage `index`); bad files raise
        :class:`WaferInputError` (one line naming the file)."""
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
        digest = sha256_file(model)
        serving = ServingConfig.load(calibration, thresholds, model=model, model_sha256=digest)
        paths = {
            "model": str(model),
            "calibration": str(calibration),
            "thresholds": str(thresholds),
        }
        scorer = None
        if (index is None) != (novelty is None):
            raise ValueError("the novelty scorer needs both the index and novelty.json")
        if index is not None:
            scorer = NoveltyScorer.load(index, novelty, digest, serving.temperature, serving.tta)
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

    def outputs(self, maps: list[np.ndarray], batch_size: int = 256) -> Outputs:
        """Served logits and, with the novelty scorer, the features it was built on, from one
        forward pass."""
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
            raise ValueError("neighbours need the embedding index (index stage)")
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
