"""Outages fail loudly and are not cached (issue 14): a teacher answering 401 stops the run at once with the status
and the provider's message; one failing most requests fails its stage (teacher.max_failed_share); once the teacher
is back, the same command resumes and buys only what is missing."""

import json

import pytest

from tests.prefect_api import free_port

from .conftest import read_log
from .runs import fdd, last_error, serve, small_run, stop

pytestmark = [pytest.mark.slow, pytest.mark.robustness]


def test_an_outage_stops_the_run_loudly_and_the_same_command_resumes_once_the_teacher_is_back(tmp_path):
    port = free_port()
    args = small_run(tmp_path, f"http://127.0.0.1:{port}/v1", "teacher.max_retries=0")
    run_dir = tmp_path / "runs" / "r"

    server = serve(tmp_path / "401.jsonl", port, "--fail-status", "401")
    try:
        refused = fdd(tmp_path, args)
    finally:
        stop(server)
    # was: a 258-line traceback about "no training examples" that never said 401, and the stage cached as done
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-3000:]
    line = last_error(refused)
    assert "refused a request with HTTP 401" in line and "Incorrect API key provided" in line, refused.stderr[-3000:]
    assert len(read_log(tmp_path / "401.jsonl")) <= 4  # stopped at once: the requests in flight (concurrency 4)

    server = serve(tmp_path / "500.jsonl", port, "--fail-500", "0.8", "--error-rate", "0.1")
    try:
        failing = fdd(tmp_path, args)
    finally:
        stop(server)
    assert failing.returncode == 2, failing.stdout[-2000:] + failing.stderr[-3000:]
    assert "more than teacher.max_failed_share=0.5" in last_error(failing), failing.stderr[-3000:]
    bought_while_failing = {(r["messages_sha256"], r["seed"]) for r in read_log(tmp_path / "500.jsonl")
                            if r["status"] == 200}
    assert bought_while_failing and not (run_dir / "report.json").exists()

    server = serve(tmp_path / "ok.jsonl", port, "--error-rate", "0.1")
    try:
        resumed = fdd(tmp_path, args)
    finally:
        stop(server)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    bought_now = [(r["messages_sha256"], r["seed"]) for r in read_log(tmp_path / "ok.jsonl") if r["status"] == 200]
    # resumed, not cached: it bought what was missing, and nothing it had stored while the teacher was failing
    assert bought_now and not set(bought_now) & bought_while_failing
    assert len(bought_now) + len(bought_while_failing) >= 59
    report = json.loads((run_dir / "report.json").read_text())
    assert report["rounds"][0]["teacher"]["requests"] == len(bought_now) + len(bought_while_failing)
