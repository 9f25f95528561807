"""Stage `ensemble` of the cross-fitting pipeline: the member files as one served checkpoint
(wafer.model.checkpoint.Checkpoint.ensemble: an Ensemble network whose output is the mean of
the members' logits, or the log of the mean of their probabilities, ``ensemble.average``). The
members are the K cross-fitted ones (``ensemble.members: folds``), or the root's model and one
model per seed of ``ensemble.seeds``, each the root's recipe on every training map
(``ensemble.members: seeds``). The checkpoint records each member file's SHA-256 and train
options, so the calibration and thresholds fit on its logits, which name its own SHA-256, are
bound to every member.

It also measures on validation, with the root pipeline's `infer.views` TTA views, argmax
macro-F1 of each member and of both averages (metrics/ensemble.json), so that the choice of
``ensemble.average`` is made on validation figures."""

from pathlib import Path

import torch
import typer

from wafer.config.crossfit import EnsembleParams
from wafer.config.params import load_section
from wafer.config.rules import AVERAGES
from wafer.config.sections import InferParams
from wafer.core.errors import one_line_errors
from wafer.core.io import write_json
from wafer.data.files import load_shard
from wafer.model.augment import TTA_ORDER, dihedral
from wafer.model.forward import predict_outputs, resolve_device
from wafer.model.members import served_ensemble
from wafer.model.net import combine
from wafer.report.metrics import macro_f1

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section ensemble)"),
    root_params: Path = typer.Option(..., "--root-params", help="the root params.yaml (infer)"),
    folds: Path = typer.Option(..., "--folds"),
    members: Path = typer.Option(..., "--members", help="folder of the cross-fitted members"),
    seeds: Path = typer.Option(..., "--seeds", help="folder of the seed members"),
    root_model: Path = typer.Option(..., "--root-model", help="the root's model"),
    shards: Path = typer.Option(..., "--shards", help="the root pipeline's shards"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
) -> None:
    p = load_section(params, EnsembleParams)
    infer = load_section(root_params, InferParams)
    ens, chosen = served_ensemble(
        p, root_model=root_model, seeds=seeds, members=members, folds=folds
    )
    ckpts = [c for _, c in chosen]
    k = len(ckpts)
    val = load_shard(shards, "val", mmap=False)
    dev = resolve_device(infer.device)
    # (K, V, N, C): each member's logits on each TTA view, so that each average is measured as
    # it is served (combined per view, then the mean over the views)
    views = torch.stack(
        [
            torch.stack(
                [
                    torch.from_numpy(
                        predict_outputs(
                            net, dihedral(torch.from_numpy(val.x), v).numpy(), infer.batch_size, dev
                        ).logits
                    )
                    for v in TTA_ORDER[: infer.views]
                ]
            )
            for net in (c.build(dev) for c in ckpts)
        ]
    )
    scores = {
        "members": [round(macro_f1(val.y, m.mean(0).argmax(1).numpy()), 6) for m in views],
        **{
            f"average_{a}": round(
                macro_f1(
                    val.y,
                    torch.stack([combine(views[:, v], a) for v in range(views.shape[1])])
                    .mean(0)
                    .argmax(1)
                    .numpy(),
                ),
                6,
            )
            for a in AVERAGES
        },
    }
    ens.save(out)
    write_json(
        metrics,
        {
            "members": k,
            "members_from": p.members,
            **({"start": p.start} if p.members == "seeds" else {}),
            "average": p.average,
            "views": infer.views,
            "val_macro_f1": scores,
        },
    )
    print(
        f"ensemble: {k} members ({p.average} average); val macro-F1 members "
        f"{scores['members']}, " + ", ".join(f"{a} {scores[f'average_{a}']:.4f}" for a in AVERAGES)
    )


if __name__ == "__main__":
    app()
