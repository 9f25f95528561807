"""Stage `validate_params`: check every value of params.yaml against wafer.config.params' table
before any other stage runs.

It is the pipeline's first stage (`synthesize` and `ingest` depend on its marker file), so a bad
value (`dvc exp run -S train.loss=foo`) stops `dvc repro` / `dvc exp run` here, with one line
naming the parameter, before DVC deletes any other stage's outputs. The marker's content is the
constant text "ok": a valid change of params does not change it, so nothing downstream reruns
because of this stage.
"""

from pathlib import Path

import typer

from wafer.config.params import load_params, validate_all
from wafer.core.errors import one_line_errors
from wafer.core.io import write_text

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="the params file"),
    out: Path = typer.Option(..., "--out", help="marker written when valid"),
) -> None:
    validate_all(load_params(params))
    write_text(out, "ok\n")
    print(f"validate_params: {params} is valid")


if __name__ == "__main__":
    app()
