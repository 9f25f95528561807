"""scripts/results_screen.py: the screen section of docs/RESULTS.md (issue 23) renders the three
points, the bound against the realised escape rate, per-class escapes and the prediction sets,
and says when the budget point was refused."""

from __future__ import annotations

import copy
import json
import sys
from types import SimpleNamespace

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import results_screen as rs  # noqa: E402 - a script, imported by path


def _run(name, evaluate, seed=0):
    thresholds = {"budget": {"class_conditional": {"attainable": False, "why": "too few maps"}}}
    return SimpleNamespace(
        name=name,
        m={"evaluate": evaluate, "thresholds": thresholds},
        params={"train": {"seed": seed}},
    )


def _attainable(base, realised, bound):
    """The synthetic run's figures with a served budget point (its `cost` figures relabelled)."""
    ev = copy.deepcopy(base)
    ev["escape_budget"] = ev["escape_budget"] | {"attainable": True, "tau": 0.1, "bound": bound}
    for split in ("val", "test"):
        point = copy.deepcopy(ev[split]["cost"])
        point["screen"] |= {"escape_rate": realised, "bound": bound, "budget": 0.005}
        ev[split]["escape_budget"] = point
    return ev


def test_screen_section_side_by_side_and_refusal(tmp_path):
    base = json.loads((ROOT / "metrics" / "evaluate.json").read_text())  # synthetic default
    runs = {
        "refused": _run("refused", base),
        "held": _run("held", _attainable(base, 0.003, 0.004), seed=1),
        "broke": _run("broke", _attainable(base, 0.006, 0.004), seed=2),
        "old": SimpleNamespace(name="old", m={"evaluate": {"macro_f1": 0.8}}, params={}),
    }
    text = "\n".join(rs.screen_section(runs, tmp_path))
    assert "## The screen" in text and "| old |" not in text  # earlier runs have no budget
    assert "refused: even flagging every map" in text  # the synthetic run's own reason
    held = [ln for ln in text.splitlines() if ln.startswith("| held | 1 | test | `escape_budget`")]
    broke = [ln for ln in text.splitlines() if ln.startswith("| broke | 2 | test | `escape_b")]
    assert "| yes |" in held[0] and "**no**" in broke[0]
    assert "stayed within its bound in 1" in text  # 2 served runs, one held
    assert (
        "Prediction sets" in text and "class-conditional at the same budget: too few maps" in text
    )
    assert rs.screen_section({"old": runs["old"]}, tmp_path) == []
