"""A real Prefect server seen from a test: a free local port for it, its JSON API over HTTP, the tail of its log.

While a run loads both cores, the server has answered a read 10 to 30 s late (twice in CI, 2026-11; not reproduced
here, where the slowest of ~240 polls during such a run took 0.21 s, even with 9 GB written to the disk meanwhile).
The runs' own Prefect clients wait up to 60 s for an answer (PREFECT_API_REQUEST_TIMEOUT), so the runs go on. A test
that polls the server while a run goes counts a read that timed out as "not yet" and reads again; what it asserts is
what the user sees once the server answers.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

READ_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 3000) -> str:
    return f"--- {path.name} ---\n" + (path.read_text(errors="replace")[-n:] if path.exists() else "(no log)")


def api_json(url: str, body: dict | None = None, timeout: float = READ_TIMEOUT_S):
    """GET (or POST `body`) and decode JSON; an HTTP error is raised as urllib's HTTPError, a late answer as
    TimeoutError."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def healthy(url: str) -> bool:
    """Whether `url` (a Prefect server's /api/health, or a teacher server's /health) answers true now."""
    try:
        return bool(api_json(url, timeout=5))
    except (OSError, ValueError):
        return False
