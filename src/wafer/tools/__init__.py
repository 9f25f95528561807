"""Tooling around the pipeline: named recipes (``python -m wafer.tools.recipes``) and the
stage runner for a machine without DVC."""
