"""What a run on the `device` tool's GPU machine sends back, and joining it here again.

The tool returns at most 8 files from ``$OUT``, each at most 16 MiB, 64 MiB in all. A run's
results (metrics, plots, params, log: :mod:`wafer.tools.run_stages`) fit one ``.tar.gz``; the
served files (dvc.yaml's ``artifacts``: the checkpoint, calibration, thresholds, index, novelty)
do not: a 224-px ResNet-18 checkpoint is 45 MB, and the index of the real subset's 37,028
training maps 78 MB. :func:`pack` puts the small served files into the results folder (and so
the tar) and cuts each large one into parts of :data:`PART_BYTES`, in the artifacts' order, as
long as the tool's limits allow; what does not fit is named in ``served.json`` with the reason,
never dropped silently. :func:`unpack` (here, after the run) extracts the tar, joins the parts
and checks every served file against the SHA-256 and size that ``served.json`` recorded where
it was written::

    python -m wafer.tools.returned <files_at> [--dest results/gpu]

"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from wafer.core.io import sha256_file

PART_BYTES = 15 * 2**20  # under the tool's 16 MiB a file
MAX_FILES = 8  # the tool's limits on what comes back from $OUT
MAX_BYTES = 64 * 2**20
MANIFEST = "served.json"


class ReturnError(RuntimeError):
    """A one-line reason a returned run cannot be joined (missing part, wrong checksum...)."""


def _write_parts(src: Path, archive_dir: Path, stem: str) -> list[str]:
    names = []
    with open(src, "rb") as f:
        for i, block in enumerate(iter(lambda: f.read(PART_BYTES), b"")):
            name = f"{stem}.part{i:02d}"
            (archive_dir / name).write_bytes(block)
            names.append(name)
    return names


def pack(
    workdir: Path,
    out: Path,
    name: str,
    served: Mapping[str, str],
    archive_dir: Path | None,
) -> dict:
    """Copy the ``served`` files (artifact name -> path in ``workdir``) that exist: into
    ``out/served/`` when there is no ``archive_dir`` or the file fits one returned file, else as
    parts ``<name>.<file>.partNN`` in ``archive_dir``, while the tool's limits allow (the
    results tar, packed after this, is counted as one file of the size of ``out`` now plus the
    small served files). Writes and returns the manifest (``out/served.json``)."""
    entries: dict[str, dict] = {}
    (out / "served").mkdir(parents=True, exist_ok=True)
    present = {a: workdir / p for a, p in served.items() if (workdir / p).is_file()}
    for artifact, path in served.items():
        if artifact not in present:
            entries[artifact] = {"file": Path(path).name, "left_behind": "not written by the run"}
    small = {
        a: p for a, p in present.items() if archive_dir is None or p.stat().st_size <= PART_BYTES
    }
    for artifact, path in small.items():
        shutil.copy2(path, out / "served" / path.name)
        entries[artifact] = {"file": path.name, "parts": []}
    results_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    files, total = 1, results_bytes  # the results tar (an upper bound: compression only helps)
    for artifact, path in present.items():
        if artifact in small:
            continue
        size = path.stat().st_size
        n = -(-size // PART_BYTES)
        if files + n > MAX_FILES or total + size > MAX_BYTES:
            entries[artifact] = {
                "file": path.name,
                "left_behind": f"{size / 2**20:.1f} MiB in {n} parts would pass the device "
                f"tool's limits ({MAX_FILES} files, {MAX_BYTES // 2**20} MiB in all); "
                "rebuild it from the returned files",
            }
            continue
        entries[artifact] = {
            "file": path.name,
            "parts": _write_parts(path, archive_dir, f"{name}.{path.name}"),
        }
        files, total = files + n, total + size
    for artifact, path in present.items():
        if "left_behind" not in entries[artifact]:
            entries[artifact].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    manifest = {"name": name, "part_bytes": PART_BYTES, "served": entries}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def unpack(files_at: Path, dest: Path) -> list[Path]:
    """Extract every ``*.tar.gz`` in ``files_at`` into ``dest``, join each run's parts into
    ``dest/<name>/served/<file>`` and check every served file's SHA-256 and size against its
    ``served.json``. Returns the run folders. A file that fails its check is not left behind."""
    tars = sorted(files_at.glob("*.tar.gz"))
    if not tars:
        raise ReturnError(f"{files_at}: no .tar.gz of a run in it")
    runs = []
    dest.mkdir(parents=True, exist_ok=True)
    for tar in tars:
        with tarfile.open(tar) as t:
            tops = {Path(m.name).parts[0] for m in t.getmembers()}
            if len(tops) != 1:
                raise ReturnError(f"{tar}: holds {len(tops)} top folders, expected one (the run)")
            t.extractall(dest, filter="data")
        run = dest / tops.pop()
        manifest_path = run / MANIFEST
        if manifest_path.is_file():
            _join(json.loads(manifest_path.read_text()), files_at, run / "served")
        runs.append(run)
    return runs


def _join(manifest: Mapping, files_at: Path, served_dir: Path) -> None:
    served_dir.mkdir(parents=True, exist_ok=True)
    for artifact, e in manifest["served"].items():
        if "left_behind" in e:
            print(f"{artifact}: {e['file']} not returned: {e['left_behind']}", file=sys.stderr)
            continue
        target = served_dir / e["file"]
        if e["parts"]:
            missing = [p for p in e["parts"] if not (files_at / p).is_file()]
            if missing:
                raise ReturnError(f"{artifact}: part(s) {', '.join(missing)} not in {files_at}")
            tmp = target.with_name(target.name + ".tmp")
            with open(tmp, "wb") as f:
                for p in e["parts"]:
                    f.write((files_at / p).read_bytes())
        else:
            tmp = target
        got, size = sha256_file(tmp), tmp.stat().st_size
        if got != e["sha256"] or size != e["bytes"]:
            tmp.unlink()
            raise ReturnError(
                f"{artifact}: {e['file']} is {size} bytes, SHA-256 {got[:12]}..., but the run "
                f"wrote {e['bytes']} bytes, {e['sha256'][:12]}...: not kept"
            )
        if tmp != target:
            os.replace(tmp, target)
        print(f"{artifact}: {target} ({size} bytes, SHA-256 checked)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m wafer.tools.returned",
        description="Join a device run's returned files: extract the results, join the served "
        "files' parts, check their SHA-256.",
    )
    p.add_argument("files_at", type=Path, help="the folder the device tool's files lie in")
    p.add_argument("--dest", type=Path, default=Path("results/gpu"), help="(default: results/gpu)")
    args = p.parse_args(argv)
    try:
        for run in unpack(args.files_at, args.dest):
            print(f"{run}: joined")
    except (ReturnError, OSError, tarfile.TarError, KeyError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
