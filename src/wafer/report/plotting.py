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
