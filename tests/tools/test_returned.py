"""wafer.tools.returned: a device run's served files cut into parts within the tool's limits,
joined here and checked by SHA-256; what cannot come back is named, a damaged part refused."""

import json
import tarfile

import pytest

from wafer.tools import returned
from wafer.tools.returned import ReturnError, pack, unpack

SERVED = {
    "wafer-model": "models/model.pt",
    "wafer-calibration": "models/calibration.json",
    "wafer-index": "models/index.npz",
    "wafer-novelty": "models/novelty.json",
}


def _run(tmp_path, sizes, monkeypatch, part=1000, max_files=8, max_bytes=10**6):
    """A work folder with served files of ``sizes`` bytes, packed as on the device."""
    monkeypatch.setattr(returned, "PART_BYTES", part)
    monkeypatch.setattr(returned, "MAX_FILES", max_files)
    monkeypatch.setattr(returned, "MAX_BYTES", max_bytes)
    work, out, arch = tmp_path / "work", tmp_path / "res" / "run", tmp_path / "OUT"
    (work / "models").mkdir(parents=True)
    out.mkdir(parents=True)
    arch.mkdir()
    for (artifact, path), size in zip(SERVED.items(), sizes, strict=False):
        if size is not None:
            (work / path).write_bytes(bytes((i * 7 + len(artifact)) % 251 for i in range(size)))
    (out / "evaluate.json").write_text('{"macro_f1": 0.9}\n')
    manifest = pack(work, out, "run", SERVED, arch)
    with tarfile.open(arch / "run.tar.gz", "w:gz") as tar:
        tar.add(out, arcname="run")
    return work, arch, manifest


def test_parts_are_joined_and_checked(tmp_path, monkeypatch):
    work, arch, manifest = _run(tmp_path, [2500, 300, 1800, 40], monkeypatch)
    model = manifest["served"]["wafer-model"]
    assert model["parts"] == ["run.model.pt.part00", "run.model.pt.part01", "run.model.pt.part02"]
    assert manifest["served"]["wafer-calibration"]["parts"] == []  # small: in the results tar
    assert sorted(p.name for p in arch.iterdir()) == sorted(
        ["run.tar.gz", *model["parts"], "run.index.npz.part00", "run.index.npz.part01"]
    )
    dest = tmp_path / "back"
    (run,) = unpack(arch, dest)
    for artifact, path in SERVED.items():
        joined = run / "served" / path.split("/")[-1]
        assert joined.read_bytes() == (work / path).read_bytes(), artifact
    assert json.loads((run / "evaluate.json").read_text()) == {"macro_f1": 0.9}


def test_what_passes_the_limits_is_named_not_dropped(tmp_path, monkeypatch, capsys):
    """The model (first in artifacts order) fits; the index would pass the 8 files or the
    total: it stays behind with the reason, and joining says so."""
    _, arch, manifest = _run(tmp_path, [2500, 300, 4500, None], monkeypatch, max_files=5)
    index = manifest["served"]["wafer-index"]
    assert "left_behind" in index and "5 files" in index["left_behind"]
    assert manifest["served"]["wafer-novelty"]["left_behind"] == "not written by the run"
    assert not list(arch.glob("run.index.npz.part*"))
    (run,) = unpack(arch, tmp_path / "back")
    assert (run / "served" / "model.pt").stat().st_size == 2500
    assert not (run / "served" / "index.npz").exists()
    assert "index.npz not returned" in capsys.readouterr().err


def test_a_damaged_or_missing_part_is_refused(tmp_path, monkeypatch):
    _, arch, _ = _run(tmp_path, [2500, 300, None, None], monkeypatch)
    part = arch / "run.model.pt.part01"
    data = bytearray(part.read_bytes())
    data[5] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(ReturnError, match="SHA-256"):
        unpack(arch, tmp_path / "back")
    assert not list((tmp_path / "back" / "run" / "served").glob("model.pt*"))  # nothing kept
    part.unlink()
    with pytest.raises(ReturnError, match="part01"):
        unpack(arch, tmp_path / "back2")


def test_cli_errors_in_one_line(tmp_path, capsys):
    assert returned.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no .tar.gz" in err and err.count("\n") == 1


def test_without_an_archive_every_served_file_is_copied_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(returned, "PART_BYTES", 1000)
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "models").mkdir(parents=True)
    (work / "models" / "model.pt").write_bytes(b"x" * 5000)
    manifest = pack(work, out, "run", {"wafer-model": "models/model.pt"}, None)
    assert (out / "served" / "model.pt").stat().st_size == 5000
    assert manifest["served"]["wafer-model"]["parts"] == []
