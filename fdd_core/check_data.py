"""Check a JSONL file of (question, program, answer) rows: run every program in the sandbox, score it.

Used by `fdd check-data` to vet teacher output or a reference set (GSM-Hard's programs) before
training on it. A malformed record stops the check before anything runs, naming its line. The file is read
within bounds (a regular file, its size, each line's length, its nesting depth, finite numbers only), so a
hostile or mistaken input is one line, never a hang or a traceback.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from fdd_core.answers import answers_match, normalize_answer
from fdd_core.bounded_json import JSONBoundsError, loads_bounded
from fdd_core.sandbox import Sandbox
from fdd_core.store import DataFileError

MAX_FILE_BYTES = 1 << 30  # 1 GiB: far beyond any reference set
MAX_LINE_BYTES = 1 << 20  # one record: a question, a program and an answer
MAX_DEPTH = 16  # a record is a flat object; a little room for extra fields

SAMPLE = Path(__file__).resolve().parent / "samples" / "programs.jsonl"
WRONG_ANSWER = "wrong_answer"  # the program ran but its answer differs from the expected one


@dataclass(frozen=True)
class CheckRecord:
    line: int
    question: str
    program: str
    answer: int | float | str


@dataclass(frozen=True)
class CheckResult:
    index: int
    ok: bool
    predicted: int | float | str | None
    expected: int | float | str
    error: str | None  # a sandbox ErrorKind value, "wrong_answer", or None when ok

    def to_json(self) -> dict:
        return asdict(self)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def iter_bounded_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each non-blank line of a regular file, within the bounds above."""
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # /dev/zero never ends, a FIFO blocks even the open
            raise DataFileError(f"{path}: {_file_kind(info.st_mode)}, not a JSONL file")
        f = path.open("rb")
        info = os.fstat(f.fileno())
    except OSError as e:
        raise DataFileError(f"{path}: cannot read file ({e.strerror or e})") from None
    with f:
        if not stat.S_ISREG(info.st_mode):  # replaced since the check above
            raise DataFileError(f"{path}: {_file_kind(info.st_mode)}, not a JSONL file")
        if info.st_size > MAX_FILE_BYTES:
            raise DataFileError(f"{path}: {info.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} a check reads")
        total = 0
        for lineno in range(1, MAX_FILE_BYTES):
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            total += len(raw)
            if len(raw) > MAX_LINE_BYTES or total > MAX_FILE_BYTES:  # a file that grows as it is read, too
                raise DataFileError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES:,} bytes")
            if not raw.strip():
                continue
            try:
                record = loads_bounded(raw, MAX_DEPTH)
            except JSONBoundsError as e:
                raise DataFileError(f"{path}:{lineno}: {e}") from None
            if not isinstance(record, dict):
                raise DataFileError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def check_writable(out: str | Path) -> None:
    """Fail now, with one line, if results cannot be written to `out` (before any program runs)."""
    out = Path(out)
    if out.is_dir():
        raise DataFileError(f"--out {out}: is a folder; give a file path")
    for folder in out.parents:
        if folder.exists() and not folder.is_dir():
            raise DataFileError(f"--out {out}: cannot write there ({folder} is not a folder)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise DataFileError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def load_check_records(path: str | Path) -> list[CheckRecord]:
    """Every record of the file, validated; the first bad one raises DataFileError with file:line."""
    records = []
    for line, row in iter_bounded_jsonl(path):
        for key, kinds, label in (("question", (str,), "a string"), ("program", (str,), "a string"),
                                  ("answer", (int, float, str), "a number or a string")):
            if key not in row:
                raise DataFileError(f"{path}:{line}: missing key '{key}'")
            if not isinstance(row[key], kinds) or isinstance(row[key], bool):
                raise DataFileError(f"{path}:{line}: '{key}' must be {label}, got {type(row[key]).__name__}")
        records.append(CheckRecord(line, row["question"], row["program"], row["answer"]))
    return records


def check_records(records: list[CheckRecord], sandbox: Sandbox) -> list[CheckResult]:
    """Run each record's program and compare its answer with the record's."""
    runs = sandbox.run([r.program for r in records])
    results = []
    for index, (record, run) in enumerate(zip(records, runs)):
        if run.error is not None:
            error = run.error.value
        elif normalize_answer(record.answer) is None:
            error = "bad_expected"  # the file's answer is not an answer we can compare with
        else:
            error = None if answers_match(run.answer, record.answer) else WRONG_ANSWER
        results.append(CheckResult(index, error is None, run.answer, record.answer, error))
    return results


def summarize(results: list[CheckResult]) -> tuple[str, dict[str, int]]:
    """The `N passed, N failed` line and the count per error kind, most frequent first."""
    passed = sum(r.ok for r in results)
    kinds = Counter(r.error for r in results if r.error)
    return f"{passed} passed, {len(results) - passed} failed", dict(kinds.most_common())
