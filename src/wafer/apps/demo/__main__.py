"""``python -m wafer.apps.demo``: serve the demo (see :mod:`wafer.apps.demo.app`)."""

from wafer.apps.demo.app import cli

cli()
