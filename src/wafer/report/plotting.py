"""Matplotlib figures of the pipeline (Agg backend, written atomically as PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from wafer.core.io import atomic_path


def _save(fig, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def confusion_png(cm: np.ndarray, names: Sequence[str], path: str | Path, title: str) -> None:
    """Counts and row-normalised rates (recall on the diagonal) side by side."""
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    for ax, data, sub, fmt in (
        (axes[0], cm, "counts", "{:.0f}"),
        (axes[1], rates, "row-normalised", "{:.2f}"),
    ):
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(f"{title} ({sub})")
        for i in range(len(names)):
            for j in range(len(names)):
                if data[i, j] or i == j:
                    ax.text(
                        j,
                        i,
                        fmt.format(data[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    _save(fig, path)


def reliability_png(curves: dict[str, list[dict]], path: str | Path, title: str) -> None:
    """Accuracy against confidence per bin, one line per named curve, with the diagonal."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect calibration")
    for name, bins in curves.items():
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker="o",
            ms=3,
            label=name,
        )
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def sweep_png(
    rows: list[dict], chosen: dict[str, float], cost_ratio: float, path: str | Path, title: str = ""
) -> None:
    """Escape rate, false-alarm rate, macro-F1 and cost against the operating point tau, with a
    vertical line at each chosen point (``{objective: tau}``)."""
    tau = [r["tau"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(tau, [r["escape_rate"] for r in rows], label="escape rate")
    ax.plot(tau, [r["false_alarm_rate"] for r in rows], label="false-alarm rate")
    ax.plot(tau, [r["macro_f1"] for r in rows], label="macro-F1")
    ax2 = ax.twinx()
    ax2.plot(
        tau, [r["cost"] for r in rows], color="black", ls=":", label=f"cost ({cost_ratio:g}:1)"
    )
    ax2.set_ylabel("cost-weighted error")
    for (name, tau_k), color in zip(chosen.items(), ("red", "purple", "green"), strict=False):
        ax.axvline(tau_k, color=color, lw=1, label=f"{name} point (val): tau={tau_k:.2f}")
    ax.set_xlabel("tau (flag a defect when 1 - p_none >= tau)")
    ax.set_ylim(0, 1)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="center right")
    ax.set_title(title or "Operating-point sweep on validation")
    _save(fig, path)


def screen_png(
    rows: list[dict],
    points: dict[str, tuple[float, float]],
    alpha: float | None,
    path: str | Path,
    title: str = "",
) -> None:
    """The screen's operating curve: escape rate against false-alarm rate over tau (``rows``:
    ``false_alarm_rate``, ``escape_rate`` and, when known, ``escape_bound``), each operating
    point marked (``{name: (false_alarm_rate, escape_rate)}``) and the escape budget ``alpha``
    as a line."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    fa = [r["false_alarm_rate"] for r in rows]
    ax.plot(fa, [r["escape_rate"] for r in rows], label="escape rate (target prior)")
    if rows and "escape_bound" in rows[0]:
        ax.plot(fa, [r["escape_bound"] for r in rows], ls="--", label="its upper bound")
    if alpha is not None:
        ax.axhline(alpha, color="grey", lw=1, ls=":", label=f"escape budget {alpha:g}")
    for (name, (x, y)), color in zip(points.items(), ("red", "purple", "green"), strict=False):
        ax.plot([x], [y], "o", color=color, label=f"{name} point")
    ax.set_xlabel("false-alarm rate (true none flagged)")
    ax.set_ylabel("escape rate (true defects called none)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title or "The screen's operating curve (validation)")
    _save(fig, path)


def sets_png(rows: list[dict], served_alpha: float, path: str | Path, title: str = "") -> None:
    """Coverage against mean prediction-set size over the target coverage (``rows``:
    ``target_coverage``, ``coverage``, ``mean_size``), the served coverage marked."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot([r["mean_size"] for r in rows], [r["coverage"] for r in rows], "o-", label="measured")
    ax.plot(
        [r["mean_size"] for r in rows],
        [r["target_coverage"] for r in rows],
        ls=":",
        color="grey",
        label="target coverage",
    )
    ax.axhline(1 - served_alpha, color="red", lw=1, label=f"served: {1 - served_alpha:.0%}")
    ax.set_xlabel("mean prediction-set size (classes)")
    ax.set_ylabel("coverage (true class in the set)")
    ax.legend(fontsize=8)
    ax.set_title(title or "Prediction sets: coverage against size (validation, cross-fitted)")
    _save(fig, path)


def label_matrix_png(
    matrix: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
) -> None:
    """A heat map of rates in [0, 1] with each cell's value written in it (the mixed-type
    pipeline's per-label confusion view: row i = maps with label i, column j = share of them
    predicted with label j, last column = share where label i was missed)."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.85 * len(cols), 1.0 + 0.6 * len(rows)))
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = matrix[i, j]
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:.3f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.5 else "black",
                )
    _save(fig, path)


def bars_png(
    names: Sequence[str], values: Sequence[float], path: str | Path, title: str, xlabel: str
) -> None:
    """Horizontal bars, one per name, with the value written beside each (the mixed-type
    pipeline's accuracy per pattern code)."""
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.22 * len(names)))
    ax.barh(range(len(names)), values, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(min(0.5, float(np.min(values)) - 0.05) if len(values) else 0, 1.0)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3f}", va="center", fontsize=6)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    _save(fig, path)
