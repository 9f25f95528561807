"""Wafer-map defect classification on WM-811K: a small library behind the DVC stages."""

from wafer.classes import CLASS_NAMES, NONE_INDEX

__all__ = ["CLASS_NAMES", "NONE_INDEX"]
__version__ = "0.1.0"
