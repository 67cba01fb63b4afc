"""The options every command shares: a YAML profile (--config) plus --set key=value overrides."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ConfigOpt = Annotated[
    Optional[str], typer.Option("--config", "-c", help="YAML profile: a file, or a name in configs/ (demo, gsm8k).")
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override one config key, e.g. --set teacher.model=gpt-4o-mini (repeatable)."),
]


def load(config: str | None, overrides: list[str] | None):
    """The FDDConfig of --config and --set (fdd_core is imported here, so that --help stays quick)."""
    from fdd_core.config_files import load_config

    return load_config(config, overrides or [])
