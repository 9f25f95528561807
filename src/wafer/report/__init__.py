"""Measuring and showing: classification metrics, the evaluate report, the served
predictions file and the pipeline's figures."""
