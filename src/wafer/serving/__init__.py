"""From served logits to served decisions: calibration, operating points fit on validation,
the decision rule, the served files bound to their model, novelty and the Predictor."""
