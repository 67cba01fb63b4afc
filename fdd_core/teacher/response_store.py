"""Durable store of teacher replies (SQLite): a reply bought once is never paid for again.

Shared by runs and processes; each reply is committed as it arrives, so a crash loses nothing paid for.
A request in flight is claimed (the claims table, with the buyer's pid): another process sharing the store waits
for that reply instead of buying it again; a claim whose process is gone is released. A store that cannot be
written (a full disk) or read (a damaged file) raises StoreError: one line naming the file, the reason and the way
out (`fdd store check` / `fdd store repair`, see fdd_core.teacher.store_repair).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Bump when the meaning of a key changes: old rows then simply stop matching.
KEY_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL,
    created REAL NOT NULL,
    run TEXT,
    stage TEXT
)
"""

_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class StoreError(RuntimeError):
    """The response store cannot be written or read; str() is one line naming the file, why, and what to do."""


def damaged_message(path: Path, error: BaseException) -> str:
    return (f"response store {path} is damaged ({error}): run `fdd store check {path}` to see what is readable, "
            f"then `fdd store repair {path}` to keep every readable reply (the damaged file is kept beside it)")


def _is_damage(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return isinstance(error, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text
                                                         or "corrupt" in text)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@dataclass(frozen=True)
class StoredReply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None: the price was unknown when it was bought
    model: str = ""
    prompt: str = ""  # prompt tag, e.g. "solve.v1"
    created: float = field(default_factory=time.time)
    run: str | None = None  # the run that bought it (its run directory): what that run's budget counts
    stage: str | None = None  # the stage of that run that bought it (e.g. r1/variants): its report row


def canonical_json(obj: Any) -> str:
    """One spelling per value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class ResponseStore:
    """SQLite file of replies keyed by request; counts hits, misses and the spend hits saved.

    One connection guarded by a lock serves every thread of this process; WAL mode plus a busy
    timeout lets several processes (two runs sharing the store) read and write the same file.
    Each call commits on its own, unless made inside `transaction()`: then they commit together.
    """

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # re-entered by the calls inside transaction()
        # who claims requests in flight: this process, and this store object within it
        self.owner = f"{os.getpid()}-{id(self):x}-{time.time_ns():x}"
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False,
                                         isolation_level=None)
            self._setup(self._conn, time.monotonic() + busy_timeout_s)
        except sqlite3.Error as e:
            if self._conn is not None:
                self._conn.close()
            raise self._error(e, "open") from None
        self.hits = 0
        self.misses = 0
        self.saved_usd: float | None = 0.0  # None once a hit's stored cost was unknown

    @staticmethod
    def _setup(conn: sqlite3.Connection, deadline: float) -> None:
        # WAL: readers never block the writer, and other processes can share the file.
        # synchronous=FULL: a committed reply survives power loss, not just a killed process;
        # one fsync per reply is nothing next to the seconds a teacher reply takes.
        # Switching to WAL takes an exclusive lock that SQLite's busy timeout does not wait for
        # when two processes open a new file at once, hence the loop (bounded by the deadline).
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(_SCHEMA)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(replies)")}
                if "run" not in columns:  # a store written before replies recorded their buyer
                    conn.execute("ALTER TABLE replies ADD COLUMN run TEXT")
                if "stage" not in columns:  # which stage of that run bought it (the report's accounting)
                    conn.execute("ALTER TABLE replies ADD COLUMN stage TEXT")
                conn.execute(_CLAIMS)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @staticmethod
    def key(
        *,
        model: str,
        api_base: str | None,
        messages: list[dict],
        params: dict[str, Any],
        sample_index: int,
        prompt: str,
    ) -> str:
        """Hex SHA-256 of everything that decides the reply: model, server, messages, sampling
        parameters (temperature, max_tokens, seed...), sample index and prompt tag.

        API keys are deliberately no argument: the same request bought with another key is the same reply.
        """
        payload = {
            "v": KEY_VERSION,
            "model": model,
            "api_base": api_base.rstrip("/") if api_base else None,
            "messages": messages,
            "params": params,
            "sample_index": sample_index,
            "prompt": prompt,
        }
        return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"response store {self.path} is closed")
        return self._conn

    def get(self, key: str, *, count: bool = True) -> StoredReply | None:
        """The stored reply or None; with count=False the hit/miss counters are left alone
        (used for a last look just before paying, after the counted look-up missed)."""
        with self._lock:
            row = self._execute(
                "SELECT text, prompt_tokens, completion_tokens, cost_usd, model, prompt, created, run, stage"
                " FROM replies WHERE key = ?", (key,), "read").fetchone()
            reply = StoredReply(*row) if row else None
            if count:
                if reply is None:
                    self.misses += 1
                else:
                    self.hits += 1
                    if reply.cost_usd is None or self.saved_usd is None:
                        self.saved_usd = None
                    else:
                        self.saved_usd += reply.cost_usd
            return reply

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The calls made inside (from this thread) commit together on leaving, one fsync for all, or not at all.

        The teacher client runs the store calls of its requests in flight in batches this way (see
        fdd_core.teacher.store_batch): a reply's put still returns only once its reply is durable.
        """
        with self._lock:
            self._execute("BEGIN IMMEDIATE", (), "start a transaction")
            try:
                yield
            except BaseException:
                try:
                    self._db().execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # a failed COMMIT or a full disk may have rolled it back already
                raise
            try:
                self._execute("COMMIT", (), "store a paid reply")
            except StoreError:
                try:
                    self._db().execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise

    def put(self, key: str, reply: StoredReply) -> None:
        """Commit one reply now (autocommit), or with its transaction: durable before the caller uses it.

        A key already there keeps its first reply: another run may have used it already.
        """
        with self._lock:
            self._execute(
                "INSERT OR IGNORE INTO replies"
                " (key, model, prompt, text, prompt_tokens, completion_tokens, cost_usd, created, run, stage)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    reply.model,
                    reply.prompt,
                    reply.text,
                    int(reply.prompt_tokens),
                    int(reply.completion_tokens),
                    reply.cost_usd,
                    reply.created,
                    reply.run,
                    reply.stage,
                ),
                "store a paid reply",
            )
            self._execute("DELETE FROM claims WHERE key = ?", (key,), "release a claim")

    def claim(self, key: str, stale_after_s: float = 3600.0) -> bool:
        """Claim `key` before buying it: True when this store object may buy it now (no live claim by another
        process or object); False while another live owner has it in flight (wait for its reply: see get).
        A claim by a process that is gone (killed), or older than stale_after_s (its owner hangs), is taken over."""
        with self._lock:
            while True:
                row = self._execute("SELECT pid, owner, created FROM claims WHERE key = ?", (key,),
                                    "read a claim").fetchone()
                if row is not None:
                    pid, owner, created = row
                    if owner == self.owner:
                        return True
                    if _pid_alive(pid) and time.time() - created < stale_after_s:
                        return False
                    self._execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner), "release a claim")
                cursor = self._execute("INSERT OR IGNORE INTO claims (key, pid, owner, created) VALUES (?, ?, ?, ?)",
                                       (key, os.getpid(), self.owner, time.time()), "claim a request")
                if cursor.rowcount == 1:
                    return True

    def release(self, key: str) -> None:
        """Drop this object's claim on `key` (its request failed: another may try)."""
        with self._lock:
            self._execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner), "release a claim")

    def bought_by(self, run: str, stage: str | None = None) -> list[StoredReply]:
        """Every reply the run (and, if given, its stage) bought, as recorded: the run's accounting."""
        where, params = ("run = ?", (run,)) if stage is None else ("run = ? AND stage = ?", (run, stage))
        with self._lock:
            rows = self._execute(
                "SELECT text, prompt_tokens, completion_tokens, cost_usd, model, prompt, created, run, stage"
                f" FROM replies WHERE {where}", params, "read").fetchall()
        return [StoredReply(*row) for row in rows]

    def _execute(self, sql: str, params: tuple, doing: str) -> sqlite3.Cursor:
        try:
            return self._db().execute(sql, params)
        except sqlite3.Error as e:
            raise self._error(e, doing) from None

    def _error(self, error: sqlite3.Error, doing: str) -> StoreError:
        if _is_damage(error):
            return StoreError(damaged_message(self.path, error))
        return StoreError(f"response store {self.path}: cannot {doing} ({error}); free space or fix the file's "
                          "permissions, then run the same command again: every reply already stored is kept")

    def __len__(self) -> int:
        with self._lock:
            return self._execute("SELECT COUNT(*) FROM replies", (), "read").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:  # claims left by a stage that stopped early: others need not wait for them
                    self._conn.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
                except sqlite3.Error:
                    pass
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ResponseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        saved = "unknown" if self.saved_usd is None else f"${self.saved_usd:.4f}"
        return f"ResponseStore({str(self.path)!r}, hits={self.hits}, misses={self.misses}, saved={saved})"
