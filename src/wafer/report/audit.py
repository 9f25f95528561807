"""Label-noise audit by confident learning (Northcutt et al. 2021, with cleanlab, the library
its authors maintain) on the cross-fitted members' out-of-fold probabilities
(wafer.data.crossfit.OofFile): which training maps are likely mislabelled, and how noisy each
class's labels are.

* Out-of-fold only: every map's probabilities come from the member that never trained on it (a
  model that saw a map has learnt its label, right or wrong, and would vouch for it).
* Flagged: ``cleanlab.filter.find_label_issues`` (``prune_by_noise_rate``: per given class, the
  number of maps the confident joint says are mislabelled, the least likely first); ranked by
  the label quality score ``self_confidence`` (the out-of-fold probability of the given label:
  low = suspect).
* Suggested label: the out-of-fold argmax among the other classes.
* Per-class noise: from the estimated joint distribution of given and true labels
  (``cleanlab.count.estimate_joint``): the share of the maps given class i whose true class is
  estimated to be another, and where they are estimated to belong.

This is the model's opinion of the labels, not ground truth: a map flagged here is one a
person should look at (the review page), and an estimated noise rate includes the model's own
errors on hard classes.

The list it writes is :class:`wafer.data.crossfit.LabelIssues` (the cleaned-label model reads it
from there, without this module or cleanlab).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import UsageError
from wafer.core.probs import softmax

METHOD = "confident learning (cleanlab find_label_issues, prune_by_noise_rate; self_confidence)"


@dataclass(frozen=True)
class Audit:
    order: np.ndarray  # positions of the flagged maps, most suspect first
    quality: np.ndarray  # (N,) label quality score of every map (0..1, low = suspect)
    suggested: np.ndarray  # (N,) the most likely other class of every map
    joint: np.ndarray  # (C, C) estimated p(given = i, true = j)
    probs: np.ndarray  # (N, C) the out-of-fold probabilities audited

    def per_class(self, labels: np.ndarray) -> dict[str, dict]:
        """Per given class: maps, flagged maps, the estimated share whose true class is
        another, and the estimated true classes of those (shares of the given class's maps)."""
        flagged = np.zeros(len(labels), dtype=bool)
        flagged[self.order] = True
        out = {}
        for i, name in enumerate(CLASS_NAMES[: self.joint.shape[0]]):
            row = self.joint[i]
            total = float(row.sum())
            noise = 1.0 - float(row[i]) / total if total > 0 else None
            out[name] = {
                "maps": int((labels == i).sum()),
                "flagged": int((flagged & (labels == i)).sum()),
                "estimated_noise_rate": None if noise is None else round(noise, 6),
                "estimated_true_class": {
                    CLASS_NAMES[j]: round(float(row[j]) / total, 6)
                    for j in range(len(row))
                    if j != i and total > 0 and row[j] / total >= 0.001
                },
            }
        return out


def audit(logits: np.ndarray, labels: np.ndarray) -> Audit:
    """Confident learning on out-of-fold ``logits`` (N, C) and given ``labels`` (N,)."""
    try:
        from cleanlab.count import estimate_joint
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        raise UsageError(
            "the label-noise audit needs cleanlab: pip install 'wafer[crossfit]'"
        ) from None

    probs = softmax(logits)
    labels = np.asarray(labels, dtype=np.int64)
    order = find_label_issues(
        labels,
        probs,
        return_indices_ranked_by="self_confidence",
        filter_by="prune_by_noise_rate",
        n_jobs=1,  # deterministic and within the 2 cores
    )
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -1.0
    joint = estimate_joint(labels, probs)
    return Audit(np.asarray(order, dtype=np.int64), quality, others.argmax(1), joint, probs)
