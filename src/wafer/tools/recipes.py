"""Named recipes: small YAML files of dotted-key overrides of params.yaml.

``recipes/<name>.yaml`` holds only overrides (``train.loss: focal``), never a whole params
file, and never the data path (``ingest.input`` stays a separate override). A recipe becomes
``dvc exp run`` arguments, so that dvc.lock records every value as for any other ``-S`` run::

    dvc exp run -n seed-224 $(python -m wafer.tools.recipes seed-224)
    python -m wafer.tools.recipes --list          # the recipes and what each one sets
    python -m wafer.tools.recipes cpu-headline shard.input_px=128   # a variant: each key once

Overrides after the name replace the recipe's value of the same key (or add a key), so the
printed arguments name every key once: ``dvc exp run`` lets the last ``-S`` of a key win, and a
command that names a key twice says two values where one ran.

Every key must already exist in params.yaml and keep its type (an int may stand for a float),
so a mistyped key or value stops with a one-line :class:`RecipeError` before anything runs. A
recipe that cannot be used (a typo in its name, a bad key) prints the error on stderr and, on
stdout, the one word :data:`POISON` instead of the arguments: inside ``$(...)``, an empty
expansion would let ``dvc exp run`` go on with the default params under the recipe's name, while
``dvc exp run`` refuses an unknown option before it runs anything ("unrecognized arguments").
This module imports only the standard library and PyYAML (the GPU machine has no DVC).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
RECIPES_DIR = ROOT / "recipes"
PARAMS = ROOT / "params.yaml"
FORBIDDEN = ("ingest.input",)  # the data path is chosen per run, not per recipe
POISON = "--recipe-error-see-above"  # stdout on error: an option that dvc exp run refuses


class RecipeError(ValueError):
    """A recipe or override that cannot be used; its message is one line."""


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans and floats, as DVC (ruamel) reads them:
    only true/false are booleans (not yes/no/on/off) and ``1e-3`` is a float, not a string."""


Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:bool"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)$"),
    list("-+.0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with YAML 1.2 scalars (see :class:`Yaml12Loader`)."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


def leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted.key, value)`` for every non-mapping value of a nested mapping."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` (``section.key``) of a nested mapping; KeyError if absent."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, Mapping):
        return "mapping"
    return "string" if isinstance(value, str) else type(value).__name__


def check_override(key: str, value: Any, params: Mapping[str, Any], source: str) -> None:
    """Raise :class:`RecipeError` unless ``key`` is a leaf of ``params`` and ``value`` has its
    kind (bool, number, string, list; an int may replace a float and vice versa; ``None`` in
    params.yaml accepts anything)."""
    try:
        current = lookup(params, key)
    except KeyError:
        near = difflib.get_close_matches(key, [k for k, _ in leaves(params)], n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise RecipeError(f"{source}: unknown key {key!r}: not in params.yaml{hint}") from None
    if isinstance(current, Mapping):
        raise RecipeError(f"{source}: {key!r} is a section of params.yaml; set its keys one by one")
    if current is not None and _kind(current) != _kind(value):
        raise RecipeError(
            f"{source}: {key}={value!r} is a {_kind(value)}, but params.yaml holds a "
            f"{_kind(current)} there ({current!r})"
        )


def list_recipes(recipes_dir: Path = RECIPES_DIR) -> list[str]:
    """Names of the recipes in ``recipes_dir`` (``<name>.yaml``), sorted."""
    return sorted(p.stem for p in Path(recipes_dir).glob("*.yaml"))


def load_recipe(
    name: str, params: Mapping[str, Any] | None = None, recipes_dir: Path = RECIPES_DIR
) -> dict[str, Any]:
    """The overrides of recipe ``name`` as an ordered ``{dotted.key: value}`` dict, checked
    against ``params`` (default: the repository's params.yaml)."""
    path = Path(recipes_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_recipes(recipes_dir)) or "none"
        raise RecipeError(f"unknown recipe {name!r} (known: {known}; files in {recipes_dir})")
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, Mapping) or not data:
        raise RecipeError(f"{path}: expected a mapping of dotted keys (train.loss: focal)")
    if params is None:
        params = load_yaml(PARAMS.read_text())
    overrides: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or "." not in key:
            raise RecipeError(f"{path}: key {key!r} is not a dotted params key (section.key)")
        if key in FORBIDDEN:
            raise RecipeError(f"{path}: a recipe must not set {key} (pass the data path apart)")
        check_override(key, value, params, str(path))
        overrides[key] = value
    return overrides


