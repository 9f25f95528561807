"""Stage `oof` of the cross-fitting pipeline: every training map's out-of-fold served logits
(wafer.data.crossfit.OofFile): member k (trained on every fold but k) on the maps of fold k,
with the root pipeline's `infer.views` TTA views, in fp32 eager (the served forward pass of
`infer.runtime: eager`). Each member file must have been trained for this folds file and fold
(its checkpoint says so). These are what confident learning (the label-noise audit) and the
distilled student read; metrics/oof.json has their argmax accuracy and macro-F1, overall and
per fold (the maps' given labels, which the audit questions)."""

from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_section
from wafer.config.sections import InferParams
from wafer.core.errors import one_line_errors
from wafer.core.io import sha256_file, write_json
from wafer.data.crossfit import FoldsFile, OofFile
from wafer.data.files import load_shard
from wafer.model.forward import predict_outputs, resolve_device
from wafer.model.members import load_members
from wafer.model.runtime import make_runtime
from wafer.report.metrics import macro_f1

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="the root params.yaml (section infer)"),
    folds: Path = typer.Option(..., "--folds"),
    members: Path = typer.Option(..., "--members", help="folder of the member files"),
    shards: Path = typer.Option(..., "--shards", help="the root pipeline's shards"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
) -> None:
    p = load_section(params, InferParams)
    f = FoldsFile.load(folds)
    train = load_shard(shards, "train")
    dev = resolve_device(p.device)
    logits: np.ndarray | None = None
    shas, per_fold = [], {}
    for k, (path, ckpt) in enumerate(load_members(members, folds, f.k)):
        net = ckpt.build(dev)
        held = f.held_out(k, train.rows)
        out_k = predict_outputs(
            make_runtime(net, dev, "eager"),
            train.x[held],
            p.batch_size,
            views=p.views,
            progress=True,
        ).logits
        if logits is None:
            logits = np.zeros((len(train.rows), out_k.shape[1]), dtype=np.float32)
        logits[held] = out_k
        shas.append(sha256_file(path))
        pred = out_k.argmax(1)
        per_fold[str(k)] = {
            "maps": int(held.sum()),
            "accuracy": round(float((pred == train.y[held]).mean()), 6),
            "macro_f1": round(macro_f1(train.y[held], pred), 6),
        }
    assert logits is not None
    OofFile(logits, train.y, f.fold, train.rows, p.views, tuple(shas)).save(out)
    pred = logits.argmax(1)
    summary = {
        "maps": int(len(pred)),
        "views": p.views,
        "accuracy": round(float((pred == train.y).mean()), 6),
        "macro_f1": round(macro_f1(train.y, pred), 6),
        "folds": per_fold,
    }
    write_json(metrics, summary)
    print(f"oof: {len(pred)} training maps, out-of-fold macro-F1 {summary['macro_f1']:.4f}")


if __name__ == "__main__":
    app()
