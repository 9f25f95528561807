"""The parts of the demo's page that the 9-class page (:mod:`wafer.apps.demo.app`) and the
mixed-type page (:mod:`wafer.apps.demo.mixed`) share: gradio's import (:func:`import_gradio`),
theme and CSS (:func:`style`), map thumbnails and the left column of examples and upload
(:func:`input_column`). Both pages import it; it imports neither, and not gradio at import."""

from __future__ import annotations

import os

import numpy as np

GRADIO_MISSING = "the demo needs gradio: pip install -e '.[demo]' (or pip install 'gradio>=4.44')"
MAP_RGB = np.array([[242, 242, 242], [166, 189, 219], [215, 48, 31]], dtype=np.uint8)
CSS = (
    "#prediction h3{margin-top:0} #warning p{color:#b45309;font-weight:600} "
    "#novelty.novel{border:3px solid #b91c1c;background:#fef2f2;border-radius:8px;"
    "padding:10px 14px} #novelty.novel h3{color:#b91c1c;margin:0 0 4px} "
    "#novelty.novel p{color:#7f1d1d} #novelty.known p{color:#4b5563} "
    "#neighbours .caption-label{white-space:normal;max-width:100%;opacity:.85}"
)


def map_thumbnail(m: np.ndarray, size: int = 160):
    """RGB PIL image of a die map (grey outside, blue pass, red fail), nearest-upscaled."""
    from PIL import Image

    h, w = m.shape
    scale = max(1, size // max(h, w))
    return Image.fromarray(MAP_RGB[m]).resize((w * scale, h * scale), Image.NEAREST)


def import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home
    try:
        import gradio as gr
    except ImportError:
        raise SystemExit(f"error: {GRADIO_MISSING}") from None
    return gr


def style(gr) -> tuple[dict, dict]:
    """(Blocks kwargs, launch kwargs) for theme and CSS: gradio >= 6 takes them in launch(),
    older versions in Blocks(). System fonts: the page loads nothing from the internet."""
    import inspect

    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )
    kw = {"theme": theme, "css": CSS}
    if "theme" in inspect.signature(gr.Blocks.launch).parameters:
        return {}, kw
    return kw, {}


def input_column(gr, examples: list[tuple[np.ndarray, str]], which: str, columns: int):
    """The left column of both demos: the clickable test examples (map, caption) and the
    upload box. Call inside the column's ``with`` block; returns (gallery, upload)."""
    gallery = gr.Gallery(
        value=[(map_thumbnail(m), caption) for m, caption in examples],
        label=f"Test examples, {which}: click one",
        columns=columns,
        height=540,
        allow_preview=False,
        interactive=False,
        format="png",
        object_fit="contain",
        elem_id="examples",
    )
    upload = gr.File(
        label="…or upload a wafer map: PNG (8-bit grey: 0 outside, 128 pass, "
        "255 fail; one pixel per die) or .npy",
        file_types=[".png", ".npy"],
        type="filepath",
        elem_id="upload",
    )
    return gallery, upload
