"""`fdd store`: check the teacher's response store, and repair a damaged one keeping every readable reply."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fdd_cli.errors import fail, user_errors
from fdd_cli.options import ConfigOpt, SetOpt, load

store_app = typer.Typer(help="The teacher's response store (every reply bought): check and repair.",
                        no_args_is_help=True)
PathArg = Annotated[Optional[Path], typer.Argument(help="The store file (default: teacher.cache_path of the config).")]


def _path(path: Path | None, config, set_) -> Path:
    return (path or Path(load(config, set_).teacher.cache_path)).expanduser()


@store_app.command("check")
@user_errors
def store_check(path: PathArg = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Say whether the store is intact and how many replies can be read from it (exit 1 when damaged)."""
    from fdd_core.teacher.store_repair import check_store

    path = _path(path, config, set_)
    try:
        result = check_store(path)
    except FileNotFoundError as e:
        fail(str(e))
    if result.ok:
        typer.echo(f"{path}: intact, {result.readable} replies")
        return
    typer.echo(f"{path}: damaged ({'; '.join(result.problems)}); {result.readable} replies can be read: "
               f"`fdd store repair {path}` keeps them in a new store")
    raise typer.Exit(1)


@store_app.command("repair")
@user_errors
def store_repair(path: PathArg = None, config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Rebuild the store from every reply that can be read; the damaged file is kept as PATH.damaged-<time>.
    Stop the runs using the store first."""
    from fdd_core.teacher.store_repair import check_store, repair_store

    path = _path(path, config, set_)
    try:
        before = check_store(path)
    except FileNotFoundError as e:
        fail(str(e))
    if before.ok:
        typer.echo(f"{path}: intact, {before.readable} replies; nothing to repair")
        return
    kept, damaged = repair_store(path)
    typer.echo(f"{path}: rebuilt with {kept} readable replies; the damaged file is kept as {damaged}")
