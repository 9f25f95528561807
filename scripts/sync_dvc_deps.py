"""Keep dvc.yaml in step with the code, in the two places it repeats what the code says:

* every stage's `src/wafer/...` dependencies equal the library modules its script imports,
  directly or through other modules (imports inside functions included; a module's package
  ``__init__.py`` files count, since importing it runs them);
* the `validate_params` stage's `params:` list equals the sections of the rule table
  (:data:`wafer.config.sections.SECTIONS`), so every section of params.yaml is checked first.

    python scripts/sync_dvc_deps.py          # rewrite those lines of dvc.yaml
    python scripts/sync_dvc_deps.py --check  # exit 1 and list the differences

A stage that misses a module it runs would not re-run when that module changes, and `dvc status`
would call a stale result up to date; a section missing from validate_params would let a bad
value reach a stage that deletes its outputs first. tests/stages/test_dvc_deps.py runs the check.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "wafer"
VALIDATE = "validate_params"  # the stage that checks every section first


def rule_sections() -> list[str]:
    """The sections of the rule table, in its order."""
    sys.path.insert(0, str(ROOT / "src"))
    try:
        from wafer.config.sections import SECTIONS
    finally:
        sys.path.pop(0)
    return list(SECTIONS)


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


def expected_deps(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """Stage name -> sorted src/wafer paths its script needs (relative to the repo root)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        script = re.search(r"python\s+(stages/\S+\.py)", stage["cmd"])
        if script is None:
            raise SystemExit(f"dvc.yaml: stage {name}: no 'python stages/<x>.py' in its cmd")
        files = closure(ROOT / script.group(1))
        out[name] = sorted(str(f.relative_to(ROOT)) for f in files)
    return out


def declared_deps(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {
        name: sorted(d for d in stage.get("deps", []) if str(d).startswith("src/wafer/"))
        for name, stage in stages.items()
    }


def declared_sections(dvc_yaml: Path = ROOT / "dvc.yaml") -> list[str]:
    stage = yaml.safe_load(dvc_yaml.read_text())["stages"][VALIDATE]
    return [str(v) for v in stage.get("params", [])]


def differences(dvc_yaml: Path = ROOT / "dvc.yaml") -> list[str]:
    want, have = expected_deps(dvc_yaml), declared_deps(dvc_yaml)
    problems = []
    sections, checked = rule_sections(), declared_sections(dvc_yaml)
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
    sections = rule_sections()
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
        if stage in want and re.match(r"^    deps:\s*$", line):
            in_deps = True
            out.append(line)
            continue
        if in_deps and not re.match(r"^      - ", line):
            in_deps = False
        if in_deps and re.match(r"^      - src/wafer/", line):
            if not inserted:
                out += [f"      - {p}" for p in want[stage]]
                inserted = True
            continue
        if in_deps and not inserted and re.match(r"^      - stages/", line):
            out.append(line)
            out += [f"      - {p}" for p in want[stage]]
            inserted = True
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    path = ROOT / "dvc.yaml"
    if "--check" in sys.argv:
        problems = differences(path)
        for p in problems:
            print(f"dvc.yaml: {p}", file=sys.stderr)
        return 1 if problems else 0
    path.write_text(rewrite(path))
    print("dvc.yaml: src/wafer deps synced" if not differences(path) else "still different")
    return 0


if __name__ == "__main__":
    sys.exit(main())
