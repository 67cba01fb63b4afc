"""Real Prefect servers for the deployments tier: `prefect server start` on a free 127.0.0.1 port with its own
PREFECT_HOME, on SQLite or on a throwaway PostgreSQL cluster (Debian's `postgresql` binaries, started here with
initdb/pg_ctl as a non-root user on a free port in a temporary folder), and real `prefect worker start` processes.

Every process started here is stopped by PID (SIGTERM, then SIGKILL as a last resort) and checked gone.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.prefect_api import api_json, free_port, healthy, tail
from tests.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = shutil.which("prefect", path=str(BIN)) or "prefect"
FDD = shutil.which("fdd", path=str(BIN)) or "fdd"


class Processes:
    """start(log, argv, env, cwd) -> Popen writing to `log`; stop_all() ends them (newest first) and their children."""

    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def start(self, log: Path, argv: list[str], env: dict, cwd: Path) -> subprocess.Popen:
        with log.open("wb") as out:
            proc = subprocess.Popen([str(a) for a in argv], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.started.append((proc, log))
        return proc

    def logs(self) -> list[Path]:
        return [log for _, log in self.started]

    def stop(self, proc: subprocess.Popen) -> list[int]:
        """SIGTERM by PID (a Prefect CLI turns the first into a graceful stop; the second ends it); the PIDs of
        its children still running 5 s after it ended are returned (and terminated)."""
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        return stop_process(proc, family)

    def stop_all(self) -> None:
        leftovers = []
        for proc, _ in reversed(self.started):
            leftovers += self.stop(proc)
        assert not leftovers, f"child processes outlived their parent: {leftovers}"


def wait_for(what: str, check, timeout: float, procs: Processes, interval: float = 1.0):
    """check() until it returns something true; fails with the logs when a process exits or time runs out.
    A check whose read of the server timed out counts as not yet (the server answered late under load, which the
    runs' own clients retry); the failure message says how many did."""
    deadline, late = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        for p, _ in procs.started:
            if p.poll() is not None and p.returncode != 0 and p.args[1:3] in (["server", "start"], ["worker", "start"]):
                pytest.fail(f"{what}: {p.args[1:3]} exited with {p.returncode}:\n"
                            + "\n".join(tail(log) for log in procs.logs()))
        try:
            result = check()
        except TimeoutError:
            late += 1
            continue
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s ({late} reads of the server timed out):\n"
                + "\n".join(tail(log) for log in procs.logs()))


@dataclasses.dataclass
class Server:
    backend: str
    api: str
    env: dict  # a client's environment: PREFECT_API_URL set, PREFECT_HOME of its own
    root: Path
    procs: Processes

    def cli(self, *args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None,
            program: str = PREFECT) -> subprocess.CompletedProcess:
        return subprocess.run([program, *args], env=env or self.env, cwd=cwd or self.root, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def get(self, path: str, body: dict | None = None):
        return api_json(f"{self.api}{path}", body)

    def flow_run(self, run_id: str) -> dict:
        return self.get(f"/flow_runs/{run_id}")

    def wait_final(self, run_id: str, timeout: float) -> dict:
        def final():
            run = self.flow_run(run_id)
            return run if run["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} else None

        return wait_for(f"flow run {run_id} to finish", final, timeout, self.procs, interval=2)


def start_server(procs: Processes, root: Path, backend: str, db_url: str | None = None) -> Server:
    """`prefect server start` (no UI; the scheduler looks every 5 s instead of 60) and wait for /api/health."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_CLI_PROMPT": "false",
             "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1",
             "COLUMNS": "1000"}  # rich wraps the CLIs' output at the terminal width
    server_env = base | {"PREFECT_HOME": str(root / "server-home"), "PREFECT_SERVER_UI_ENABLED": "false",
                         "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
                         # as deployments/README.md says: runs' logs reach `prefect deployment run --watch`
                         "PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED": "true",
                         "PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED": "true"}
    if db_url:
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = db_url
    proc = procs.start(root / "server.log", [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                       server_env, root)

    def up():
        if proc.poll() is not None:
            pytest.fail(f"prefect server start exited with {proc.returncode}:\n{tail(root / 'server.log')}")
        return healthy(f"{api}/health")

    wait_for(f"{backend} server /api/health", up, 180, procs)
    env = base | {"PREFECT_HOME": str(root / "client-home"), "PREFECT_API_URL": api}
    return Server(backend, api, env, root, procs)


def copy_repo(dest: Path) -> Path:
    """The checkout as a worker sees it (FDD_REPO), without the venv and git, so runs never write into REPO."""
    skip = shutil.ignore_patterns(".venv", ".git", "runs", "__pycache__", "*.egg-info", ".pytest_cache", "bench-runs")
    shutil.copytree(REPO, dest, ignore=skip, symlinks=True)
    return dest


# ------------------------------------------------------------------------------------------------ PostgreSQL
def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on a free port: its asyncpg URL for Prefect. Binaries absent: a loud skip
    outside CI, a failure in CI (CI=true), where .ci/run installs Debian's postgresql."""
    bindir = _postgres_bin()
    if bindir is None:
        message = "PostgreSQL binaries not found (Debian: apt-get install -y postgresql; .ci/run installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(f"NOT TESTED ON POSTGRESQL: {message}")
    root = Path(tempfile.mkdtemp(prefix="fdd-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: the cluster belongs to the postgres user
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log, port = root / "data", root / "postgres.log", free_port()

    def pg(*argv, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*as_user, *map(str, argv)], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, cwd=root)
        if check and done.returncode != 0:
            pytest.fail(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}\n{tail(log)}")
        return done

    pg(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    pg(bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60",
       "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    try:
        pg(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "prefect")
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        pg(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)
