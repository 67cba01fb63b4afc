"""Every user mistake ends as one `error:` line on stderr and exit status 2."""

from __future__ import annotations

import functools

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
        except (ConfigError, DataFileError, BenchmarkError) as e:
            fail(str(e))

    return wrapper
