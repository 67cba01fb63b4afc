"""`fdd run`'s temporary Prefect server, started as soon as the run's checks pass, so that it starts while the run
imports Prefect, the flows and their libraries instead of after them.

With no Prefect API configured (no PREFECT_API_URL, in the environment or the active profile) Prefect would start the
same temporary server itself (prefect.server.api.server.SubprocessASGIServer: uvicorn on a free 127.0.0.1 port, no
UI, its database in PREFECT_HOME), but only when the flow is first called, after every import, and only after
importing Prefect's whole server package into the run's process. Here the run starts it with the command line Prefect
uses (fdd_core.watchdog finds it by that line), points PREFECT_API_URL at it and waits for its /health just before
the flow. Prefect's own runs, artifacts and logs go to it as before, and it stops when the run ends.

A run on its own temporary server is the only client that server ever has: no tag concurrency limit can exist there,
so the stages skip asking for `gpu` slots (tasks.tags).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

from fdd_core.watchdog import SERVER_MARK
from tasks.tags import OWN_SERVER_ENV

# What SubprocessASGIServer sets for its server: no UI (the temporary server is gone when the run ends; the database
# stays in PREFECT_HOME for `prefect server start`), and the server's ephemeral mode (no scheduler services)
SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


class TemporaryServer:
    """A started server process and its API URL; ready() waits for its /health."""

    def __init__(self, timeout_s: float) -> None:
        from prefect.settings import get_current_settings

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.timeout_s = timeout_s
        settings = get_current_settings().to_environment_variables(exclude_unset=True)
        prefect_dir = Path(find_spec("prefect").origin).parent  # type: ignore[arg-type]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory", SERVER_MARK,
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env={**os.environ, **SERVER_ENV, **settings}, stdin=subprocess.DEVNULL,
        )
        print(f"Prefect: this run's temporary server on {self.api_url} (no UI; set PREFECT_API_URL to use a "
              "server of yours)", file=sys.stderr, flush=True)

    def ready(self) -> float:
        """Wait until the server answers /health; the seconds since it was started."""
        import httpx

        deadline = self.started + self.timeout_s
        with httpx.Client() as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"Prefect's temporary server exited with code {self.proc.returncode} before "
                                       "it answered (its errors are above)")
                try:
                    if client.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                        return time.monotonic() - self.started
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Prefect's temporary server did not answer within {self.timeout_s:g} s "
                                       "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s: what Prefect does to its temporary server."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_temporary_server() -> TemporaryServer | None:
    """Start the run's temporary server when Prefect would start one (no API configured, ephemeral mode allowed) and
    point this process's Prefect settings at it; None (and nothing started) otherwise. It stops at exit, after
    Prefect's log and event workers have sent what they hold (they drain at thread shutdown, before atexit)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None
    server = TemporaryServer(float(settings.server.ephemeral.startup_timeout_seconds))
    atexit.register(server.stop)
    _point_prefect_at(server.api_url)
    return server


def _point_prefect_at(api_url: str) -> None:
    """PREFECT_API_URL for this process (Prefect reads its settings once: refreshed here), the mark that this API is
    the run's own server, and no UI URL (Prefect would infer one from the API URL, as for any server)."""
    from prefect.context import refresh_global_settings_context

    os.environ["PREFECT_API_URL"] = api_url
    os.environ[OWN_SERVER_ENV] = api_url
    os.environ.setdefault("PREFECT_UI_URL", "")  # no "View at" link to a server that serves no UI
    refresh_global_settings_context()
