"""Never paid twice across processes (issue 14): a second live `fdd run` of the same run is refused with one line
naming the holder's pid; after a SIGKILL the re-bought requests are at most those in flight and Prefect's temporary
server does not outlive its run; two processes sharing one store buy each reply once (requests in flight are
claimed in the store). Real processes, the offline teacher over HTTP and its request log (what was bought)."""

import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter

import pytest

from .conftest import FDD, REPO, read_log
from .runs import fdd, run_env, small_run

pytestmark = [pytest.mark.slow, pytest.mark.robustness]
SERVER = "prefect.server.api.server:create_app"


def replies(store) -> int:
    try:
        with sqlite3.connect(store) as db:
            return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_one_live_run_per_run_directory_and_a_killed_run_leaves_nothing_running(tmp_path, teacher_server):
    psutil = pytest.importorskip("psutil")
    api_base, log = teacher_server("--latency-ms", "400")
    args = small_run(tmp_path, api_base)
    store, lock = tmp_path / "teacher.sqlite", tmp_path / "runs" / "r" / "run.lock"
    first = subprocess.Popen([FDD, *args], cwd=REPO, env=run_env(tmp_path), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while replies(store) < 8 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None and replies(store) >= 8, "the first run never bought anything"
        assert lock.read_text().strip() == str(first.pid)

        second = fdd(tmp_path, args, timeout=120)
        # was: both ran everything and bought 427 of 693 replies twice
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        assert second.stderr.strip() == (f"error: run {tmp_path / 'runs' / 'r'} is already running (pid {first.pid}): "
                                         "wait for it to end or stop it; two runs of one run directory would buy "
                                         "the same teacher replies twice")

        servers = [p for p in psutil.Process(first.pid).children(recursive=True) if SERVER in " ".join(p.cmdline())]
        assert servers, "no temporary Prefect server seen"
        first.send_signal(signal.SIGKILL)  # the process alone, as `kill -9 PID` does
        first.wait(timeout=30)
        # was: the temporary server (~200 MB) went on running after its run was killed
        _, alive = psutil.wait_procs(servers, timeout=30)
        assert not alive, [" ".join(p.cmdline())[:120] for p in alive]
    finally:
        if first.poll() is None:
            first.kill()
    before = replies(store)
    resumed = fdd(tmp_path, args)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    bought = Counter((r["messages_sha256"], r["seed"]) for r in read_log(log) if r["status"] == 200)
    rebought = sum(n - 1 for n in bought.values())
    assert rebought <= 4, (rebought, before)  # at most the requests in flight at the kill (concurrency 4)


def test_two_processes_sharing_a_store_buy_each_reply_once(tmp_path, teacher_server):
    api_base, log = teacher_server("--latency-ms", "200")
    sets = ["teacher.model=openai/fdd-offline", f"teacher.api_base={api_base}", "teacher.concurrency=4",
            f"teacher.cache_path={tmp_path / 'shared.sqlite'}", "teacher.k_solutions=2"]
    procs = [subprocess.Popen([FDD, "teacher", "solve", "gsm8k-train", "--limit", "20", "--out-dir",
                               str(tmp_path / f"out{i}"), *[a for s in sets for a in ("--set", s)]],
                              cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    bought = Counter((r["messages_sha256"], r["seed"]) for r in read_log(log) if r["status"] == 200)
    # was: two runs sharing one store bought 189 of 240 replies twice
    assert len(bought) == 40 and max(bought.values()) == 1, bought.most_common(3)
    assert all("40 candidates" in out for out in outputs), outputs
