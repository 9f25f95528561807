"""Stage `audit` of the cross-fitting pipeline: the label-noise audit of the training maps
(wafer.report.audit: confident learning with cleanlab on the out-of-fold logits). Writes the
ranked list of every flagged map (row, given label, suggested label, scores, fold), the review
page of the ``audit.review`` most suspect (wafer.explain.audit_page: map, the out-of-fold
member's Grad-CAM of the suggested class, ``audit.neighbours`` nearest training maps by the
ensemble's features, the three labels) and the per-class noise estimate (metrics/audit.json).
Grad-CAM method and layer are the root's `gradcam` section."""

from pathlib import Path

import numpy as np
import torch
import typer

from wafer.config.crossfit import AuditParams
from wafer.config.params import load_section
from wafer.config.sections import GradcamParams, InferParams
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import sha256_file, write_json, write_text
from wafer.data.crossfit import OofFile, write_label_issues
from wafer.data.files import Ingested, load_shard
from wafer.explain.audit_page import Suspect, build_page, neighbours_png
from wafer.explain.cam import compute_cam, resolve_layer_name, target_layer, upsample_to_grid
from wafer.explain.report import render_example
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs, resolve_device
from wafer.model.members import member_file
from wafer.model.net import one_hot
from wafer.report.audit import METHOD, audit
from wafer.serving.novelty import FeatureIndex

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section audit)"),
    root_params: Path = typer.Option(..., "--root-params", help="root params (infer, gradcam)"),
    oof: Path = typer.Option(..., "--oof"),
    members: Path = typer.Option(..., "--members", help="folder of the member files"),
    model: Path = typer.Option(..., "--model", help="the ensemble"),
    index: Path = typer.Option(..., "--index", help="the ensemble's index of training maps"),
    shards: Path = typer.Option(..., "--shards", help="the root pipeline's shards"),
    ingested: Path = typer.Option(..., "--ingested", help="the root's maps at die resolution"),
    label_issues: Path = typer.Option(..., "--label-issues", help="the ranked list (.csv)"),
    page: Path = typer.Option(..., "--page", help="the review page (.html)"),
    metrics: Path = typer.Option(..., "--metrics"),
) -> None:
    p = load_section(params, AuditParams)
    infer = load_section(root_params, InferParams)
    cam = load_section(root_params, GradcamParams)
    o = OofFile.load(oof)
    train = load_shard(shards, "train")
    if not np.array_equal(o.rows, train.rows):
        raise WaferInputError(oof, "does not hold the training shard's maps")
    a = audit(o.logits, o.y)
    probs, n_cls = a.probs, o.logits.shape[1]
    rows = [
        [
            rank + 1,
            int(o.rows[i]),
            CLASS_NAMES[o.y[i]],
            CLASS_NAMES[a.suggested[i]],
            round(float(a.quality[i]), 6),
            round(float(probs[i, a.suggested[i]]), 6),
            int(o.fold[i]),
        ]
        for rank, i in enumerate(a.order)
    ]
    write_label_issues(label_issues, rows)
    per_class = a.per_class(o.y)

    dev = resolve_device(cam.device)
    shown = a.order[: p.review]
    ens, ens_ckpt = load_model(model, dev)
    ens_pred = predict_outputs(ens, train.x[shown], infer.batch_size, dev, views=infer.views)
    ens_label = ens_pred.logits.argmax(1) if len(shown) else np.zeros(0, dtype=np.int64)
    feats = FeatureIndex.load(index)
    if feats.model_sha256 != sha256_file(model):
        raise WaferInputError(index, "was built for another model than the ensemble")
    where = {int(r): q for q, r in enumerate(feats.rows)}
    ing = Ingested.load(ingested)
    layer = resolve_layer_name(cam.layer, ens_ckpt.config.stem, ens_ckpt.input_size)
    suspects, nets = [], {}  # each out-of-fold member loaded once, checked against the oof file
    for rank, (i, e) in enumerate(zip(shown, ens_label, strict=True)):
        row, fold = int(o.rows[i]), int(o.fold[i])
        if fold not in nets:
            path = member_file(members, fold)
            if sha256_file(path) != o.member_sha256[fold]:
                raise WaferInputError(path, f"is not the member that gave {oof} its fold {fold}")
            nets[fold] = load_model(path, dev)[0]
        member = nets[fold]
        x = one_hot(torch.from_numpy(np.ascontiguousarray(train.x[i : i + 1])).to(dev))
        t = torch.tensor([int(a.suggested[i])], device=dev)
        m = ing.map(row)
        grid = upsample_to_grid(
            compute_cam(member, x, t, target_layer(member, layer), cam.method)[0], m.shape
        )
        title = f"#{rank + 1} row {row}: CAM of {CLASS_NAMES[a.suggested[i]]} (fold {fold} member)"
        near: list[int] = []
        if row in where:
            _, pos = feats.neighbours(feats.features[where[row] : where[row] + 1], p.neighbours + 1)
            near = [int(q) for q in pos[0] if int(feats.rows[q]) != row][: p.neighbours]
        suspects.append(
            Suspect(
                rank=rank + 1,
                row=row,
                given=CLASS_NAMES[o.y[i]],
                suggested=CLASS_NAMES[a.suggested[i]],
                ensemble=CLASS_NAMES[int(e)],
                quality=float(a.quality[i]),
                p_suggested=float(probs[i, a.suggested[i]]),
                fold=fold,
                png=render_example(m, grid, title),
                neighbours=neighbours_png(
                    [ing.map(int(feats.rows[q])) for q in near],
                    [CLASS_NAMES[int(feats.labels[q])] for q in near],
                ),
            )
        )
    write_text(page, build_page(suspects, per_class, len(o.y), len(a.order), METHOD))
    write_json(
        metrics,
        {
            "method": METHOD,
            "maps": int(len(o.y)),
            "flagged": int(len(a.order)),
            "flagged_share": round(len(a.order) / max(1, len(o.y)), 6),
            "classes": n_cls,
            "per_class": per_class,
        },
    )
    print(
        f"audit: {len(a.order)} of {len(o.y)} training maps flagged; "
        f"review page of {len(suspects)} -> {page}"
    )


if __name__ == "__main__":
    app()
