"""A paid teacher under a budget, the way a user runs it: `fdd run` with a priced model name (the offline
teacher behind `fdd teacher serve`, reached as openai/gpt-4o-mini through teacher.api_base, its replies priced
by litellm's map), three feedback rounds, one budget for the whole run, also across a kill and a resume."""

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from fdd_core.config_files import load_config
from fdd_core.teacher.forecast import forecast

from .conftest import FDD, REPO

pytestmark = [pytest.mark.slow, pytest.mark.robustness]
CONCURRENCY = 4


def args(tmp_path: Path, api_base: str, name: str, *extra: str) -> list[str]:
    sets = [
        f"run.runs_dir={tmp_path / 'runs'}", f"run.name={name}", "run.rounds=3",
        "data.n_seed=30", "data.n_synthetic_test=20", "teacher.k_solutions=2",
        "teacher.model=openai/gpt-4o-mini", f"teacher.api_base={api_base}", f"teacher.concurrency={CONCURRENCY}",
        f"teacher.cache_path={tmp_path / (name + '.sqlite')}", "training.max_steps=15", "training.batch_size=16",
        *extra,
    ]
    return ["run", *[arg for s in sets for arg in ("--set", s)]]


def env(tmp_path: Path) -> dict:
    return {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "OMP_NUM_THREADS": "1"}


def fdd_run(tmp_path: Path, run_args: list[str]) -> dict:
    done = subprocess.run([FDD, *run_args], cwd=REPO, env=env(tmp_path), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    name = next(a.split("=", 1)[1] for a in run_args if a.startswith("run.name="))
    return json.loads((tmp_path / "runs" / name / "report.json").read_text())


def bought(store: Path) -> tuple[int, float, float]:
    """(replies, their total cost, the dearest one) as the response store recorded them bought."""
    with sqlite3.connect(store) as db:
        rows = [cost for (cost,) in db.execute("SELECT cost_usd FROM replies")]
    assert rows and all(cost is not None for cost in rows)  # gpt-4o-mini is priced
    return len(rows), sum(rows), max(rows)


def report_spend(report: dict) -> tuple[int, float]:
    return report["totals"]["teacher"]["requests"], report["totals"]["teacher"]["cost_usd"]


def test_one_budget_holds_for_the_whole_run_also_after_a_kill(tmp_path, teacher_server):
    api_base, _ = teacher_server("--error-rate", "0.1")
    free = fdd_run(tmp_path, args(tmp_path, api_base, "free"))
    requests, cost, _ = bought(tmp_path / "free.sqlite")
    # the report counts what the store recorded as bought: no reply lost from the accounting
    assert report_spend(free)[0] == requests and report_spend(free)[1] == pytest.approx(cost)
    assert len(free["rounds"]) == 4 and requests > 200
    # the forecast `fdd run --dry-run` prints is an upper bound of what the run bought
    bound = forecast(load_config("demo", args(tmp_path, api_base, "free")[2::2])).total
    assert requests <= bound.max_requests and cost <= bound.max_cost_usd, (requests, cost, bound)

    # half the unconstrained cost: the run stops buying once it is spent, whatever the stage or round
    cap = round(cost / 2, 6)
    capped = fdd_run(tmp_path, args(tmp_path, api_base, "capped", f"budget.max_usd={cap}"))
    n, spent, dearest = bought(tmp_path / "capped.sqlite")
    assert cap / 2 < spent <= cap + CONCURRENCY * dearest, (spent, cap)
    assert report_spend(capped) == (n, pytest.approx(spent))
    assert sum(r["teacher"]["requests"] for r in capped["rounds"]) == n

    # the same budget, killed in the middle of round 1 and resumed: the resumed run counts what it bought before
    run_args = args(tmp_path, api_base, "killed", f"budget.max_usd={cap}")
    child = subprocess.Popen([FDD, *run_args], cwd=REPO, env=env(tmp_path), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    marker = tmp_path / "runs" / "killed" / "rounds" / "r1" / "student" / "MANIFEST.json"
    deadline = time.monotonic() + 600
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "round 1 never trained"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    before_resume = bought(tmp_path / "killed.sqlite")[0]
    resumed = fdd_run(tmp_path, run_args)
    n, spent, dearest = bought(tmp_path / "killed.sqlite")
    assert n >= before_resume and spent <= cap + CONCURRENCY * dearest, (spent, cap)
    assert report_spend(resumed) == (n, pytest.approx(spent))


def test_a_request_budget_holds_for_the_whole_run(tmp_path, teacher_server):
    api_base, _ = teacher_server("--error-rate", "0.1")
    report = fdd_run(tmp_path, args(tmp_path, api_base, "requests", "budget.max_requests=150"))
    n, _, _ = bought(tmp_path / "requests.sqlite")
    assert n == 150 == report_spend(report)[0]  # exact: requests in flight hold a reservation
    dropped = [json.loads(line)["reason"] for path in (tmp_path / "runs" / "requests").rglob("decisions.jsonl")
               for line in path.read_text().splitlines()]
    assert "budget" in dropped  # rows not sent because of the budget say so
