"""Where the first training epoch's time goes on a GPU: start-up costs, timed step by step.

The first lease measured the seed-224 model's first epoch at 173 maps/s and its second at
3,659 (docs/benchmarks/gpu_session_h200.json): over the probe's 3,072 maps, a fixed cost of
about 17 s, not a slower rate. This script times, in one fresh process, each thing that can
make up such a cost, with the device synchronised around each:

- ``cuda_init_s``: the CUDA context (the first tensor on the device);
- ``model_to_device_s``: the model to the device, channels-last;
- the training steps of :func:`wafer.model.train.fit`'s loop body (one-hot on the device,
  forward, focal loss, backward, AdamW) on random maps at the run's batch size: the first
  step, the next ones, and the first step at a new batch size (a trailing batch: with
  ``cudnn.benchmark`` on, cuDNN times its algorithms again for every new input shape);
- the validation forward pass (fp32 without TF32, as served) at its first and later batches.

Run it once with ``--benchmark on`` and once with ``--benchmark off`` (``fit`` turns it on, as
cuDNN's autotuning pays for fixed shapes over a long run); each run is its own process, so
each pays its own start-up::

    PYTHONPATH=src python3 benchmarks/first_steps.py --benchmark on --out first_steps_on.json
    PYTHONPATH=src python3 benchmarks/first_steps.py --benchmark off --out first_steps_off.json
    PYTHONPATH=src python benchmarks/first_steps.py --size 32 --steps 3   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from wafer.config.params import config_from, section_values
from wafer.config.sections import TrainParams
from wafer.model.forward import model_inputs, predict_outputs, resolve_device, to_device
from wafer.model.losses import make_loss
from wafer.model.net import ModelConfig, build_model
from wafer.tools.machine import environment
from wafer.tools.recipes import ROOT, apply_overrides, load_recipe, load_yaml


def timed(fn, device: torch.device) -> tuple[object, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    value = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return value, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", choices=("on", "off"), default="on")
    p.add_argument("--recipe", default="seed-224")
    p.add_argument("--size", type=int, help="input side (default: the recipe's shard.input_px)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--odd-batch", type=int, default=36, help="the trailing batch (37,028 % 128)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    t_start = time.perf_counter()
    params = apply_overrides(
        load_yaml((ROOT / "params.yaml").read_text()), load_recipe(args.recipe)
    )
    train = section_values(params, TrainParams)
    size = args.size or params["shard"]["input_px"]
    device = resolve_device("auto")
    torch.backends.cudnn.benchmark = args.benchmark == "on"
    out: dict = {"benchmark": args.benchmark, "size": size, "batch_size": train.batch_size}
    out["environment"] = environment(ROOT)
    if device.type == "cuda":
        _, out["cuda_init_s"] = timed(lambda: torch.zeros(1, device=device), device)
    torch.manual_seed(0)
    model = build_model(config_from(ModelConfig, train))
    _, out["model_to_device_s"] = timed(lambda: to_device(model, device), device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (train.batch_size, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 9, (train.batch_size,), generator=g)
    criterion, _ = make_loss(train.loss, y.numpy(), train.focal_gamma, None)
    criterion = criterion.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    model.train()

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        loss = criterion(model(model_inputs(xb, device)).float(), yb.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steps = [timed(lambda: step(x, y), device)[1] for _ in range(args.steps)]
    out["first_step_s"] = steps[0]
    out["second_step_s"] = steps[1] if len(steps) > 1 else None
    out["later_step_median_s"] = statistics.median(steps[2:]) if len(steps) > 2 else None
    odd = args.odd_batch
    out["odd_batch"] = odd
    out["odd_batch_first_step_s"] = timed(lambda: step(x[:odd], y[:odd]), device)[1]
    out["odd_batch_second_step_s"] = timed(lambda: step(x[:odd], y[:odd]), device)[1]
    model.eval()
    val = x.numpy().repeat(4, axis=0)  # 512 maps: two batches of 256
    _, out["val_first_s"] = timed(lambda: predict_outputs(model, val, 256, device), device)
    _, out["val_second_s"] = timed(lambda: predict_outputs(model, val, 256, device), device)
    if out["later_step_median_s"]:
        out["steady_train_maps_per_s"] = train.batch_size / out["later_step_median_s"]
        out["extra_first_step_s"] = out["first_step_s"] - out["later_step_median_s"]
    out["process_s"] = time.perf_counter() - t_start
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