def with_overrides(
    recipe: Mapping[str, Any], texts: list[str], params: Mapping[str, Any]
) -> dict[str, Any]:
    """``recipe`` with each ``key=value`` of ``texts`` (checked against ``params``) replacing
    the recipe's value in place, or appended: every key once, the override's value."""
    out = dict(recipe)
    for text in texts:
        key, value = parse_override(text)
        if key in FORBIDDEN:
            raise RecipeError(f"override {text!r}: pass {key} to dvc exp run apart")
        check_override(key, value, params, f"override {text!r}")
        out[key] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=1e-3"`` -> ``("train.lr", 0.001)``: the value is read as YAML, as DVC's
    ``-S`` reads it."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {text!r} is not key=value (for example train.epochs=1)")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise RecipeError(f"override {text!r}: the value is not valid YAML") from None
    return key.strip(), value


def apply_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``params`` with each dotted key set to its override (keys must exist:
    check them first with :func:`check_override`). Key order is kept."""
    out = copy.deepcopy(dict(params))
    for key, value in overrides.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node[part]
        node[last] = copy.deepcopy(value)
    return out


def format_value(value: Any) -> str:
    """A value as YAML text without whitespace (``true``, ``0.001``, ``[1,2]``), fit for an
    unquoted ``$(...)`` expansion."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = "null" if value is None else str(value)
    if not text or re.search(r"\s", text) or load_yaml(text) != value:
        raise RecipeError(f"value {value!r} cannot be passed as one unquoted -S word")
    return text


def set_args(overrides: Mapping[str, Any]) -> list[str]:
    """``dvc exp run`` arguments for ``overrides``: ``["-S", "key=value", ...]``."""
    args: list[str] = []
    for key, value in overrides.items():
        args += ["-S", f"{key}={format_value(value)}"]
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI: print a recipe's ``-S`` arguments (or list the recipes); errors are one line."""
    parser = argparse.ArgumentParser(
        prog="python -m wafer.tools.recipes",
        description="Print a named recipe's `dvc exp run` arguments: "
        "dvc exp run -n NAME $(python -m wafer.tools.recipes NAME)",
    )
    parser.add_argument("name", nargs="?", help="recipe name (recipes/<name>.yaml)")
    parser.add_argument(
        "overrides", nargs="*", help="key=value: replaces the recipe's value (each key once)"
    )
    parser.add_argument("--list", action="store_true", help="list the recipes and their values")
    parser.add_argument("--params", type=Path, default=PARAMS, help="params.yaml to check against")
    parser.add_argument("--recipes-dir", type=Path, default=RECIPES_DIR)
    args = parser.parse_args(argv)
    try:
        params = load_yaml(args.params.read_text())
        if args.list:
            for name in list_recipes(args.recipes_dir):
                recipe = load_recipe(name, params, args.recipes_dir)
                print(f"{name}: {' '.join(set_args(recipe)[1::2])}")
            return 0
        if not args.name:
            raise RecipeError("give a recipe name, or --list")
        recipe = load_recipe(args.name, params, args.recipes_dir)
        print(" ".join(set_args(with_overrides(recipe, args.overrides, params))))
    except (RecipeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(POISON)  # stops an enclosing `dvc exp run ... $(...)` (module docstring)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
