"""Stage `infer`: the served model's logits on validation and test (data/logits.npz).

With `--tta` each map's logits are the mean over the 8 dihedral views (mean of logits, not of
probabilities: it keeps one set of logits that temperature scaling then rescales, and it is
the geometric mean of the views' probabilities). Calibration and thresholds are fit on exactly
these validation logits, and the same combination is applied by `wafer predict`. Logits are
computed in fp32 on every device (wafer.train.predict_logits), as `wafer predict` computes them.
The file records the model's SHA-256, which calibrate and thresholds copy into the served files
so that `wafer predict` can refuse a set that does not belong together.
"""

from pathlib import Path

import numpy as np
import typer

from wafer.cli_util import one_line_errors
from wafer.data import load_shard
from wafer.io import save_npz, sha256_file
from wafer.model import load_checkpoint
from wafer.params import check_args
from wafer.train import predict_logits, resolve_device

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    tta: bool = typer.Option(True, "--tta/--no-tta", help="average the logits of 8 D4 views"),
    batch_size: int = typer.Option(512, "--batch_size", "--batch-size"),
    device: str = typer.Option("auto", "--device"),
    model: Path = typer.Option(Path("models/model.pt"), "--model"),
    shards: Path = typer.Option(Path("data/shards"), "--shards"),
    out: Path = typer.Option(Path("data/logits.npz"), "--out"),
) -> None:
    check_args("infer", locals())
    dev = resolve_device(device)
    net, payload = load_checkpoint(model, dev)
    arrays: dict[str, np.ndarray] = {}
    for split in ("val", "test"):
        shard = load_shard(shards, split)
        if shard.size != payload["input_size"]:
            raise typer.BadParameter(
                f"{shards}: maps are {shard.size}px but the model was trained at "
                f"{payload['input_size']}px"
            )
        arrays[f"{split}_logits"] = predict_logits(
            net, shard.x, batch_size, dev, tta=tta, progress=True
        )
        arrays[f"{split}_y"] = shard.y
        arrays[f"{split}_rows"] = shard.rows
    save_npz(out, tta=np.array(tta), model_sha256=np.array(sha256_file(model)), **arrays)
    print(f"infer: val {len(arrays['val_y'])}, test {len(arrays['test_y'])} maps (tta={tta})")


if __name__ == "__main__":
    app()
