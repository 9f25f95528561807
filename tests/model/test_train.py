import numpy as np
import pytest
import torch

from wafer.model.augment import N_VIEWS, TTA_ORDER, VIEWS, all_views, dihedral, random_dihedral
from wafer.model.forward import predict_outputs
from wafer.model.losses import make_loss
from wafer.model.net import ModelConfig, build_model
from wafer.model.train import TrainConfig, ema_decay_at, ema_update, fit, seed_everything


def _toy(n=96, size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = np.ones((n, size, size), dtype=np.uint8)
    y = rng.integers(0, 3, n)
    x[y == 1, : size // 2] = 2  # a learnable pattern
    x[y == 2, :, : size // 3] = 2
    y = np.where(y == 2, 8, y)  # classes Center, Donut, none
    return x, y.astype(np.int64)


def _run(
    seed=0,
    epochs=2,
    lr=1e-3,
    patience=5,
    ema_decay=0.0,
    ema_warmup=False,
    on_epoch=None,
    resume=None,
    **kw,
):
    x, y = _toy()
    seed_everything(seed)
    model = build_model(ModelConfig(stem="standard", cbam=True, cbam_reduction=16))
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=32,
        lr=lr,
        weight_decay=1e-4,
        patience=patience,
        seed=seed,
        device="cpu",
        augment=True,
        precision="fp32",
        ema_decay=ema_decay,
        ema_warmup=ema_warmup,
        progress=False,
    )
    crit, _ = make_loss("focal", y, 2.0)
    return fit(model, crit, x, y, x[:48], y[:48], cfg, on_epoch=on_epoch, resume=resume, **kw)


def test_same_seed_gives_identical_weights_and_metrics_on_cpu():
    a, b = _run(seed=1), _run(seed=1)
    assert [r["val_macro_f1"] for r in a.history] == [r["val_macro_f1"] for r in b.history]
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)
    c = _run(seed=2)
    assert [r["train_loss"] for r in a.history] != [r["train_loss"] for r in c.history]


def test_early_stopping_keeps_the_best_epoch():
    res = _run(epochs=10, lr=0.0, patience=2)  # lr 0: no epoch improves on the first
    assert res.epochs_run == 3 and res.best_epoch == 1 and res.stopped_early
    assert len(res.history) == 3


def test_dihedral_views_are_the_eight_symmetries():
    x = torch.arange(16).view(1, 4, 4)
    views = {tuple(dihedral(x, k).flatten().tolist()) for k in range(N_VIEWS)}
    assert len(views) == 8
    batch = torch.arange(32).view(2, 4, 4)
    stacked = all_views(batch)
    assert stacked.shape == (16, 4, 4) and torch.equal(stacked[2:4], dihedral(batch, 2))
    assert sorted(TTA_ORDER) == list(range(N_VIEWS))
    for n in VIEWS:  # each prefix of the TTA order is closed under composition: a subgroup
        first = {tuple(dihedral(x, k).flatten().tolist()) for k in TTA_ORDER[:n]}
        assert len(first) == n
        assert all(
            tuple(dihedral(dihedral(x, a), b).flatten().tolist()) in first
            for a in TTA_ORDER[:n]
            for b in TTA_ORDER[:n]
        )
        assert torch.equal(all_views(batch, n), stacked[: 2 * n])
    aug = random_dihedral(batch, torch.Generator().manual_seed(0))
    assert all(any(torch.equal(aug[i], dihedral(batch[i], k)) for k in range(8)) for i in range(2))


def test_tta_on_a_symmetric_input_equals_a_single_pass():
    size = 16
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    sym = np.where(yy**2 + xx**2 < 40, 2, 1).astype(np.uint8)  # D4-symmetric disc
    assert all(np.array_equal(np.rot90(sym, k), sym) for k in range(4))
    model = build_model(ModelConfig(stem="compact", cbam=True, cbam_reduction=16)).eval()
    x = np.stack([sym, sym])
    single = predict_outputs(model, x, views=1).logits
    rng = np.random.default_rng(0)
    asym = rng.integers(0, 3, (2, size, size)).astype(np.uint8)
    for n in VIEWS[1:]:
        tta = predict_outputs(model, x, views=n).logits
        np.testing.assert_allclose(tta, single, rtol=1e-4, atol=1e-5)
        assert not np.allclose(
            predict_outputs(model, asym, views=n).logits, predict_outputs(model, asym).logits
        )
    with pytest.raises(ValueError, match="views"):
        predict_outputs(model, x, views=3)


def test_tta_logits_are_the_mean_over_the_views():
    model = build_model(ModelConfig(stem="compact", cbam=False, cbam_reduction=16)).eval()
    x = np.random.default_rng(1).integers(0, 3, (3, 16, 16)).astype(np.uint8)
    for n in VIEWS:
        each = [
            predict_outputs(model, dihedral(torch.from_numpy(x), k).numpy()).logits
            for k in TTA_ORDER[:n]
        ]
        np.testing.assert_allclose(
            predict_outputs(model, x, views=n).logits, np.mean(each, axis=0), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("device", ["auto"])
def test_resolve_device_auto_falls_back_to_cpu(device):
    from wafer.model.forward import resolve_device

    assert resolve_device(device).type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu").type == "cpu"


def test_torchrun_command_runs_the_script_with_its_arguments():
    from wafer.model.train import torchrun_command

    cmd, env = torchrun_command(2, ["stages/train.py", "--params", "params.yaml", "--shards=s"])
    i = cmd.index("stages/train.py")
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc-per-node=2" in cmd[:i]
    assert cmd[i + 1 :] == ["--params", "params.yaml", "--shards=s"]
    assert int(env["OMP_NUM_THREADS"]) >= 1


def test_one_process_is_not_distributed(monkeypatch):
    from wafer.model.train import Dist, init_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == Dist(0, 1, 0)


class _Stop(Exception):
    pass


def _interrupted_then_resumed(tmp_path, stop_after, **kw):
    """Kill the run (an exception from the epoch callback) after ``stop_after`` epochs, then
    start the same training again with the same resume folder."""

    def kill(row):
        if row["epoch"] == stop_after:
            raise _Stop

    with pytest.raises(_Stop):
        _run(on_epoch=kill, resume=tmp_path, **kw)
    assert len(list(tmp_path.glob("train-*.pt"))) == 1
    replayed = []
    return _run(on_epoch=replayed.append, resume=tmp_path, **kw), replayed


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole = _run(seed=3, epochs=4)
    resumed, replayed = _interrupted_then_resumed(tmp_path, 2, seed=3, epochs=4)
    assert resumed.resumed_after == 2 and resumed.resume_file.is_file()
    strip = [{k: v for k, v in r.items() if k != "train_maps_per_s"} for r in whole.history]
    assert [
        {k: v for k, v in r.items() if k != "train_maps_per_s"} for r in resumed.history
    ] == strip
    assert [r["epoch"] for r in replayed] == [1, 2, 3, 4]  # curves rewritten whole
    assert resumed.best_epoch == whole.best_epoch and resumed.epochs_run == 4
    assert all(torch.equal(whole.best_state[k], resumed.best_state[k]) for k in whole.best_state)


def test_resume_with_ema_and_after_early_stopping(tmp_path):
    whole = _run(epochs=10, lr=0.0, patience=2, ema_decay=0.9)
    resumed, _ = _interrupted_then_resumed(
        tmp_path, 3, epochs=10, lr=0.0, patience=2, ema_decay=0.9
    )
    assert resumed.resumed_after == 3 and resumed.stopped_early and resumed.epochs_run == 3
    assert all(torch.equal(whole.best_state[k], resumed.best_state[k]) for k in whole.best_state)


def test_ema_warmup_follows_the_tensorflow_num_updates_rule():
    assert ema_decay_at(0.999, False, 1) == 0.999
    assert ema_decay_at(0.999, True, 1) == 2 / 11  # the first average after the copy
    assert ema_decay_at(0.999, True, 100) == 101 / 110
    assert ema_decay_at(0.999, True, 100_000) == 0.999  # capped by ema_decay
    # AveragedModel passes the number of models averaged so far: the n-th update gets
    # decay_at(n); a weight that climbs 0, 1, 2, ... is averaged as the recursion says
    w = torch.nn.Parameter(torch.zeros(1))
    net = torch.nn.Module()
    net.w = w
    for warmup in (False, True):
        ema = torch.optim.swa_utils.AveragedModel(
            net, multi_avg_fn=ema_update(0.9, warmup), use_buffers=True
        )
        want = None
        for step in range(30):
            with torch.no_grad():
                w.fill_(float(step))
            ema.update_parameters(net)
            d = ema_decay_at(0.9, warmup, step)
            want = float(step) if want is None else d * want + (1 - d) * step
            assert ema.module.w.item() == pytest.approx(want, rel=1e-6)
        # with warmup the average lags the weight less: 26.0 against 20.x (decay 0.9 from 0)
        assert (ema.module.w.item() > 25.0) is warmup


def test_ema_warmup_trains_otherwise_and_resumes_to_the_same_weights(tmp_path):
    plain = _run(seed=2, epochs=2, ema_decay=0.99)
    warm = _run(seed=2, epochs=2, ema_decay=0.99, ema_warmup=True)
    assert any(not torch.equal(plain.best_state[k], warm.best_state[k]) for k in warm.best_state)
    resumed, _ = _interrupted_then_resumed(
        tmp_path, 1, seed=2, epochs=2, ema_decay=0.99, ema_warmup=True
    )
    assert resumed.resumed_after == 1
    assert all(torch.equal(warm.best_state[k], resumed.best_state[k]) for k in warm.best_state)


def test_another_training_does_not_resume_a_state(tmp_path):
    with pytest.raises(_Stop):
        _run(seed=0, epochs=3, on_epoch=lambda r: (_ for _ in ()).throw(_Stop()), resume=tmp_path)
    other = _run(seed=1, epochs=1, resume=tmp_path)  # another seed: another key, from epoch 1
    assert other.resumed_after == 0 and len(list(tmp_path.glob("train-*.pt"))) == 2


def test_resume_folder_from_the_environment_and_an_unreadable_state(monkeypatch, tmp_path, capsys):
    from wafer.model.resume import RESUME_ENV, resume_dir

    monkeypatch.delenv(RESUME_ENV, raising=False)
    assert resume_dir() is None
    monkeypatch.setenv(RESUME_ENV, str(tmp_path))
    assert resume_dir() == tmp_path
    first = _run(epochs=1)
    assert first.resume_file.parent == tmp_path
    first.resume_file.write_bytes(b"truncated")  # a copy cut short: ignored, in one line
    again = _run(epochs=1)
    assert again.resumed_after == 0 and "not resumable" in capsys.readouterr().out


def test_predict_outputs_reads_a_read_only_memory_map_quietly(tmp_path):
    x, _ = _toy(n=10)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")  # read-only, as the shards are read
    model = build_model(ModelConfig(stem="standard", cbam=False, cbam_reduction=16)).eval()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it shares a non-writable array
        got = predict_outputs(model, mapped, batch_size=4).logits
    assert np.array_equal(got, predict_outputs(model, x, batch_size=4).logits)


def test_time_limit_stops_between_epochs_with_the_best_weights(monkeypatch):
    """A limit shorter than two epochs: the first epoch runs (nothing is known of its cost
    before), the second is not started, and the run says why; without a limit it runs on."""
    res = _run(epochs=5, patience=5, time_limit=1e-9)
    assert res.stopped_at_time_limit and res.epochs_run == 1 and res.best_epoch == 1
    assert len(res.epoch_seconds) == 1 and res.epoch_seconds[0] > 0
    assert res.best_state and not res.stopped_early
    monkeypatch.setenv("WAFER_TRAIN_TIME_LIMIT", "1e-9")  # the default comes from the env
    assert _run(epochs=3, patience=5).epochs_run == 1
    monkeypatch.delenv("WAFER_TRAIN_TIME_LIMIT")
    res = _run(epochs=3, patience=5)
    assert res.epochs_run == 3 and not res.stopped_at_time_limit
    assert res.first_step_seconds is None  # measured on CUDA only


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan"])
def test_a_bad_time_limit_is_one_line(monkeypatch, value):
    from wafer.core.errors import UsageError
    from wafer.model.train import time_limit_env

    monkeypatch.setenv("WAFER_TRAIN_TIME_LIMIT", value)
    with pytest.raises(UsageError, match="WAFER_TRAIN_TIME_LIMIT"):
        time_limit_env()
    monkeypatch.setenv("WAFER_TRAIN_TIME_LIMIT", " ")
    assert time_limit_env() is None
