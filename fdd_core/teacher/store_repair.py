"""`fdd store check` and `fdd store repair`: what a damaged response store still holds, and a new store of every
reply that can be read from it (the damaged file is kept beside it, renamed, never deleted: it holds paid replies).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from fdd_core.teacher.response_store import ResponseStore, StoredReply

COLUMNS = ("key", "model", "prompt", "text", "prompt_tokens", "completion_tokens", "cost_usd", "created", "run",
           "stage")


@dataclass
class StoreCheck:
    path: Path
    ok: bool  # SQLite's integrity check passed and every row was read
    readable: int  # replies that could be read
    problems: list[str]  # what SQLite reported (first lines)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)


def _rows(path: Path) -> tuple[list[tuple], list[str]]:
    """Every reply row that can be read, and the errors met: a full scan first, then row by row past the damage."""
    problems: list[str] = []
    try:
        conn = _connect(path)
    except sqlite3.Error as e:
        return [], [str(e)]
    with contextlib.closing(conn):
        columns = [row[1] for row in _safe(conn, "PRAGMA table_info(replies)", problems)]
        if not columns:
            return [], problems or ["no replies table"]
        picked = ", ".join(c if c in columns else "NULL" for c in COLUMNS)
        try:
            return conn.execute(f"SELECT {picked} FROM replies").fetchall(), problems
        except sqlite3.Error as e:
            problems.append(str(e))
        top = _safe(conn, "SELECT max(rowid) FROM replies", problems)
        last = top[0][0] if top and top[0][0] else 0
        rows = []
        for rowid in range(1, last + 1):
            try:
                row = conn.execute(f"SELECT {picked} FROM replies WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.Error:
                continue
            if row is not None:
                rows.append(row)
        return rows, problems


def _safe(conn: sqlite3.Connection, sql: str, problems: list[str]) -> list[tuple]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.Error as e:
        problems.append(str(e))
        return []


def check_store(path: str | os.PathLike) -> StoreCheck:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"response store {path}: no such file")
    rows, problems = _rows(path)
    if not problems:
        try:
            with contextlib.closing(_connect(path)) as conn:
                result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.Error as e:
            result = [str(e)]
        if result != ["ok"]:
            problems.extend(result[:5])
    return StoreCheck(path, not problems, len(rows), problems[:5])


def repair_store(path: str | os.PathLike) -> tuple[int, Path]:
    """Write every readable reply of `path` into a new store at `path`; the damaged file (and its WAL) is renamed
    to PATH.damaged-<time>. Returns (replies kept, where the damaged file went)."""
    path = Path(path).expanduser()
    rows, _ = _rows(path)
    fresh = path.with_name(f".{path.name}.repair-{os.getpid()}")
    for stale in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
        stale.unlink(missing_ok=True)
    with ResponseStore(fresh) as store:
        for row in rows:
            key, *fields = row
            if key is None or fields[2] is None:  # no key or no text: nothing usable
                continue
            model, prompt, text, prompt_tokens, completion_tokens, cost, created, run, stage = fields
            store.put(key, StoredReply(text, int(prompt_tokens or 0), int(completion_tokens or 0), cost,
                                       model or "", prompt or "", created or time.time(), run, stage))
        kept = len(store)
    damaged = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{damaged}{suffix}")
    os.replace(fresh, path)
    for suffix in ("-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    return kept, damaged
