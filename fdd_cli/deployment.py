"""`fdd deployment run`: a flow run of a deployment on the Prefect server, with `--set` overrides as in `fdd run`.

Prefect itself merges run parameters over a deployment's only at the top level, where the one key is `cfg`
(a partial `cfg` replaces the whole config). This command reads the deployment's `cfg` from the server,
applies each dotted override to it (the parser and checks of `fdd run --set`), and creates the flow run with
the whole merged config, so every key not overridden keeps the deployment's value.
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from fdd_cli.errors import fail, user_errors
from fdd_cli.options import SetOpt

deployment_app = typer.Typer(help="Prefect deployments of the fdd flow, on the server at PREFECT_API_URL.",
                             no_args_is_help=True)
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@deployment_app.command("run")
@user_errors
def deployment_run(
    name: Annotated[str, typer.Argument(help="The deployment, FLOW/DEPLOYMENT, e.g. fdd/demo.")],
    set_: SetOpt = None,
    watch: Annotated[bool, typer.Option("--watch", help="Wait for the run's end; exit 1 unless it completed.")] = False,
    timeout: Annotated[
        Optional[float], typer.Option(help="With --watch: stop waiting after this many seconds (exit 1).")
    ] = None,
) -> None:
    """Create a flow run of deployment NAME: its parameters with the --set overrides merged in.

    Bad overrides (unknown key, bad value) are one error line before any run is created. Prints the run's
    name, ID and URL; with --watch, each state the run enters and, at the end, its state message.
    """
    from fdd_core.config_files import apply_overrides
    from fdd_core.run_data import check_run_values

    with _client() as client:
        deployment = _read_deployment(client, name)
        base = (deployment.parameters or {}).get("cfg") or {}
        cfg = apply_overrides(base, set_ or [], f"deployment {name}")
        check_run_values(cfg)
        run = _create_run(client, deployment.id, {"cfg": cfg.model_dump(mode="json")})
        typer.echo(f"created flow run {run.name!r} of {name} (ID {run.id}), run directory "
                   f"{cfg.run.runs_dir}/{cfg.run.name} on the worker")
        url = _url(run)
        if url:
            typer.echo(f"URL: {url}")
        if not watch:
            return
        state = _watch(client, run.id, timeout)
    if state.type.value != "COMPLETED":
        raise typer.Exit(1)


def _client():
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        fail("PREFECT_API_URL is not set: point it at your server, e.g. "
             "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    return get_client(sync_client=True)


def _read_deployment(client, name: str):
    from prefect.exceptions import ObjectNotFound

    if name.count("/") != 1:
        fail(f"deployment {name!r}: expected FLOW/DEPLOYMENT, e.g. fdd/demo")
    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:
        fail(f"deployment {name!r} not found on {client.api_url} (`prefect deployment ls` lists them)")
    except Exception as e:  # no server there: one line, not a traceback
        fail(f"cannot reach the Prefect server at {client.api_url}: {type(e).__name__}: {e}")


def _create_run(client, deployment_id, parameters: dict):
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        return client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    except PrefectHTTPStatusError as e:  # the server's own check of the parameter schema
        detail = e.response.json().get("detail", e.response.text) if e.response is not None else str(e)
        fail(f"the server refused the run: {detail}")


def _url(run) -> str | None:
    from prefect.utilities.urls import url_for

    try:
        return url_for(run)
    except Exception:  # no UI URL configured: the ID is enough
        return None


def _watch(client, run_id, timeout: float | None):
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = None
    while True:
        run = client.read_flow_run(run_id)
        state = run.state
        if state is not None and state.name != seen:
            seen = state.name
            typer.echo(f"state: {state.name}")
        if state is not None and state.type.value in FINAL:
            if state.message:
                typer.echo(f"{state.name}: {state.message}")
            return state
        if deadline is not None and time.monotonic() > deadline:
            fail(f"--timeout: the run was still {seen} after {timeout:g} s (it goes on; see the UI)", code=1)
        time.sleep(2)
