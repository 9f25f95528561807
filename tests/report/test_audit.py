"""wafer.report.audit: confident learning finds labels flipped on purpose, ranks the most
suspect first, and its per-class noise estimate says where the flipped maps came from; the
review page renders every suspect."""

from __future__ import annotations

import numpy as np
import pytest

from wafer.core.classes import CLASS_NAMES
from wafer.explain.audit_page import Suspect, build_page, neighbours_png
from wafer.report.audit import audit


@pytest.fixture(scope="module")
def flipped():
    rng = np.random.default_rng(0)
    n = 3000
    truth = rng.integers(0, 9, n)
    logits = rng.normal(0, 1, (n, 9))
    logits[np.arange(n), truth] += 4.0  # a good model's out-of-fold logits
    flip = rng.random(n) < 0.05
    given = truth.copy()
    given[flip] = (truth[flip] + 1) % 9  # class c mislabelled as c + 1
    return logits, given, truth, flip


def test_flipped_labels_are_found_and_ranked_first(flipped):
    logits, given, truth, flip = flipped
    a = audit(logits, given)
    found = np.zeros(len(given), dtype=bool)
    found[a.order] = True
    assert (found & flip).sum() / flip.sum() > 0.85  # recall
    assert flip[a.order].mean() > 0.85  # precision
    assert flip[a.order[:50]].all()  # the most suspect are all flipped ones
    assert (np.diff(a.quality[a.order]) >= 0).all()  # ranked by quality, lowest first
    assert (a.suggested[a.order][flip[a.order]] == truth[a.order][flip[a.order]]).mean() > 0.9
    assert (a.suggested != given).all()


def test_per_class_noise_estimate_points_to_the_true_class(flipped):
    logits, given, _, flip = flipped
    per = audit(logits, given).per_class(given)
    assert list(per) == list(CLASS_NAMES)
    for i, name in enumerate(CLASS_NAMES):
        v = per[name]
        assert v["maps"] == (given == i).sum()
        actual = (flip & (given == i)).sum() / (given == i).sum()
        assert abs(v["estimated_noise_rate"] - actual) < 0.03, name
        source = CLASS_NAMES[(i - 1) % 9]  # a map given class i was truly class i - 1
        assert max(v["estimated_true_class"], key=v["estimated_true_class"].get) == source


def test_clean_labels_flag_few_maps():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 9, 2000)
    logits = rng.normal(0, 1, (2000, 9))
    logits[np.arange(2000), truth] += 6.0
    assert len(audit(logits, truth).order) < 10


def test_the_review_page_shows_every_suspect_and_the_noise_table():
    png = neighbours_png([np.ones((5, 5), np.uint8)] * 2, ["Loc", "none"])
    s = Suspect(1, 12, "Loc", "Edge-Loc", "Loc", 0.01, 0.9, 2, png, png)
    per = {
        "Loc": {
            "maps": 3,
            "flagged": 1,
            "estimated_noise_rate": 0.2,
            "estimated_true_class": {"Edge-Loc": 0.2},
        }
    }
    page = build_page([s, s], per, 100, 7, "confident learning")
    assert page.count('id="rank1"') == 2 and "model's opinion" in page
    assert "Edge-Loc 0.200" in page and "7 of 100 training maps" in page


def test_label_issues_round_trip_and_bad_files_are_named(tmp_path):
    from wafer.core.errors import WaferInputError
    from wafer.data.crossfit import read_label_issues, write_label_issues

    path = tmp_path / "l.csv"
    write_label_issues(
        path, [[1, 40, "Loc", "Edge-Loc", 0.01, 0.9, 2], [2, 7, "none", "Scratch", 0.1, 0.5, 0]]
    )
    back = read_label_issues(path)
    assert back.rows.tolist() == [40, 7] and back.given == ("Loc", "none")
    assert back.suggested == ("Edge-Loc", "Scratch")
    (tmp_path / "h.csv").write_text("rank,row\n1,2\n")
    with pytest.raises(WaferInputError, match="not a label-issues list"):
        read_label_issues(tmp_path / "h.csv")
    text = path.read_text().replace(",40,", ",x,")
    (tmp_path / "r.csv").write_text(text)
    with pytest.raises(WaferInputError, match="line 2: no integer row"):
        read_label_issues(tmp_path / "r.csv")
    with pytest.raises(WaferInputError):
        read_label_issues(tmp_path / "missing.csv")
