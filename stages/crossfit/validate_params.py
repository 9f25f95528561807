"""Stage `validate_params` of the cross-fitting pipeline (``pipelines/crossfit``): every value
of its own params.yaml (``crossfit``, ``ensemble``) against its rule table
(wafer.config.crossfit.CROSSFIT_SECTIONS). The recipe it reads from the root params.yaml is
checked by the root pipeline's own validate_params, which ran before the root's data existed.
First stage: a bad value stops `dvc repro` here, before DVC deletes any other stage's outputs.
The marker's content is constant."""

from pathlib import Path

import typer

from wafer.config.crossfit import CROSSFIT_SECTIONS
from wafer.config.params import load_params, validate_all
from wafer.core.errors import one_line_errors
from wafer.core.io import write_text

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    out: Path = typer.Option(..., "--out"),
) -> None:
    validate_all(load_params(params), CROSSFIT_SECTIONS)
    write_text(out, "ok\n")
    print(f"validate_params: {params} is valid")


if __name__ == "__main__":
    app()
