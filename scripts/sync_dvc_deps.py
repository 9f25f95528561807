"""Keep dvc.yaml in step with the code, in the two places it repeats what the code says:

* every stage's `src/wafer/...` dependencies equal the library modules its script imports,
  directly or through other modules (imports inside functions included; a module's package
  ``__init__.py`` files count, since importing it runs them);
* the `validate_params` stage's `params:` list equals the sections of the rule table
  (:data:`wafer.config.sections.SECTIONS`), so every section of params.yaml is checked first.

It does so for every pipeline of :data:`PIPELINES`: the 9-class ``dvc.yaml``, the mixed-type
``pipelines/mixed/dvc.yaml`` and the cross-fitting ``pipelines/crossfit/dvc.yaml`` (each its own
DVC project: its commands run in its folder, so its paths start ``../../``; its rule table is
:data:`wafer.config.mixed.MIXED_SECTIONS`, :data:`wafer.config.crossfit.CROSSFIT_SECTIONS`).

    python scripts/sync_dvc_deps.py          # rewrite those lines of every dvc.yaml
    python scripts/sync_dvc_deps.py --check  # exit 1 and list the differences

A stage that misses a module it runs would not re-run when that module changes, and `dvc status`
would call a stale result up to date; a section missing from validate_params would let a bad
value reach a stage that deletes its outputs first. tests/stages/test_dvc_deps.py runs the check.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "wafer"
VALIDATE = "validate_params"  # the stage that checks every section first
# each pipeline's folder (where its commands run) -> the module and name of its rule table
PIPELINES = {
    ".": ("wafer.config.sections", "SECTIONS"),
    "pipelines/mixed": ("wafer.config.mixed", "MIXED_SECTIONS"),
    "pipelines/crossfit": ("wafer.config.crossfit", "CROSSFIT_SECTIONS"),
}


def _wdir(dvc_yaml: Path) -> Path:
    """Where the pipeline's commands run: its folder (a copy outside the repo: the root)."""
    folder = dvc_yaml.resolve().parent
    return folder if folder.is_relative_to(ROOT) else ROOT


def _prefix(dvc_yaml: Path) -> str:
    """How the pipeline's folder names the repository root ('' or '../../')."""
    rel = Path(os.path.relpath(ROOT, _wdir(dvc_yaml))).as_posix()
    return "" if rel == "." else rel + "/"


def rule_sections(dvc_yaml: Path = ROOT / "dvc.yaml") -> list[str]:
    """The sections of the pipeline's rule table, in its order."""
    module, name = PIPELINES[_wdir(dvc_yaml).relative_to(ROOT).as_posix()]
    sys.path.insert(0, str(ROOT / "src"))
    try:
        table = getattr(importlib.import_module(module), name)
    finally:
        sys.path.pop(0)
    return list(table)


