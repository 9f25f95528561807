"""The served test predictions (dvc.yaml's ``paths.predictions``, CSV). The evaluate stage
writes it, the Grad-CAM report and the demo read it; this type is the one place its columns,
checks and the example rule are written.

Columns: row (the map's row in the ingested file), actual, predicted (class names; predicted
after the served decision rule), confidence (calibrated probability of the predicted class),
defect (1 if the served rule says defect), p_<class> (calibrated probabilities).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.core.io import write_csv

COLUMNS = ["row", "actual", "predicted", "confidence", "defect", *[f"p_{c}" for c in CLASS_NAMES]]
REQUIRED = ("row", "actual", "predicted", "confidence")  # what the readers use


@dataclass(frozen=True)
class Predictions:
    row: np.ndarray  # int64
    actual: np.ndarray  # class names (object)
    predicted: np.ndarray  # class names (object)
    confidence: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.row)

    @staticmethod
    def save(
        path: str | os.PathLike,
        rows: np.ndarray,
        y: np.ndarray,
        pred: np.ndarray,
        probs: np.ndarray,
        defect: np.ndarray,
    ) -> None:
        """Write the served predictions of the test maps (atomically)."""
        names = np.array(CLASS_NAMES)
        write_csv(
            path,
            COLUMNS,
            (
                [
                    int(rows[i]),
                    names[y[i]],
                    names[pred[i]],
                    f"{probs[i][pred[i]]:.6f}",
                    int(defect[i]),
                    *[f"{v:.6f}" for v in probs[i]],
                ]
                for i in range(len(y))
            ),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Predictions:
        """Read and check the file: the columns the readers need, known class names, numbers
        where numbers belong; bad input raises :class:`WaferInputError` naming file and row."""
        path = Path(path)
        if not path.is_file():
            raise WaferInputError(path, "no such file")
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise WaferInputError(path, f"missing column(s) {', '.join(missing)}")
            records = list(reader)
        known = set(CLASS_NAMES)
        for i, r in enumerate(records):
            for col in ("actual", "predicted"):
                if r[col] not in known:
                    raise WaferInputError(path, f"unknown class {r[col]!r} in '{col}'", row=i)
        try:
            row = np.array([int(r["row"]) for r in records], dtype=np.int64)
            conf = np.array([float(r["confidence"]) for r in records], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise WaferInputError(path, f"not a number: {exc}") from None
        return cls(
            row=row,
            actual=np.array([r["actual"] for r in records], dtype=object),
            predicted=np.array([r["predicted"] for r in records], dtype=object),
            confidence=conf,
        )

    def check(self, path: str | os.PathLike, rows: np.ndarray, y: np.ndarray) -> Predictions:
        """The same maps, in the same order, with the same truth as the test shard."""
        if len(self) != len(rows):
            raise WaferInputError(path, f"{len(self)} predictions for {len(rows)} test maps")
        bad = np.flatnonzero(self.row != rows)
        if len(bad):
            raise WaferInputError(
                path, "row differs from the test shard's test_rows.npy", row=int(bad[0])
            )
        truth = np.array(CLASS_NAMES, dtype=object)[y]
        bad = np.flatnonzero(self.actual != truth)
        if len(bad):
            raise WaferInputError(
                path, "'actual' differs from the test shard's test_y.npy", row=int(bad[0])
            )
        return self

    def examples(self, cls: str) -> list[tuple[str, int]]:
        """[(slot, position)] for true class ``cls``; ties go to the earlier test map, a slot
        with no candidate is left out:

        * confident_correct: the correct prediction of ``cls`` with the highest confidence;
        * unsure_correct: the correct one with the lowest confidence (needs a second one);
        * confident_mistake: among the maps of true class ``cls`` that were predicted wrong,
          the one whose wrong prediction has the highest confidence.
        """
        conf, picks = self.confidence, []
        correct = np.flatnonzero((self.actual == cls) & (self.predicted == cls))
        if len(correct):
            picks.append(
                ("confident_correct", int(correct[np.argsort(-conf[correct], kind="stable")][0]))
            )
            if len(correct) > 1:
                picks.append(
                    ("unsure_correct", int(correct[np.argsort(conf[correct], kind="stable")][0]))
                )
        wrong = np.flatnonzero((self.actual == cls) & (self.predicted != cls))
        if len(wrong):
            picks.append(
                ("confident_mistake", int(wrong[np.argsort(-conf[wrong], kind="stable")][0]))
            )
        return picks
