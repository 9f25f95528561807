"""dvc.yaml's stages rendered as DVC renders them, for running them without DVC
(:mod:`wafer.tools.run_stages`): ``${name.key}`` to the value, from params.yaml and dvc.yaml's
``vars`` (as ``dvc/parsing/interpolate.py`` does), each stage's commands, deps and outs; the
order in which they must run; and the effective params of a recipe plus ``-S`` overrides.

Imports only the standard library, PyYAML and :mod:`wafer.tools.recipes`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wafer.tools.recipes import (
    RecipeError,
    apply_overrides,
    check_override,
    load_recipe,
    load_yaml,
    parse_override,
)

KEYCRE = re.compile(r"(?<!\\)\$\{(?P<inner>.*?)\}")


class RunError(RuntimeError):
    """A pipeline that cannot be rendered or run; its message is one line."""


@dataclass
class Stage:
    """One dvc.yaml stage, rendered: its commands, dependencies and outputs (repo-relative)."""

    name: str
    cmds: list[str]
    deps: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    wdir: str = "."

    @property
    def products(self) -> list[str]:
        """Every path the stage writes (outs, metrics and plots)."""
        return self.outs + self.metrics + self.plots


# --- rendering, as dvc/parsing/interpolate.py does it --------------------------------------


def to_str(value: Any) -> str:
    """A scalar context value as DVC writes it into a dvc.yaml field."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def select(context: Mapping[str, Any], expr: str) -> Any:
    """The value of ``${expr}`` (``a.b``, ``a[0]``) in ``context``."""
    node: Any = context
    for part in expr.strip().replace("[", ".").replace("]", "").split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part):
            node = node[int(part)] if int(part) < len(node) else None
            if node is None:
                raise RunError(f"${{{expr}}}: index {part} out of range")
        else:
            raise RunError(f"${{{expr}}}: {part!r} not found in dvc.yaml's vars/params.yaml")
    return node


def interpolate(template: str, context: Mapping[str, Any]) -> str:
    """``template`` with each ``${...}`` replaced by its scalar value, as DVC does (the stage
    scripts read their params themselves: no section is rendered into a command)."""
    buf, index = "", 0
    for match in KEYCRE.finditer(template):
        value = select(context, match["inner"])
        if value is not None and not isinstance(value, str | int | float | bool):
            raise RunError(f"cannot interpolate {type(value).__name__} ${{{match['inner']}}}")
        buf += template[index : match.start()] + to_str(value)
        index = match.end()
    return (buf + template[index:]).replace(r"\${", "${")


def _paths(entries: Any, context: Mapping[str, Any]) -> list[str]:
    out = []
    for entry in entries or []:
        path = next(iter(entry)) if isinstance(entry, Mapping) else entry
        out.append(posixpath.normpath(interpolate(str(path), context)))
    return out


def build_context(repo: Path, dvc_yaml: Mapping[str, Any], params: Mapping[str, Any]) -> dict:
    """DVC's global interpolation context: params.yaml (here: the effective ``params``), then
    each ``vars`` entry of dvc.yaml (a file, ``file:key,...`` or an inline mapping)."""
    context: dict[str, Any] = dict(params)
    for entry in dvc_yaml.get("vars") or []:
        if isinstance(entry, Mapping):
            context.update(entry)
            continue
        name, _, keys = str(entry).partition(":")
        if posixpath.normpath(name) == "params.yaml":
            data: Any = params
        else:
            try:
                data = load_yaml((repo / name).read_text())
            except OSError as exc:
                raise RunError(f"dvc.yaml vars: cannot read {name}: {exc.strerror}") from None
        if keys:
            data = {k: data[k] for k in keys.split(",")}
        context.update(data)
    return context


def render_stages(
    repo: Path, params: Mapping[str, Any], dvc_yaml: Mapping[str, Any] | None = None
) -> list[Stage]:
    """The stages of ``repo/dvc.yaml``, in dvc.yaml's order, rendered with ``params``."""
    if dvc_yaml is None:
        dvc_yaml = load_yaml((repo / "dvc.yaml").read_text())
    context = build_context(repo, dvc_yaml, params)
    stages = []
    for name, spec in (dvc_yaml.get("stages") or {}).items():
        unsupported = {"foreach", "matrix", "vars", "do"} & set(spec)
        if unsupported:
            raise RunError(f"stage {name}: {', '.join(sorted(unsupported))} is not supported here")
        cmds = spec["cmd"] if isinstance(spec["cmd"], list) else [spec["cmd"]]
        stages.append(
            Stage(
                name=name,
                cmds=[interpolate(str(c), context) for c in cmds],
                deps=_paths(spec.get("deps"), context),
                outs=_paths(spec.get("outs"), context),
                metrics=_paths(spec.get("metrics"), context),
                plots=_paths(spec.get("plots"), context),
                wdir=str(spec.get("wdir", ".")),
            )
        )
    return stages


