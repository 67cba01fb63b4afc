"""The response store across processes: a reply survives its writer's crash; two processes write at once."""

import json
import os
import subprocess
import sys
from pathlib import Path

from fdd_core.teacher.response_store import ResponseStore, StoredReply
from tests.unit.test_response_store import _key

REPO = Path(__file__).resolve().parents[2]


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_durable_in_a_new_process_after_a_crash(tmp_path):
    path = tmp_path / "s.sqlite"
    # The writer dies by SIGKILL-like os._exit right after put, never closing the store.
    writer = (
        "import os, sys\n"
        "from fdd_core.teacher.response_store import ResponseStore, StoredReply\n"
        "s = ResponseStore(sys.argv[1])\n"
        "s.put(sys.argv[2], StoredReply('ans = 4', 5, 6, 0.25, 'm', 'solve.v1'))\n"
        "os._exit(0)\n"
    )
    assert _run_python(writer, str(path), _key()).returncode == 0
    with ResponseStore(path) as store:  # write, close, reopen here too
        store.put(_key(sample_index=1), StoredReply("ans = 5", 1, 2, 0.5))
    reader = (
        "import json, sys\n"
        "from fdd_core.teacher.response_store import ResponseStore\n"
        "s = ResponseStore(sys.argv[1])\n"
        "print(json.dumps([s.get(k).__dict__ for k in sys.argv[2:]]))\n"
    )
    done = _run_python(reader, str(path), _key(), _key(sample_index=1))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["text"] for r in rows] == ["ans = 4", "ans = 5"]
    assert rows[0]["prompt_tokens"] == 5 and rows[0]["cost_usd"] == 0.25


def test_two_processes_write_at_once(tmp_path):
    path = tmp_path / "s.sqlite"
    writer = (
        "import sys\n"
        "from fdd_core.teacher.response_store import ResponseStore, StoredReply\n"
        "s = ResponseStore(sys.argv[1])\n"
        "for i in range(100):\n"
        "    s.put(f'{sys.argv[2]}-{i}', StoredReply('x'))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, str(path), tag], cwd=REPO, env=os.environ.copy())
        for tag in ("p", "q")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with ResponseStore(path) as store:
        assert len(store) == 200
