"""Gradio demo of the served pipeline: ``python -m wafer.apps.demo`` (``pip install -e '.[demo]'``).

It serves exactly what the `evaluate` stage reported on (:class:`wafer.serving.predictor.Predictor`:
block-max resize, TTA logits, temperature, per-class thresholds, operating point), loaded from
the pipeline's outputs: the paths given, else dvc.yaml's ``paths`` (as for ``wafer predict``).
It binds to 127.0.0.1 unless ``--host`` says otherwise.

* The model's figures in the header (test macro-F1 with its 95% CI, balanced accuracy, ECE after
  calibration, temperature, tau) are read at start from the evaluate and calibrate stages'
  metrics; a mismatch between those and the served calibration/thresholds files
  (stale metrics) is shown as a warning.
* Examples: one test map per class (from the served test predictions + the ingested maps): its
  ``confident_correct`` example (:meth:`wafer.report.predictions.Predictions.examples`), else the
  first test map of that class; classes without a test map are left out. Click one to run it.
* Upload: a PNG (8-bit grey, 0 outside / 128 pass / 255 fail, one pixel per die; see
  :mod:`wafer.inputs.read`) or a .npy die map (``allow_pickle=False``; a 3-D stack shows its first
  map). An image that does not look like a wafer map is still predicted, with a visible warning.
  An upload larger than ``--max-side`` dies a side is refused from its header, before the
  global model lock is taken, so one oversized upload never makes the other users wait; errors
  name the upload by its own file name, never by the server's temporary path.
* Output: predicted class, calibrated confidence, top 3, the defect decision at the operating
  point, an illustrative process-mode reading (:mod:`wafer.apps.process_modes`) and the Grad-CAM
  (map | CAM | overlay) of the predicted class on the unrotated map.
* Novelty (with the `index` stage's index and novelty.json, defaults as for
  ``wafer predict``; without the pipeline's index the demo runs without it and says so in the
  header): at the top of the result, a map whose novelty score is above the threshold set on
  validation is flagged in a warning block ("Unlike every known pattern — review", with score,
  threshold and method); otherwise a quiet "Known pattern" line.
* Nearest historical maps: a gallery of the ``--neighbours`` (6) nearest training maps of the
  index, drawn from the ingested maps by row id, captioned "label · row · distance". At start
  every index row must be an ingested row with the index's label (else the files are
  from different runs and the demo refuses to start).

A mixed-type model (``--pipeline pipelines/mixed``, or its ``--model``) is served by
:mod:`wafer.apps.demo.mixed` instead: per-label probabilities against their thresholds, the
pattern code, one Grad-CAM per present label.

The module imports without gradio; :func:`build_app` imports it.

The parts: :mod:`wafer.apps.demo.assets` (what is read once at start),
:mod:`wafer.apps.demo.analysis` (one map's prediction, verdicts and texts, and the upload
handler), :mod:`wafer.apps.demo.ui` (the page parts both demos share),
:mod:`wafer.apps.demo.app` (the gradio page, the server and the command line).
"""
