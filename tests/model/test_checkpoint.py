"""The model file's one type (wafer.model.checkpoint.Checkpoint): what is saved is what is
loaded, the bytes do not depend on the temporary file name, nothing in it runs, and a file
that is not a checkpoint is named for what it is."""

from __future__ import annotations

import pytest
import torch

from wafer.model.checkpoint import Checkpoint, load_model
from wafer.model.net import ModelConfig, build_model


def _ckpt() -> Checkpoint:
    torch.manual_seed(0)
    cfg = ModelConfig(stem="compact", cbam=True, cbam_reduction=16)
    return Checkpoint.of(build_model(cfg), cfg, 16, {"train": {"lr": 0.001}, "best_epoch": 2})


def test_round_trip_and_reproducible_bytes(tmp_path):
    ckpt = _ckpt()
    ckpt.save(tmp_path / "a.pt")
    ckpt.save(tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    model, back = load_model(tmp_path / "a.pt")
    assert back.config == ckpt.config and back.input_size == 16
    assert back.extra == {"train": {"lr": 0.001}, "best_epoch": 2}
    assert not model.training
    for k, v in ckpt.state_dict.items():
        assert torch.equal(model.state_dict()[k], v), k
    # the saved dict, key by key (its order makes the bytes, hence the DVC hash)
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    assert list(payload) == ["state_dict", "model_config", "class_names", "input_size", "extra"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"just some text\n", "not a PyTorch checkpoint"),
        (b"", "not a PyTorch checkpoint"),
    ],
)
def test_a_file_that_is_no_checkpoint_says_so(tmp_path, content, reason):
    (tmp_path / "m.pt").write_bytes(content)
    with pytest.raises(ValueError, match=reason) as info:
        Checkpoint.load(tmp_path / "m.pt")
    assert "objects other than tensors" not in str(info.value)


def test_foreign_class_names_and_bad_sizes_are_refused(tmp_path):
    ckpt = _ckpt()
    payload = ckpt.payload()
    torch.save(payload | {"class_names": ["a", "b"]}, tmp_path / "names.pt")
    with pytest.raises(ValueError, match="class names"):
        Checkpoint.load(tmp_path / "names.pt")
    torch.save(payload | {"input_size": 0}, tmp_path / "size.pt")
    with pytest.raises(ValueError, match="input_size: 0 is below 8"):
        Checkpoint.load(tmp_path / "size.pt")


def test_mapped_load_gives_the_same_checkpoint(tmp_path):
    """`wafer predict` maps the file to read which task it serves, then loads it once."""
    ckpt = _ckpt()
    ckpt.save(tmp_path / "a.pt")
    mapped = Checkpoint.load(tmp_path / "a.pt", class_names=None, mmap=True)
    assert mapped.task == "wm811k" and mapped.config == ckpt.config
    assert all(torch.equal(mapped.state_dict[k], v) for k, v in ckpt.state_dict.items())