def _module_file(name: str) -> Path | None:
    """src/wafer/... file of a dotted module name under ``wafer`` (None if not ours)."""
    parts = name.split(".")
    if parts[0] != "wafer":
        return None
    base = ROOT / "src" / Path(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def imported_files(path: Path) -> set[Path]:
    """The wafer files that ``path`` imports directly (any import statement anywhere)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            f = _module_file(name)
            if f is not None:
                found.add(f)
    for f in list(found):  # importing a module runs its packages' __init__.py first
        for parent in f.parents:
            if parent == PACKAGE.parent:
                break
            found.add(parent / "__init__.py")
    return found


def closure(script: Path) -> set[Path]:
    """Every wafer file that running ``script`` can import, transitively."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for f in imported_files(todo.pop()):
            if f not in seen:
                seen.add(f)
                todo.append(f)
    return seen


def _body(stage: dict) -> dict:
    """A stage's definition: a foreach stage's is under ``do:`` (a matrix stage's is inline)."""
    return stage.get("do", stage)


def expected_deps(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """Stage name -> sorted src/wafer paths its script needs (as the pipeline's folder names
    them: relative to the repo root, or ``../../src/wafer/...``)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    prefix, out = _prefix(dvc_yaml), {}
    for name, stage in stages.items():
        script = re.search(r"python\s+(\S*stages/\S+\.py)", _body(stage)["cmd"])
        if script is None:
            raise SystemExit(f"{dvc_yaml}: stage {name}: no 'python stages/<x>.py' in its cmd")
        files = closure((_wdir(dvc_yaml) / script.group(1)).resolve())
        out[name] = sorted(prefix + str(f.relative_to(ROOT)) for f in files)
    return out


def declared_deps(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    lib = _prefix(dvc_yaml) + "src/wafer/"
    return {
        name: sorted(d for d in _body(stage).get("deps", []) if str(d).startswith(lib))
        for name, stage in stages.items()
    }


def declared_sections(dvc_yaml: Path = ROOT / "dvc.yaml") -> list[str]:
    stage = yaml.safe_load(dvc_yaml.read_text())["stages"][VALIDATE]
    return [str(v) for v in stage.get("params", [])]


def differences(dvc_yaml: Path = ROOT / "dvc.yaml") -> list[str]:
    want, have = expected_deps(dvc_yaml), declared_deps(dvc_yaml)
    problems = []
    sections, checked = rule_sections(dvc_yaml), declared_sections(dvc_yaml)
    if checked != sections:
        missing = [s for s in sections if s not in checked]
        problems.append(
            f"stage {VALIDATE} params {checked} differ from the rule table's sections "
            f"{sections}" + (f" (missing: {', '.join(missing)})" if missing else "")
        )
    for name in want:
        missing = sorted(set(want[name]) - set(have.get(name, [])))
        extra = sorted(set(have.get(name, [])) - set(want[name]))
        if missing:
            problems.append(f"stage {name} imports but does not depend on: {', '.join(missing)}")
        if extra:
            problems.append(f"stage {name} depends on but does not import: {', '.join(extra)}")
    return problems


def rewrite(dvc_yaml: Path = ROOT / "dvc.yaml") -> str:
    """dvc.yaml's text with each stage's src/wafer deps replaced by the expected list (placed
    where the first one was, or after the stage's script)."""
    want = expected_deps(dvc_yaml)
    sections = rule_sections(dvc_yaml)
    lib, scripts = _prefix(dvc_yaml) + "src/wafer/", _prefix(dvc_yaml) + "stages/"
    out: list[str] = []
    stage = None
    in_deps = inserted = in_params = False
    for line in dvc_yaml.read_text().splitlines():
        m = re.match(r"^  (\w+):\s*(#.*)?$", line)
        if m:
            stage, in_deps, inserted, in_params = m.group(1), False, False, False
        if stage == VALIDATE and re.match(r"^    params:\s*$", line):
            in_params = True
            out.append(line)
            out += [f"      - {name}" for name in sections]
            continue
        if in_params:
            if re.match(r"^      - ", line):
                continue
            in_params = False
        deps = re.match(r"^(    |      )deps:\s*$", line)  # a stage's, or under its `do:`
        if stage in want and deps:
            in_deps, item = True, deps.group(1) + "  - "
            out.append(line)
            continue
        if in_deps and not line.startswith(item):
            in_deps = False
        if in_deps and line.startswith(f"{item}{lib}"):
            if not inserted:
                out += [f"{item}{p}" for p in want[stage]]
                inserted = True
            continue
        if in_deps and not inserted and line.startswith(f"{item}{scripts}"):
            out.append(line)
            out += [f"{item}{p}" for p in want[stage]]
            inserted = True
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    status = 0
    for folder in PIPELINES:
        path = ROOT / folder / "dvc.yaml"
        name = path.relative_to(ROOT)
        if "--check" in sys.argv:
            problems = differences(path)
            for p in problems:
                print(f"{name}: {p}", file=sys.stderr)
            status |= 1 if problems else 0
            continue
        path.write_text(rewrite(path))
        print(f"{name}: src/wafer deps synced" if not differences(path) else f"{name}: differs")
    return status


if __name__ == "__main__":
    sys.exit(main())
