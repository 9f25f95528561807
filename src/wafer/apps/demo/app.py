"""The demo's gradio page (:func:`build_app`, gradio imported there), the server
(:func:`launch`, bound to 127.0.0.1 unless told otherwise, uploads capped) and its command
line (:func:`main`)."""

from __future__ import annotations

import io
from pathlib import Path

from wafer.apps.demo.analysis import Analysis, analyse_in, handle_upload, header_markdown
from wafer.apps.demo.assets import NEIGHBOURS, DemoAssets, load_assets
from wafer.apps.demo.ui import import_gradio, input_column, map_thumbnail, style
from wafer.apps.predicting import task_of
from wafer.apps.process_modes import CAVEAT
from wafer.core.errors import UsageError, one_line_errors
from wafer.data.maprules import MAX_SIDE
from wafer.model.forward import check_device
from wafer.serving.predictor import MAX_NEIGHBOURS

NEIGHBOUR_COLUMNS = 3


def build_app(assets: DemoAssets):
    """The gradio Blocks app (gradio imported here)."""
    gr = import_gradio()
    from PIL import Image

    examples = assets.examples
    blocks_kw, _ = style(gr)
    show_neighbours = assets.predictor.novelty is not None and assets.neighbours > 0

    def outputs_of(a: Analysis):
        cam = Image.open(io.BytesIO(a.cam_png)) if a.cam_png else None
        verdict = {True: ["novel"], False: ["known"]}.get(a.novel, [])
        near = [(map_thumbnail(m), caption) for m, caption in a.neighbours]
        return (
            gr.update(value=a.novelty_md, elem_classes=verdict),
            a.warning_md,
            a.result_md,
            a.top3 or None,
            a.mode_md,
            cam,
            near or None,
        )

    def on_example(evt):
        ex = examples[int(evt.index)]
        with assets.lock:
            a = analyse_in(assets, ex.map, f"test example {ex.cls} (row {ex.row})", None, ex)
        return outputs_of(a)

    # gradio finds the event-data argument by its annotation; set it as a class, not as the
    # string that `from __future__ import annotations` makes of it.
    on_example.__annotations__ = {"evt": gr.SelectData}

    def on_upload(path):
        return outputs_of(handle_upload(assets, path))

    title = "WM-811K wafer-map classifier"
    with gr.Blocks(title=title, analytics_enabled=False, **blocks_kw) as app:
        gr.Markdown(header_markdown(assets), elem_id="header")
        with gr.Row():
            with gr.Column(scale=2):
                gallery, upload = input_column(
                    gr, [(ex.map, ex.cls) for ex in examples], "one per class", columns=3
                )
            with gr.Column(scale=3):
                novelty = gr.Markdown(elem_id="novelty")
                warning = gr.Markdown(elem_id="warning")
                result = gr.Markdown("*Click an example or upload a map.*", elem_id="prediction")
                top3 = gr.Label(num_top_classes=3, label="Top 3 (calibrated)", elem_id="top3")
                near = gr.Gallery(
                    label=f"The {assets.neighbours} nearest historical (training) maps: "
                    "label · ingested row · distance",
                    columns=NEIGHBOUR_COLUMNS,
                    height=None,
                    allow_preview=False,
                    interactive=False,
                    format="png",
                    object_fit="contain",
                    visible=show_neighbours,
                    elem_id="neighbours",
                )
                gr.Markdown(
                    "**Grad-CAM** of the predicted class (unrotated map): map | CAM | overlay"
                )
                cam = gr.Image(
                    label="Grad-CAM",
                    show_label=False,
                    type="pil",
                    interactive=False,
                    elem_id="cam",
                )
                mode = gr.Markdown(f"*{CAVEAT}*", elem_id="process-mode")
        outs = [novelty, warning, result, top3, mode, cam, near]
        gallery.select(on_example, None, outs)
        upload.upload(on_upload, upload, outs)
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7860, block: bool = True, **kw):
    """Start the server (bound to ``host``, 127.0.0.1 by default)."""
    import inspect

    gr = import_gradio()
    _, launch_kw = style(gr)
    if "max_file_size" in inspect.signature(app.launch).parameters:
        launch_kw["max_file_size"] = "20mb"  # die maps are kilobytes
    return app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        share=False,
        inbrowser=False,
        **launch_kw,
        **kw,
    )


def main(
    host: str = "127.0.0.1",
    port: int = 7860,
    model: Path | None = None,
    calibration: Path | None = None,
    thresholds: Path | None = None,
    evaluate_metrics: Path | None = None,
    calibrate_metrics: Path | None = None,
    predictions: Path | None = None,
    ingested: Path | None = None,
    device: str = "auto",
    max_side: int = MAX_SIDE,
    index: Path | None = None,
    novelty: Path | None = None,
    neighbours: int = NEIGHBOURS,
    pipeline: Path = Path("."),
) -> None:
    """Serve the demo of the trained pipeline (binds to 127.0.0.1 unless --host says so;
    uploads larger than --max-side dies a side are refused). Every file defaults to the
    pipeline's own (dvc.yaml's paths, in the current directory or in --pipeline's folder:
    pipelines/mixed serves the mixed-type model); the index and novelty.json are used when the
    index exists (novelty flag and the --neighbours nearest training maps)."""
    import_gradio()  # fail fast, before loading anything
    device = check_device(device)
    if max_side < 1:
        raise UsageError(f"--max-side {max_side}: must be at least 1")
    if not 0 <= neighbours <= MAX_NEIGHBOURS:
        raise UsageError(f"--neighbours {neighbours}: must be 0 to {MAX_NEIGHBOURS}")
    if task_of(model, pipeline) == "mixed":
        from wafer.apps.demo.mixed import build_mixed_app, load_mixed_assets

        for option, value in (("--index", index), ("--novelty", novelty)):
            if value is not None:
                raise UsageError(f"{option}: the mixed-type pipeline has no embedding index")
        given = {
            "model": model,
            "calibration": calibration,
            "thresholds": thresholds,
            "evaluate_metrics": evaluate_metrics,
            "calibrate_metrics": calibrate_metrics,
            "predictions": predictions,
            "ingested": ingested,
        }
        mixed = load_mixed_assets(pipeline, given, device, max_side)
        for note in mixed.notes:
            print(f"warning: stale metrics: {note}")
        print(f"demo: serving {mixed.paths['model']} on http://{host}:{port} (Ctrl-C to stop)")
        launch(build_mixed_app(mixed), host, port, block=True)
        return
    assets = load_assets(
        model,
        calibration,
        thresholds,
        evaluate_metrics,
        calibrate_metrics,
        predictions,
        ingested,
        device,
        max_side,
        index,
        novelty,
        neighbours,
        repo=pipeline,
    )
    for note in assets.notes:
        print(f"warning: stale metrics: {note}")
    if assets.novelty_note:
        print(f"warning: {assets.novelty_note}")
    print(
        f"demo: serving {assets.predictor.paths['model']} on http://{host}:{port} (Ctrl-C to stop)"
    )
    launch(build_app(assets), host, port, block=True)


def cli() -> None:
    """``python -m wafer.apps.demo``: :func:`main` with typer's options."""
    import typer

    app = typer.Typer(add_completion=False)
    app.command(help=main.__doc__)(one_line_errors(main))
    app()
