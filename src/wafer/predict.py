"""Batch prediction with exactly the served pipeline, and the input formats it reads.

The served pipeline (the one the `evaluate` stage reports on) is: block-max resize of the die
map to the checkpoint's input size (:func:`wafer.shard.resize_map`, as for the training shards)
-> logits, the mean over the 8 D4 views when ``tta`` (:func:`wafer.train.predict_logits`) ->
temperature, per-class thresholds and operating point (:meth:`wafer.serve.ServingConfig.decide`).
:class:`Predictor` runs exactly that, from the three files the pipeline writes, given by explicit
path: ``models/model.pt``, ``models/calibration.json``, ``models/thresholds.json``.

Inputs (:func:`read_maps`; each map becomes one :class:`Item`, named by its source)

* an LSWMD-format pickle (``.pkl``/``.pickle``, optionally ``.xz``/``.gz``/``.bz2``/``.zip``;
  Kaggle's legacy ``LSWMD.pkl`` too): every row of its ``waferMap`` column, labeled or not,
  named ``"file.pkl row 12"`` (row = position in the frame, as in the ingest stage).
  **A pickle runs code when it is loaded: only read pickles from a source you trust.**
* ``.npy``: one 2-D map (``"file.npy"``) or a 3-D stack ``(N, H, W)`` (``"file.npy row i"``),
  loaded with ``allow_pickle=False``. Object arrays (ragged maps) would need unpickling and are
  refused: save such maps as ``.npz`` (one member per map) or as a trusted pickle.
* ``.npz``: every member a 2-D map (``"file.npz[name]"``) or a 3-D stack
  (``"file.npz[name] row i"``); no pickles.
* ``.png``: one map per image, in the encoding below (``"file.png"``).
* a folder: every file of the kinds above in it (not recursive), sorted by name.

Every map is validated: 2-D, non-empty, integer values in {0, 1, 2} (outside, pass, fail), at
least one die (a value > 0). An invalid map, or a file that cannot be read, becomes an item with
an error (:class:`wafer.io.WaferInputError`: one line, ``"file, row N: reason"``); the other
items are unaffected.

PNG encoding of a wafer map (:func:`encode_png` / :func:`decode_png`)
    8-bit grayscale, one pixel per die, row 0 at the top: outside (0) -> 0, pass (1) -> 128,
    fail (2) -> 255. Decoding converts any other mode to 8-bit grayscale first (a colour image
    via PIL's ITU-R 601-2 luma; 16-bit images are scaled to 8 bit) and thresholds at 64 and 192:
    ``v < 64`` -> 0, ``64 <= v < 192`` -> 1, ``v >= 192`` -> 2. Any image therefore decodes;
    :func:`looks_like_wafer` says whether the result is plausibly a wafer map (grey levels
    close to {0, 128, 255}, at least two levels, dies inside a roughly round region, not too
    large) and why not. Its verdict is a warning, not an error: the map is still predicted.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from wafer.classes import CLASS_NAMES
from wafer.io import WaferInputError
from wafer.serve import ServingConfig
from wafer.shard import resize_map
from wafer.train import resolve_device

# --------------------------------------------------------------------------- PNG encoding

PNG_LEVELS = np.array([0, 128, 255], dtype=np.uint8)  # outside, pass, fail
PNG_THRESHOLDS = (64, 192)  # v < 64 -> 0, 64 <= v < 192 -> 1, v >= 192 -> 2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"

# looks_like_wafer limits
MAX_SIDE = 1024  # WM-811K maps are at most ~300 dies across
OFF_LEVEL_TOLERANCE = 32  # a grey value farther than this from {0, 128, 255} is "off level"
MAX_OFF_LEVEL_SHARE = 0.01
MAX_DIES_OUTSIDE_ELLIPSE = 0.05  # real WM-811K maps: at most 2.6% (52,903-map subset)


def check_map(m: object, source: str | os.PathLike, row: int | None = None) -> np.ndarray:
    """The map as uint8 {0, 1, 2}, or :class:`WaferInputError` naming ``source`` (and ``row``):
    2-D, non-empty, numeric, integer values in {0, 1, 2}, at least one die."""
    if not isinstance(m, np.ndarray):
        try:
            m = np.asarray(m)
        except Exception:  # noqa: BLE001 - anything unconvertible is invalid input
            raise WaferInputError(source, f"map is a {type(m).__name__}", row) from None
    if m.dtype.hasobject:
        raise WaferInputError(source, "map is an object array, not numbers", row)
    if m.ndim != 2:
        raise WaferInputError(source, f"map has {m.ndim} dimension(s), shape {m.shape}", row)
    if m.size == 0:
        raise WaferInputError(source, f"map is empty, shape {m.shape}", row)
    if m.dtype.kind not in "iufb":
        raise WaferInputError(source, f"map has non-numeric dtype {m.dtype}", row)
    ok = np.isin(m, (0, 1, 2))
    if not ok.all():
        odd = np.unique(m[~ok])[:3]
        raise WaferInputError(
            source, f"map has values outside {{0, 1, 2}}: {odd.tolist()}", row
        ) from None
    m = m.astype(np.uint8)
    if not (m > 0).any():
        raise WaferInputError(source, "map has no die (all cells are 0)", row)
    return m


def encode_png(m: np.ndarray) -> bytes:
    """A valid die map -> 8-bit grayscale PNG bytes (0 -> 0, 1 -> 128, 2 -> 255)."""
    from PIL import Image

    m = check_map(m, "map")
    buf = io.BytesIO()
    Image.fromarray(PNG_LEVELS[m], mode="L").save(buf, format="PNG")
    return buf.getvalue()


def png_pixels(data: bytes | str | os.PathLike) -> np.ndarray:
    """The image as an 8-bit grayscale ``(H, W)`` array (colour -> luma, 16 bit -> 8 bit; an
    alpha channel is dropped)."""
    from PIL import Image

    src = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    with Image.open(src) as im:
        im.load()
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            arr = np.asarray(im, dtype=np.float64)
            scale = 255.0 / 65535.0 if arr.max(initial=0) > 255 else 1.0
            return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.asarray(im.convert("L"), dtype=np.uint8)


def decode_pixels(gray: np.ndarray) -> np.ndarray:
    """8-bit grey values -> die states by the thresholds 64 and 192."""
    return np.digitize(gray, PNG_THRESHOLDS).astype(np.uint8)


def decode_png(data: bytes | str | os.PathLike) -> np.ndarray:
    """PNG bytes or path -> uint8 die map {0, 1, 2} (see the module docstring)."""
    return decode_pixels(png_pixels(data))


def looks_like_wafer(m: np.ndarray, pixels: np.ndarray | None = None) -> tuple[bool, str]:
    """Whether the die map ``m`` (and, for a decoded image, its grey ``pixels``) plausibly is a
    wafer map; the reason when not ("" when it is). Checks: grey levels close to {0, 128, 255};
    at least two levels (outside and dies); at most MAX_SIDE cells a side; the dies inside the
    ellipse inscribed in their bounding box (up to 5% outside, half a cell of slack)."""
    m = np.asarray(m)
    if pixels is not None:
        p = np.asarray(pixels, dtype=np.int16)
        dist = np.min(np.abs(p[..., None] - PNG_LEVELS.astype(np.int16)), axis=-1)
        off = float(np.mean(dist > OFF_LEVEL_TOLERANCE)) if p.size else 0.0
        if off > MAX_OFF_LEVEL_SHARE:
            return False, (
                f"{off:.0%} of the pixels are not close to the grey levels 0/128/255 of a "
                "wafer-map PNG (a photo or a rendered figure?)"
            )
    if m.ndim != 2 or m.size == 0:
        return False, f"not a 2-D map (shape {m.shape})"
    if max(m.shape) > MAX_SIDE:
        return False, f"too large for a die map ({m.shape[0]}x{m.shape[1]}; limit {MAX_SIDE})"
    levels = np.unique(m)
    if len(levels) < 2:
        return False, f"too few distinct levels (only {levels.tolist()})"
    inside = m > 0
    if not inside.any():
        return False, "no die"
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    box = inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = box.shape
    yy, xx = np.ogrid[:h, :w]
    dy = np.maximum(np.abs(yy + 0.5 - h / 2) - 0.5, 0) / (h / 2)
    dx = np.maximum(np.abs(xx + 0.5 - w / 2) - 0.5, 0) / (w / 2)
    share = float((box & (dy**2 + dx**2 > 1)).sum()) / float(box.sum())
    if share > MAX_DIES_OUTSIDE_ELLIPSE:
        return False, (
            f"wafer region not roughly round ({share:.0%} of the dies lie outside the ellipse "
            "inscribed in their bounding box)"
        )
    return True, ""


# --------------------------------------------------------------------------- reading inputs


class Item(NamedTuple):
    """One map to predict: its source name and either the map or the error; plus a warning
    (looks_like_wafer's reason) when the map does not look like a wafer map."""

    source: str
    map: np.ndarray | None
    error: WaferInputError | None = None
    warning: str | None = None


PICKLE_SUFFIXES = (".pkl", ".pickle")
COMPRESSION_SUFFIXES = ("", ".xz", ".gz", ".bz2", ".zip")
SUPPORTED = "an LSWMD pickle (.pkl[.xz|.gz|.bz2|.zip]), .npy, .npz, .png or a folder of them"


def input_kind(path: Path) -> str | None:
    """'pickle', 'npy', 'npz' or 'png' from the file name; sniffed from the first bytes when the
    name does not say; None if neither does."""
    name = path.name.lower()
    for s in PICKLE_SUFFIXES:
        if any(name.endswith(s + c) for c in COMPRESSION_SUFFIXES):
            return "pickle"
    for kind in ("npy", "npz", "png"):
        if name.endswith("." + kind):
            return kind
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(NPY_MAGIC):
        return "npy"
    return None


def _ok(source: str, m: object, path: str | Path, row: int | None = None) -> Item:
    try:
        good = check_map(m, path, row)
    except WaferInputError as exc:
        return Item(source, None, exc)
    ok, why = looks_like_wafer(good)
    return Item(source, good, None, None if ok else f"does not look like a wafer map: {why}")


def _stack(source: str, arr: np.ndarray, path: str | Path) -> list[Item]:
    """A 2-D map -> one item, a 3-D stack -> one per map, anything else -> one error."""
    if arr.ndim == 3:
        if len(arr) == 0:
            return [Item(source, None, WaferInputError(path, f"empty stack, shape {arr.shape}"))]
        return [_ok(f"{source} row {i}", arr[i], path, i) for i in range(len(arr))]
    if arr.ndim == 2:
        return [_ok(source, arr, path)]
    return [
        Item(
            source,
            None,
            WaferInputError(
                path,
                f"array has {arr.ndim} dimension(s), shape {arr.shape} "
                "(expected a 2-D map or a 3-D stack of maps)",
            ),
        )
    ]


OBJECT_ARRAY_REFUSED = (
    "object array (e.g. maps of different shapes): loading it would unpickle, which can run "
    "code; save the maps as .npz (one member per map) or as a pickle from a trusted source"
)


def _read_npy(path: Path, source: str) -> list[Item]:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise WaferInputError(path, OBJECT_ARRAY_REFUSED) from None
        raise WaferInputError(path, f"not a readable .npy file: {exc}") from None
    except (OSError, EOFError) as exc:
        raise WaferInputError(path, f"not a readable .npy file: {exc}") from None
    return _stack(source, arr, path)


def _read_npz(path: Path, source: str) -> list[Item]:
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise WaferInputError(path, f"not a readable .npz file: {exc}") from None
    items: list[Item] = []
    with z:
        if not z.files:
            raise WaferInputError(path, "no arrays in the .npz file")
        for name in z.files:
            src = f"{source}[{name}]"
            try:
                arr = z[name]
            except ValueError as exc:
                reason = OBJECT_ARRAY_REFUSED if "allow_pickle" in str(exc) else str(exc)
                items.append(Item(src, None, WaferInputError(path, f"member {name!r}: {reason}")))
                continue
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                err = WaferInputError(path, f"member {name!r} unreadable: {exc}")
                items.append(Item(src, None, err))
                continue
            items.extend(_stack(src, arr, f"{path}[{name}]"))
    return items


def _read_png(path: Path, source: str) -> list[Item]:
    from PIL import Image, UnidentifiedImageError

    try:
        pixels = png_pixels(path)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as exc:
        raise WaferInputError(path, f"not a readable image: {type(exc).__name__}: {exc}") from None
    m = decode_pixels(pixels)
    try:
        good = check_map(m, path)
    except WaferInputError as exc:
        return [Item(source, None, exc)]
    ok, why = looks_like_wafer(good, pixels)
    return [Item(source, good, None, None if ok else f"does not look like a wafer map: {why}")]


def _read_pickle(path: Path, source: str) -> list[Item]:
    from wafer.ingest import read_lswmd

    df = read_lswmd(path)
    if "waferMap" not in df.columns:
        cols = ", ".join(map(str, df.columns))
        raise WaferInputError(path, f"missing column 'waferMap' (columns: {cols})")
    return [_ok(f"{source} row {i}", m, path, i) for i, m in enumerate(df["waferMap"].tolist())]


READERS = {"pickle": _read_pickle, "npy": _read_npy, "npz": _read_npz, "png": _read_png}


def read_maps(path: str | os.PathLike) -> list[Item]:
    """All maps of ``path`` (formats: module docstring) as items, in file order; a folder's
    supported files sorted by name. A file that cannot be read at all gives one error item."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _named_kind(p))
        if not files:
            return [Item(source, None, WaferInputError(path, f"no input files ({SUPPORTED})"))]
        return [item for f in files for item in read_maps(f)]
    if not path.exists():
        return [Item(source, None, WaferInputError(path, "no such file"))]
    kind = input_kind(path)
    if kind is None:
        return [
            Item(source, None, WaferInputError(path, f"unsupported input (expected {SUPPORTED})"))
        ]
    try:
        return READERS[kind](path, source)
    except WaferInputError as exc:
        return [Item(source, None, exc)]
    except OSError as exc:
        return [Item(source, None, WaferInputError(path, f"cannot read: {exc}"))]


def _named_kind(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith("."):
        return False
    return any(name.endswith(s + c) for s in PICKLE_SUFFIXES for c in COMPRESSION_SUFFIXES) or (
        path.suffix.lower() in (".npy", ".npz", ".png")
    )


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

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        calibration: str | os.PathLike,
        thresholds: str | os.PathLike,
        device: str | torch.device = "auto",
        cam_layer: str = "auto",
        cam_method: str = "gradcam++",
    ) -> Predictor:
        """Load the three pipeline outputs, each by its explicit path; bad files raise
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
        return cls(net, payload, serving, dev, cam_layer, cam_method, paths)

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

    def predict(
        self,
        maps: list[np.ndarray],
        sources: list[str] | None = None,
        batch_size: int = 256,
    ) -> list[dict]:
        """One row per map: source, predicted class (after the per-class thresholds and the
        operating point), confidence (its calibrated probability), defect decision (1 - p_none
        >= tau), p_defect, tau, the served operating point's name, top-3 [(class, p)] and all
        calibrated probabilities."""
        checked = [check_map(m, sources[i] if sources else f"map {i}") for i, m in enumerate(maps)]
        d = self.serving.decide(self.logits(checked, batch_size))
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
        return rows

    def cam(self, m: np.ndarray, target: str | int) -> np.ndarray:
        """Grad-CAM(++) of class ``target`` for one map (the unrotated view), upsampled to the
        map's own die grid (same CAM method and layer as the `gradcam` stage's defaults)."""
        from wafer.cam import compute_cam, resolve_layer_name, target_layer, upsample_to_grid
        from wafer.model import one_hot

        m = check_map(m, "map")
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
