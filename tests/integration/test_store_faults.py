"""The response store is the truth (issue 14): a reply that cannot be stored stops the stage with one line naming
the store and why (on a real full disk: a small tmpfs), after keeping every reply it could; the same command then
resumes and the report adds up to what the store recorded; a damaged store is one line naming the file and the
way out, and `fdd store check` / `fdd store repair` keep every readable reply."""

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from fdd_core.teacher.response_store import ResponseStore, StoredReply

from .conftest import FDD, REPO, read_log
from .runs import fdd, last_error, small_run

pytestmark = [pytest.mark.robustness]


def stored(store: Path, run: Path) -> tuple[int, int]:
    """(replies, their tokens) the store recorded as bought by the run."""
    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM replies"
                          " WHERE run = ?", (str(run),)).fetchone()


@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_one_line_and_the_same_command_resumes(tmp_path, teacher_server, small_disk):
    mount, grow = small_disk
    api_base, log = teacher_server("--error-rate", "0.1")
    store = mount / "teacher.sqlite"
    args = small_run(tmp_path, api_base, store=store)
    run_dir = tmp_path / "runs" / "r"

    full = fdd(tmp_path, args)
    # was: exit 0, 231 of 240 replies lost, the student trained on 6 examples, the stage cached as complete
    assert full.returncode == 2, full.stdout[-2000:] + full.stderr[-3000:]
    line = last_error(full)
    assert line.startswith(f"error: response store {store}: cannot "), full.stderr[-3000:]
    assert "(database or disk is full)" in line and "run the same command again" in line
    assert not (run_dir / "report.json").exists()
    answered = [r for r in read_log(log) if r["status"] == 200]
    kept = stored(store, run_dir)[0]
    assert 0 < kept < 60 and len(answered) - kept <= 4  # lost at most the replies in flight (concurrency 4)

    grow("64m")
    again = fdd(tmp_path, args)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    import json

    report = json.loads((run_dir / "report.json").read_text())
    replies, tokens = stored(store, run_dir)
    # the report adds up to what the store recorded as bought, across the failed and the resumed invocation
    assert report["totals"]["teacher"]["requests"] == replies
    assert replies >= 59  # 60 requests; two with the same messages and seed would be bought once
    assert report["totals"]["teacher"]["tokens"] == tokens
    rebought = len([r for r in read_log(log) if r["status"] == 200]) - replies
    assert rebought <= 4, rebought


def _store_with_replies(path: Path, n: int) -> None:
    with ResponseStore(path) as store:
        for i in range(n):
            store.put(f"key-{i:04d}", StoredReply(f"ans = {i}  # " + "x" * 300, 10, 20, 0.0, "m", "solve.v1"))


def test_a_damaged_store_is_one_line_naming_the_file_and_the_way_out(tmp_path):
    path = tmp_path / "teacher.sqlite"
    _store_with_replies(path, 50)
    with open(path, "r+b") as f:  # the header: SQLite no longer recognises the file
        f.write(b"\0" * 100)
    done = subprocess.run([FDD, "teacher", "solve", "gsm8k-train", "--limit", "2", "--out-dir", str(tmp_path / "out"),
                           "--set", f"teacher.cache_path={path}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    # was: a sqlite3.DatabaseError traceback
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith(f"error: response store {path} is damaged (file is not a database)")
    assert f"fdd store repair {path}" in done.stderr


def test_store_check_and_repair_keep_every_readable_reply(tmp_path):
    path = tmp_path / "teacher.sqlite"
    _store_with_replies(path, 400)
    size = path.stat().st_size
    with open(path, "r+b") as f:  # garbage over one page in the middle of the table
        f.seek((size // 4096 // 2) * 4096)
        f.write(os.urandom(4096))
    check = subprocess.run([FDD, "store", "check", str(path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and f"{path}: damaged" in check.stdout, check.stdout + check.stderr
    repair = subprocess.run([FDD, "store", "repair", str(path)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    damaged = [p for p in tmp_path.glob("teacher.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(damaged) == 1 and f"kept as {damaged[0]}" in repair.stdout
    with ResponseStore(path) as store:
        kept = len(store)
        assert store.get("key-0000").text.startswith("ans = 0")
    assert 400 - 20 <= kept < 400, kept  # one 4 KiB page holds ~11 of these replies: only they are lost
    assert f"rebuilt with {kept} readable replies" in repair.stdout
    again = subprocess.run([FDD, "store", "check", str(path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and f"intact, {kept} replies" in again.stdout
