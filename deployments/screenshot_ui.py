"""Screenshots of what the Prefect UI shows of an FDD run: a running run's training progress artifact and a
finished run's report artifact, taken with headless Chromium against a real `prefect server start`.

    python deployments/screenshot_ui.py --out /tmp/screens [--set training.max_steps=300 ...]

Starts a server (its own PREFECT_HOME in a temporary folder, a free 127.0.0.1 port, the UI on), runs `fdd run`
on a small profile against it, and writes progress-running.png (taken while training is between 0 and 100%) and
report.png (once the run finished). Needs `chromium` on PATH (Debian: `apt-get install -y chromium`). Everything
it starts is stopped by PID at the end; the temporary folder is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMALL = ["run.name=screens", "run.rounds=1", "data.n_seed=40", "data.n_synthetic_test=20", "data.eval_limit=20",
         "training.max_steps=300", "training.batch_size=16", "inference.max_new_tokens=96"]


def post(url: str, body: dict) -> list:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=5) as r:
            return json.loads(r.read()) is True
    except (OSError, ValueError):
        return False


def wait(what: str, check, timeout: float, procs: list[subprocess.Popen]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (result := check()):
            return result
        for p in procs:
            if p.poll() is not None and not result:
                raise SystemExit(f"{what}: {p.args[0]} exited with {p.returncode}")
        time.sleep(0.5)
    raise SystemExit(f"{what}: not within {timeout:.0f} s")


def screenshot(chromium: str, url: str, path: Path, size: str) -> None:
    # --virtual-time-budget lets the single-page app fetch and render before the picture is taken
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size}", "--virtual-time-budget=15000", f"--screenshot={path}", url],
                   check=True, capture_output=True, timeout=120)
    print(f"{path}: {url}")


def stop(proc: subprocess.Popen) -> None:
    for _ in range(2):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/screens"), help="folder for the PNGs")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="more `fdd run --set` overrides")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="fdd-screens-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": api}  # the browser asks the API at this address
    procs: list[subprocess.Popen] = []
    try:
        with (tmp / "server.log").open("wb") as log:
            procs.append(subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                           str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp))
        wait("server health", lambda: healthy(api), 120, procs)
        sets = [*SMALL, f"run.runs_dir={tmp / 'runs'}", f"teacher.cache_path={tmp / 'teacher.sqlite'}", *args.sets]
        with (tmp / "run.log").open("wb") as log:
            procs.append(subprocess.Popen([str(BIN / "fdd"), "run", *(a for kv in sets for a in ("--set", kv))],
                                          env=env | {"PREFECT_API_URL": api}, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=tmp))

        def training_under_way():
            found = post(f"{api}/artifacts/filter", {"artifacts": {"key": {"any_": ["progress-train"]}}})
            return next((a for a in found if 5 <= a["data"] < 90), None)

        artifact = wait("training between 5% and 90%", training_under_way, 900, procs[1:])
        screenshot(args.chromium, f"{ui}/artifacts/artifact/{artifact['id']}", args.out / "progress-running.png",
                   "1280,700")
        if artifact["task_run_id"]:
            screenshot(args.chromium, f"{ui}/runs/task-run/{artifact['task_run_id']}?tab=Artifacts",
                       args.out / "progress-running-task-run.png", "1280,900")
        if procs[1].wait(timeout=1800) != 0:
            raise SystemExit(f"fdd run failed:\n{(tmp / 'run.log').read_text()[-3000:]}")
        report = post(f"{api}/artifacts/filter", {"artifacts": {"key": {"any_": ["fdd-report"]}}})[0]
        screenshot(args.chromium, f"{ui}/artifacts/artifact/{report['id']}", args.out / "report.png", "1400,1000")
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
