"""Helpers of the robustness tests that drive `fdd run` as a user does: a small run's arguments, its environment,
and the offline teacher served on a port the test picks (so a "fixed" teacher comes back at the same address)."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

from .conftest import FDD, REPO


def small_run(tmp_path: Path, api_base: str, *extra: str, name: str = "r", store: Path | None = None) -> list[str]:
    """`fdd run` arguments of a small run: round 0 only (60 teacher requests), a tiny student, 20 test problems."""
    sets = [
        f"run.runs_dir={tmp_path / 'runs'}", f"run.name={name}", "run.rounds=0",
        "data.n_seed=30", "data.n_synthetic_test=20", "teacher.k_solutions=2", "teacher.concurrency=4",
        "teacher.model=openai/fdd-offline", f"teacher.api_base={api_base}",
        f"teacher.cache_path={store or tmp_path / 'teacher.sqlite'}", "training.max_steps=10",
        "training.batch_size=16", "inference.max_new_tokens=96", *extra,
    ]
    return ["run", *[arg for s in sets for arg in ("--set", s)]]


def run_env(tmp_path: Path) -> dict:
    return {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "OMP_NUM_THREADS": "1"}


def fdd(tmp_path: Path, args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([FDD, *args], cwd=REPO, env=run_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout)


def last_error(done: subprocess.CompletedProcess) -> str:
    """The `error:` line `fdd` ends with (user_errors), or '' when there is none."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    return lines[-1] if lines else ""


def serve(log: Path, port: int, *flags: str) -> subprocess.Popen:
    """`fdd teacher serve` on 127.0.0.1:port, returned once it accepts requests (stop it with stop())."""
    proc = subprocess.Popen([FDD, "teacher", "serve", "--host", "127.0.0.1", "--port", str(port), "--log", str(log),
                             *flags], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, seen = time.monotonic() + 60, []
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            seen.append(proc.stdout.readline())
            if "serving on http://" in seen[-1]:
                return proc
    stop(proc)
    raise RuntimeError(f"teacher server did not start: {''.join(seen)[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
