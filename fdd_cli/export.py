"""`fdd export RUN`: a finished run's student and distillation set as Hub-ready folders, pushed with one flag."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fdd_cli.errors import fail, user_errors
from fdd_cli.options import ConfigOpt, SetOpt, load


@user_errors
def export(
    run: Annotated[str, typer.Argument(help="The run: its folder, or its name inside run.runs_dir.")],
    out: Annotated[
        Optional[Path], typer.Option(help="Folder to write model/ and dataset/ into (default: RUN/export).")
    ] = None,
    round_: Annotated[
        str, typer.Option("--round", help="best (highest accuracy on the primary benchmark), last, or a round number.")
    ] = "best",
    push_to_hub: Annotated[
        Optional[str],
        typer.Option(help="Also push: the model to this Hub repo (owner/name), the dataset to owner/name-data. "
                          "The token comes from HF_TOKEN or `hf auth login`."),
    ] = None,
    private: Annotated[bool, typer.Option(help="Create the Hub repos private.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write a run's student (model weights, tokenizer, model card) and its distillation set (Parquet with lineage
    columns, dataset card), ready for `transformers`, `datasets` and the Hugging Face Hub."""
    from fdd_core.export import ExportError, export_run, push_to_hub as push

    run_dir = Path(run).expanduser()
    if not run_dir.is_dir():
        run_dir = Path(load(config, set_).run.runs_dir).expanduser() / run
    if not run_dir.is_dir():
        fail(f"run not found: {run} is not a folder, nor a run in {run_dir.parent}")
    try:
        done = export_run(run_dir, out or run_dir / "export", round_)
    except ExportError as e:
        fail(str(e))
    typer.echo(f"round {done.round}: model -> {done.model_dir}")
    typer.echo(f"{done.rows} rows: dataset -> {done.dataset_dir}")
    if push_to_hub:
        if push_to_hub.count("/") != 1:
            fail(f"--push-to-hub: expected owner/name, got {push_to_hub!r}")
        try:
            urls = push(done, push_to_hub, private=private)
        except Exception as e:  # auth, network, a repo of another owner: one line, the folders stay written
            fail(f"--push-to-hub {push_to_hub}: {type(e).__name__}: {' '.join(str(e).split())[:300]} (the folders "
                 f"are written; push them again with the same command)")
        for kind, url in urls.items():
            typer.echo(f"pushed the {kind}: {url}")
