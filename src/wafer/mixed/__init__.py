"""The mixed-type task: MixedWM38's 8-label multi-label classification, a second pipeline
(``pipelines/mixed/``) on the same library. What is specific to the task lives here (its
labels and pattern codes, its data file, the superposing generator, per-label calibration,
thresholds and metrics); the network, the training loop, the forward pass, the resize and
the split are the 9-class pipeline's own (docs/PIPELINE.md, "The mixed-type pipeline")."""
