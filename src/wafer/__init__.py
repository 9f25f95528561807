"""Wafer-map defect classification on WM-811K: the library behind the DVC stages.

The folders say what is what (the map, with who may import whom: docs/PIPELINE.md):

* ``core``: the vocabulary every other part shares (the 9 classes, one-line errors, atomic
  files, ragged maps); it imports nothing else of ours.
* ``config``: what params.yaml and dvc.yaml say: the typed params sections and their rules.
* ``data``: the data stages' library: maps in (synthetic or LSWMD pickles), validated,
  split and resized into shards.
* ``model``: the network, its checkpoint, its forward pass and its training.
* ``serving``: what is fit on validation and served: calibration, operating points, the
  decision rule, the served files, novelty, the :class:`~wafer.serving.predictor.Predictor`.
* ``inputs``: the map files that ``wafer predict`` and the demo read, with their checks.
* ``report``: metrics, the evaluate report, the served predictions file and the figures.
* ``explain``: Grad-CAM and its report.
* ``apps``: what a user runs: the ``wafer`` command line and the Gradio demo.
* ``tools``: tooling around the pipeline: named recipes, the no-DVC stage runner.

Each package's ``__init__`` only documents it: importing a module loads its own imports
alone, so a stage depends on exactly the code it runs (dvc.yaml's generated deps).
"""

__version__ = "0.1.0"