def served_paths(
    repo: Path, params: Mapping[str, Any], dvc_yaml: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """dvc.yaml's ``artifacts`` (the served files) as ``{name: path}``, rendered with ``params``."""
    if dvc_yaml is None:
        dvc_yaml = load_yaml((repo / "dvc.yaml").read_text())
    context = build_context(repo, dvc_yaml, params)
    return {
        name: posixpath.normpath(interpolate(str(spec["path"]), context))
        for name, spec in (dvc_yaml.get("artifacts") or {}).items()
    }


# --- order and selection ---------------------------------------------------------------------


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def producers(stages: Sequence[Stage], path: str) -> list[Stage]:
    """The stages that write ``path`` (or a folder holding it, or a file inside it)."""
    return [s for s in stages if any(_overlaps(path, p) for p in s.products)]


def topo_order(stages: Sequence[Stage]) -> list[Stage]:
    """``stages`` in dependency order; among the ready ones, dvc.yaml's order comes first."""
    needs = {
        s.name: {p.name for d in s.deps for p in producers(stages, d) if p.name != s.name}
        for s in stages
    }
    done: list[Stage] = []
    left = list(stages)
    while left:
        ready = next((s for s in left if needs[s.name] <= {d.name for d in done}), None)
        if ready is None:
            raise RunError(f"dvc.yaml: a dependency cycle among {', '.join(s.name for s in left)}")
        done.append(ready)
        left.remove(ready)
    return done


def choose_stages(
    stages: Sequence[Stage], skip: Sequence[str] = (), prune: bool = True
) -> tuple[list[Stage], dict[str, str]]:
    """The stages to run and ``{skipped stage: why}``. Besides ``skip``, ``prune`` leaves out
    a stage that writes no metrics or plots when no other running stage reads its outputs (the
    ``synthesize`` stage when ``ingest.input`` is a real file)."""
    names = {s.name for s in stages}
    unknown = [n for n in skip if n not in names]
    if unknown:
        raise RunError(f"--skip {', '.join(unknown)}: no such stage (stages: {', '.join(names)})")
    why = {n: "--skip" for n in skip}
    changed = prune
    while changed:
        changed = False
        for s in stages:
            if s.name in why or s.metrics or s.plots:
                continue
            readers = [
                o.name
                for o in stages
                if o.name not in why and o is not s and any(producers([s], d) for d in o.deps)
            ]
            if not readers:
                why[s.name] = "no running stage reads its outputs"
                changed = True
    return [s for s in stages if s.name not in why], why


def missing_inputs(run: Sequence[Stage], workdir: Path) -> list[str]:
    """``stage: path`` for each dependency that no running stage writes and that is absent."""
    out = []
    for s in run:
        for d in s.deps:
            if not producers([p for p in run if p is not s], d) and not (workdir / d).exists():
                out.append(f"{s.name}: {d}")
    return out


# --- the work directory ----------------------------------------------------------------------


def effective_params(
    repo: Path,
    recipe: str | None,
    overrides: Sequence[str],
    data: str | None,
    recipes_dir: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params.yaml with the recipe, ``data`` as ingest.input, then the overrides; the
    ``{dotted.key: value}`` changes). Every key is checked against params.yaml."""
    params = load_yaml((repo / "params.yaml").read_text())
    changes: dict[str, Any] = {}
    if recipe:
        changes.update(load_recipe(recipe, params, recipes_dir or repo / "recipes"))
    if data is not None:  # naming the file is trusting it (a pickle: its code runs when read)
        changes["ingest.input"] = data
        changes["ingest.trust_pickle"] = True
    for text in overrides:
        key, value = parse_override(text)
        if key == "ingest.input" and data is not None:
            raise RecipeError("give the data path once: --data or -S ingest.input, not both")
        check_override(key, value, params, f"-S {text}")
        changes[key] = value
    return apply_overrides(params, changes), changes
