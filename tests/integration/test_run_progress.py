"""Runs a user can follow: one `fdd run` of a small two-round profile against a real `prefect server start` (its own
PREFECT_HOME in tmp, a free 127.0.0.1 port), its stdout a pipe as in CI, each line timestamped as it arrives, and
the server's artifacts polled while the run goes.

What a user sees: a progress line at least every 15 s while the student trains; a report artifact whose chart is
inside it (the UI can reach no file of the run); a progress artifact per long stage that moved while the stage ran
and ends at 100%; a log that names the run directory and says what each stage and round did.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.prefect_api import api_json, free_port, healthy
from tests.processes import terminate

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FDD = shutil.which("fdd", path=str(BIN)) or "fdd"
PREFECT = shutil.which("prefect", path=str(BIN)) or "prefect"
MOST_SILENT_S = 15.0  # the longest a reader of a CI log may wait for a line while the student trains
LONG_STAGES = {"progress-generate-solutions", "progress-train", "progress-evaluate", "progress-feedback",
               "progress-generate-variants", "progress-variant-votes"}
PROFILE = {  # two rounds (0: train, evaluate, feedback, variants; 1: train, evaluate), small and quick
    "run.name": "followed", "run.rounds": 1, "data.n_seed": 40, "data.n_synthetic_test": 20, "data.eval_limit": 20,
    "training.max_steps": 400, "training.batch_size": 16, "inference.max_new_tokens": 96,
}  # 400 steps: ~25 s per training on 2 idle cores, long enough that a silent stretch of 15 s would show


@pytest.fixture(scope="module")
def followed_run(tmp_path_factory):
    """The run's stdout lines [(seconds since start, line)], every progress value seen while it ran
    {key: [values]}, and the server's artifacts and log messages once it finished."""
    tmp = tmp_path_factory.mktemp("followed")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    with (tmp / "server.log").open("wb") as log:
        server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  cwd=tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    run = None
    try:
        deadline = time.monotonic() + 120
        while not healthy(f"{api}/health"):
            assert server.poll() is None and time.monotonic() < deadline, (tmp / "server.log").read_text()[-3000:]
            time.sleep(1)
        sets = [*PROFILE.items(), ("run.runs_dir", tmp / "runs"), ("teacher.cache_path", tmp / "teacher.sqlite")]
        argv = [FDD, "run", *(arg for key, value in sets for arg in ("--set", f"{key}={value}"))]
        started = time.monotonic()
        with (tmp / "run.stderr").open("wb") as err:
            run = subprocess.Popen(argv, env=env | {"PREFECT_API_URL": api}, cwd=tmp, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        lines: list[tuple[float, str]] = []
        reader = threading.Thread(target=lambda: lines.extend((time.monotonic() - started, line.rstrip("\n"))
                                                              for line in run.stdout), daemon=True)
        reader.start()
        seen: dict[str, list[float]] = {}
        late = 0  # reads the server answered too late (tests/prefect_api.py): read again
        while run.poll() is None:
            assert time.monotonic() - started < 1500, "fdd run took more than 25 minutes"
            try:
                progress = api_json(f"{api}/artifacts/filter", {"artifacts": {"type": {"any_": ["progress"]}}},
                                    timeout=10)
            except TimeoutError:
                late += 1
                continue
            for a in progress:
                seen.setdefault(a["key"], []).append(a["data"])
            time.sleep(0.5)
        reader.join(timeout=30)
        assert run.returncode == 0, "\n".join(line for _, line in lines)[-3000:] + (tmp / "run.stderr").read_text()[-3000:]
        artifacts = api_json(f"{api}/artifacts/filter", {})
        logs = [row["message"] for row in api_json(f"{api}/logs/filter", {"limit": 200})]
        logs += [row["message"] for row in api_json(f"{api}/logs/filter", {"limit": 200, "offset": 200})]
        yield {"lines": lines, "seen": seen, "late_reads": late, "artifacts": artifacts, "logs": logs,
               "run_dir": tmp / "runs" / "followed"}
    finally:
        if run is not None:
            terminate(run, wait_s=20)
        terminate(server, wait_s=20)


def _training_windows(lines: list[tuple[float, str]]) -> list[list[tuple[float, str]]]:
    """The lines from each training's first progress line to its last (its 'done' line), both included."""
    windows, current = [], None
    for t, line in lines:
        if re.match(r"train: 0/\d+ steps", line) and current is None:
            current = []
        if current is not None:
            current.append((t, line))
            if line.startswith("train: ") and ", done in " in line:
                windows.append(current)
                current = None
    return windows


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fdd_run_in_a_log_prints_progress_at_least_every_15_seconds_while_the_student_trains(followed_run):
    lines = followed_run["lines"]
    windows = _training_windows(lines)
    assert len(windows) == 2, "no training progress in fdd run's output:\n" + "\n".join(line for _, line in lines)
    gaps = [b[0] - a[0] for w in windows for a, b in zip(w, w[1:])]
    longest = max(gaps, default=0.0)
    seconds = [w[-1][0] - w[0][0] for w in windows]
    print(f"training took {', '.join(f'{s:.0f} s' for s in seconds)}; longest silence while training {longest:.1f} s; "
          f"{followed_run['late_reads']} reads of the server timed out")
    assert longest <= MOST_SILENT_S, f"{longest:.1f} s without a line while training"
    for w in windows:
        assert re.match(r"train: 400/400 steps \(100%\), loss [\d.]+, done in ", w[-1][1]), w[-1][1]
        if w[-1][0] - w[0][0] > 12:  # a training this long got its periodic lines, with the loss in them
            assert any(re.match(r"train: \d+/400 steps \(\d+%\), loss [\d.]+, ", line) for _, line in w[1:-1])
    # the other long stages are followed too, and a log gets no terminal codes
    text = "\n".join(line for _, line in lines)
    for stage in ("generate-solutions", "evaluate", "feedback", "generate-variants", "variant-votes"):
        assert re.search(rf"^{stage}: .*, done in ", text, re.M), stage
    assert re.search(r"^generate-solutions: 160/160 teacher requests \(100%\), 160 bought, 0 from the store, "
                     r"spent \$0\.0000, run total \$0\.0000, done in", text, re.M), text
    assert "\x1b[" not in text


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_report_artifact_carries_its_chart_so_the_ui_shows_it_with_no_file_of_the_run(followed_run):
    reports = [a for a in followed_run["artifacts"] if a["key"] == "fdd-report"]
    assert len(reports) == 1 and reports[0]["type"] == "markdown"
    text = reports[0]["data"]
    assert "(accuracy.png)" not in text
    match = re.search(r"!\[accuracy per round\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert match, text[:500]
    assert base64.b64decode(match.group(1)) == (followed_run["run_dir"] / "accuracy.png").read_bytes()
    assert "| round |" in text and f"Run directory: `{followed_run['run_dir']}`" in text


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_each_long_stage_has_a_progress_artifact_that_moved_while_it_ran_and_ends_full(followed_run):
    progress = [a for a in followed_run["artifacts"] if a["type"] == "progress"]
    by_key: dict[str, list[dict]] = {}
    for a in progress:
        by_key.setdefault(a["key"], []).append(a)
    assert set(by_key) == LONG_STAGES
    assert len(by_key["progress-train"]) == len(by_key["progress-evaluate"]) == 2  # one per round
    for a in progress:
        assert a["data"] == 100, (a["key"], a["data"], a["description"])
        assert a["task_run_id"] and a["flow_run_id"], a["key"]  # on the task run's page in the UI
        assert ", done in " in a["description"], a["description"]
    assert any(re.match(r"train: 400/400 steps \(100%\), loss [\d.]+, done in", a["description"])
               for a in by_key["progress-train"])
    # updated while the run went: the poller saw the training bar between empty and full
    assert any(0 < value < 100 for value in followed_run["seen"].get("progress-train", [])), followed_run["seen"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_run_log_names_the_run_directory_and_says_what_each_stage_and_round_did(followed_run):
    logs = followed_run["logs"]
    assert f"run directory: {followed_run['run_dir']}" in logs
    for start in ("prepare-data finished in", "generate-solutions finished in", "grow-training-set finished in",
                  "base checkpoint: ", "train finished in", "evaluate finished in", "feedback finished in",
                  "generate-variants finished in", "pool finished in"):
        assert any(m.startswith(start) for m in logs), start
    assert any(re.match(r"train finished in \d+s: 400 steps on \d+ examples \(\d+ too long\), loss [\d.]+ -> [\d.]+",
                        m) for m in logs)
    assert any(re.match(r"round 0: synthetic-test \d+\.\d%, \d+ training rows, \d+ easy / \d+ hard, ", m) for m in logs)
    assert any(re.match(r"round 1: synthetic-test \d+\.\d%, ", m) for m in logs)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fdd_run_on_a_terminal_draws_live_bars_and_leaves_a_line_per_finished_stage(tmp_path):
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1", "TERM": "xterm", "COLUMNS": "160"}
    sets = {**PROFILE, "run.rounds": 0, "training.max_steps": 60, "run.runs_dir": tmp_path / "runs",
            "teacher.cache_path": tmp_path / "teacher.sqlite"}
    main, child = pty.openpty()  # a terminal, as a user's shell gives
    run = subprocess.Popen([FDD, "run", *(arg for key, value in sets.items() for arg in ("--set", f"{key}={value}"))],
                           env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    out = bytearray()
    try:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child side closed: the run ended
                break
            if not chunk:
                break
            out += chunk
        assert run.wait(timeout=600) == 0, out.decode(errors="replace")[-3000:]
    finally:
        os.close(main)
        if run.poll() is None:
            terminate(run, wait_s=20)
    text = out.decode(errors="replace")
    assert "━" in text and "\x1b[" in text, text[-2000:]  # a drawn bar, not lines
    assert re.search(r"train\S* +\S*━", text), text[-2000:]  # the bar is the training's
    assert re.search(r"train: 60/60 steps \(100%\), loss [\d.]+, done in \d+s", text), text[-2000:]
    assert re.search(r"generate-solutions: 160/160 teacher requests \(100%\), .*done in", text), text[-2000:]
