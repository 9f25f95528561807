"""Which files of the cross-fitting pipeline's metrics tree belong to the run in the workspace
(scripts/real_crossfit.sh saves only those).

pipelines/crossfit/metrics/ can hold files that no stage of the pipeline as it stands wrote:
outputs of an earlier run with other params (metrics/seeds/ after `ensemble.members` went back
from seeds to folds, timing/train_member_3.json after K went from 5 to 3: DVC keeps neither
the files nor their dvc.lock entries in step with dvc.yaml), and the outputs of stages this run
has not reached. A file is this run's when its stage is in the pipeline as dvc.yaml resolves it
now (matrix members from the current params) and neither that stage nor any stage upstream of
it is one `dvc status` lists (it lists a stage whose own deps, outs or params changed, not
those downstream that will run after it): the stage's
declared metrics and the timing file it writes (metrics/timing/<stage>.json, a matrix member's
`@` written `_`: wafer.core.io.write_timing, not versioned). The stages that are not up to
date are listed as not run.

    python scripts/crossfit_outputs.py pipelines/crossfit NOT_RUN_TXT   # prints the files
"""

from __future__ import annotations

import sys
from pathlib import Path


def timing_file(stage: str) -> str:
    """The timing file a stage writes (stages/train.py, stages/index.py name it so)."""
    return f"metrics/timing/{stage.replace('@', '_')}.json"


def select(
    stages: dict[str, list[str]],
    upstream: dict[str, set[str]],
    changed: set[str],
    present: set[str],
) -> tuple[list[str], list[tuple[str, str]]]:
    """(files to save, not-run lines) from each stage's declared metrics paths (relative to the
    pipeline, in dvc.yaml's order), the stages upstream of each, the stages `dvc status` lists
    and the files under metrics/.

    A stage that is up to date has its metrics in the workspace: a missing one is an error, not
    a gap in the saved run. Not-run lines are ``(stage, metrics path)``, or ``(stage, "-")``
    for a stage that declares none, so every stage left is named."""
    unknown = changed - stages.keys()
    if unknown:
        raise ValueError(f"not stages of this pipeline: {', '.join(sorted(unknown))}")
    keep: list[str] = []
    not_run: list[tuple[str, str]] = []
    for name, metrics in stages.items():
        if name in changed or upstream.get(name, set()) & changed:
            not_run += [(name, m) for m in metrics] or [(name, "-")]
            continue
        missing = [m for m in metrics if m not in present]
        if missing:
            raise ValueError(f"stage {name} is up to date but {', '.join(missing)} is missing")
        keep += metrics
        if timing_file(name) in present:
            keep.append(timing_file(name))
    return keep, not_run


def pipeline_stages(repo, pipeline: Path) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """Each stage of the pipeline (its own DVC repo, open as ``repo``) with its declared metrics,
    as dvc.yaml resolves with the current params, and the stages upstream of each (what
    `dvc repro <stage>` would collect: DVC's own graph walk)."""
    from dvc.repo.graph import get_subgraph_of_nodes

    dvcyaml = (pipeline / "dvc.yaml").resolve()
    ours = [s for s in repo.index.stages if Path(s.path).resolve() == dvcyaml]
    graph = repo.index.graph
    stages = {s.name: [str(o.def_path) for o in s.outs if o.metric] for s in ours}
    above = {s.name: get_subgraph_of_nodes(graph, [s]) for s in ours}  # a stage and its upstream
    upstream = {name: {u.name for u in g} - {name} for name, g in above.items()}
    return stages, upstream


def changed_stages(repo) -> set[str]:
    """The stages `dvc status` lists (their own deps, outs or params changed)."""
    return {k.split(":")[-1] for k in repo.status()}


def main(pipeline: str, not_run_txt: str) -> None:
    from dvc.repo import Repo

    root = Path(pipeline)
    with Repo(str(root)) as repo:
        stages, upstream = pipeline_stages(repo, root)
        changed = changed_stages(repo)
    present = {p.relative_to(root).as_posix() for p in (root / "metrics").rglob("*") if p.is_file()}
    try:
        keep, not_run = select(stages, upstream, changed, present)
    except ValueError as exc:
        raise SystemExit(f"{root}: {exc}") from None
    Path(not_run_txt).write_text("".join(f"{s} {m}\n" for s, m in not_run))
    print("\n".join(keep))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} PIPELINE_DIR NOT_RUN_TXT")
    main(*sys.argv[1:])
