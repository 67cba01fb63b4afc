"""`fdd run` with no Prefect server configured (issue 15): it starts its own temporary server as soon as its checks
pass, says where, runs the flow there (the run, its tasks, artifacts and logs in PREFECT_HOME's database, as a
Prefect UI started later shows them), asks that private server for no `gpu` slot (a limit cannot exist there;
the request cost ~2 s before a gpu task), states every stage's seconds, and leaves no server behind.
A real `fdd run` in a subprocess, the offline teacher over HTTP, Prefect's real temporary server."""

import json
import re
import socket
import sqlite3
from urllib.parse import urlsplit

import pytest

from .runs import fdd, small_run

pytestmark = pytest.mark.slow


def test_a_run_on_its_own_temporary_server_asks_for_no_gpu_slot_and_states_each_stage_seconds(tmp_path,
                                                                                                teacher_server):
    api_base, _ = teacher_server()
    done = fdd(tmp_path, small_run(tmp_path, api_base))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    db = sqlite3.connect(tmp_path / "prefect" / "prefect.db")
    flows = db.execute("SELECT name, state_name FROM flow_run").fetchall()
    tasks = dict(db.execute("SELECT name, tags FROM task_run").fetchall())
    artifacts = {key for (key,) in db.execute("SELECT key FROM artifact WHERE key IS NOT NULL")}
    assert ("Completed" in {state for _, state in flows}) and {"fdd-report", "progress-train"} <= artifacts
    names = {name.rsplit("-", 1)[0] for name in tasks}
    assert {"base-checkpoint", "train", "evaluate"} <= names
    # was: base-checkpoint, train and evaluate tagged "gpu", each asking the server for a concurrency slot
    assert {name: json.loads(tags) for name, tags in tasks.items() if json.loads(tags)} == {}

    # every stage states its own seconds: a MANIFEST per stage folder, the base checkpoint in its log line
    run_dir = tmp_path / "runs" / "r"
    stages = {json.loads(m.read_text())["result"]["stage"] for m in run_dir.rglob("MANIFEST.json")}
    assert {"prepare_data", "generate_solutions", "grow_training_set", "train", "evaluate"} <= stages
    assert re.search(rf"base checkpoint: {re.escape(str(run_dir / 'base'))} \(\d+\.\d\d s\)$",
                     done.stdout + done.stderr, re.M), done.stderr[-2000:]  # was: "base checkpoint: PATH" alone

    said = re.findall(r"^Prefect: this run's temporary server on (http://127\.0\.0\.1:\d+/api) \(no UI; set "
                      r"PREFECT_API_URL to use a server of yours\)$", done.stderr, re.M)
    assert len(said) == 1, done.stderr[-3000:]  # was: Prefect's own "Starting temporary server" line, after imports
    assert "View at http" not in done.stdout + done.stderr  # no link to a UI this server does not serve

    port = urlsplit(said[0]).port
    with socket.socket() as s:  # the server went with its run
        assert s.connect_ex(("127.0.0.1", port)) != 0
