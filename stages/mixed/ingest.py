"""Stage `ingest` of the mixed-type pipeline: read `ingest.input` (MixedWM38's layout: the real
../shared/data/mixedwm38/mixedwm38-subset.npz or the synthesize stage's output), check every row
(wafer.mixed.data.read_mixed: invalid rows dropped and counted, or the first one fails with
file, row and reason) and write the kept rows (wafer.mixed.data.MixedSet) and their counts."""

from pathlib import Path

import typer

from wafer.config.mixed import MixedIngestParams
from wafer.config.params import load_section
from wafer.core.errors import one_line_errors
from wafer.core.io import sha256_file, write_json
from wafer.mixed.data import read_mixed
from wafer.mixed.labels import MIXED_LABELS

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
) -> None:
    p = load_section(params, MixedIngestParams)
    data, report = read_mixed(p.input, p.on_invalid)
    data.save(out)
    per_label = dict(zip(MIXED_LABELS, (int(v) for v in data.labels.sum(axis=0)), strict=True))
    write_json(
        metrics,
        {
            "input": Path(p.input).name,
            "input_sha256": sha256_file(p.input),
            "side": int(data.maps.shape[-1]),
            "pattern_codes": int(len(set(data.codes.tolist()))),
            "normal": int((data.labels.sum(axis=1) == 0).sum()),
            "per_label": per_label,
            "masks": data.has_masks,
        }
        | report,
    )
    print(f"ingest: {report['rows_kept']} of {report['rows_read']} maps kept from {p.input}")


if __name__ == "__main__":
    app()
