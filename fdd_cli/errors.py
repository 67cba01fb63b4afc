"""Every user mistake ends as one `error:` line on stderr and exit status 2."""

from __future__ import annotations

import functools
import sys

import typer


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(command):
    """Turn the errors a user can cause (config, input files) into one line and exit 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from fdd_core.benchmarks import BenchmarkError
        from fdd_core.config_files import ConfigError
        from fdd_core.store import DataFileError

        try:
            return command(*args, **kwargs)
        except (ConfigError, DataFileError, BenchmarkError, _teacher_config_error()) as e:
            fail(str(e))

    return wrapper


class _NotRaised(Exception):
    """Stands for an error class whose module was never imported (so nothing can have raised it)."""


def _teacher_config_error() -> type[Exception]:
    """TeacherConfigError (a teacher setting that makes the run impossible: a missing API key, an unpriced
    model with budget.max_usd), looked up only once an error is being matched: importing the teacher client
    imports litellm (seconds), which commands that never reach the teacher should not pay for."""
    client = sys.modules.get("fdd_core.teacher.client")
    return getattr(client, "TeacherConfigError", _NotRaised)
