"""The rows `wafer predict` writes, one format each: the 9-class model's CSV columns and the
mixed-type model's (:data:`CSV_COLUMNS`, :data:`MIXED_CSV_COLUMNS`), and :class:`RowWriter`,
which writes prediction rows one at a time as CSV or as a JSON array."""

from __future__ import annotations

from wafer.core.classes import CLASS_NAMES, MIXED_LABELS
from wafer.core.io import csv_writer, json_text

CSV_COLUMNS = [
    "source",
    "predicted",
    "confidence",
    "defect",
    "tau",
    "operating_point",
    "top3",
    *[f"p_{c}" for c in CLASS_NAMES],
    "prediction_set",
    "novelty_score",
    "novel",
    "neighbours",
    "error",
    "warning",
]


def format_top3(top3: list[tuple[str, float]]) -> str:
    """``[('Center', 0.9), ...]`` -> ``'Center:0.900000;...'`` (the CSV cell)."""
    return ";".join(f"{c}:{p:.6f}" for c, p in top3)


# the mixed-type model's rows (wafer.mixed.predictor.MixedPredictor)
MIXED_CSV_COLUMNS = [
    "source",
    "pattern_code",
    "labels",
    "operating_point",
    *[f"p_{c}" for c in MIXED_LABELS],
    "error",
    "warning",
]


def _mixed_csv_row(r: dict) -> list[str]:
    if r.get("error"):
        return [r["source"], *[""] * (len(MIXED_CSV_COLUMNS) - 3), r["error"], ""]
    return [
        r["source"],
        r["pattern_code"],
        ";".join(r["labels"]),
        r["operating_point"],
        *[f"{r['probabilities'][c]:.6f}" for c in MIXED_LABELS],
        "",
        r.get("warning") or "",
    ]


def _csv_row(r: dict) -> list[str]:
    if r.get("error"):
        return [r["source"], *[""] * (len(CSV_COLUMNS) - 3), r["error"], ""]
    return [
        r["source"],
        r["predicted"],
        f"{r['confidence']:.6f}",
        int(r["defect"]),
        f"{r['tau']:.6f}",
        r["operating_point"],
        format_top3(r["top3"]),
        *[f"{r['probabilities'][c]:.6f}" for c in CLASS_NAMES],
        ";".join(r.get("prediction_set", [])),
        f"{r['novelty_score']:.6g}" if "novelty_score" in r else "",
        int(r["novel"]) if "novel" in r else "",
        " ".join(f"{n['row']}:{n['label']}:{n['distance']:.4f}" for n in r.get("neighbours", [])),
        "",
        r.get("warning") or "",
    ]


def _json_row(r: dict) -> dict:
    if r.get("error"):
        return {"source": r["source"], "error": r["error"]}
    r = dict(r)
    if "top3" in r:
        r["top3"] = [{"class": c, "p": p} for c, p in r["top3"]]
    r["error"] = None
    r.setdefault("warning", None)
    return r


class RowWriter:
    """Prediction rows written one at a time to an open text file: CSV (header, one line per
    row) or a JSON array formatted as :func:`wafer.core.io.write_json` formats it."""

    def __init__(self, fh, suffix: str, mixed: bool = False):
        self.fh, self.json, self.n = fh, suffix == ".json", 0
        self.row = _mixed_csv_row if mixed else _csv_row
        if self.json:
            fh.write("[")
        else:
            self.csv = csv_writer(fh)
            self.csv.writerow(MIXED_CSV_COLUMNS if mixed else CSV_COLUMNS)

    def write(self, row: dict) -> None:
        if self.json:
            text = json_text(_json_row(row))
            self.fh.write(("," if self.n else "") + "\n  " + text.replace("\n", "\n  "))
        else:
            self.csv.writerow(self.row(row))
        self.n += 1

    def close(self) -> None:
        if self.json:
            self.fh.write("\n]\n" if self.n else "]\n")
