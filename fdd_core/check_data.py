"""Check a JSONL file of (question, program, answer) rows: run every program in the sandbox, score it.

Used by `fdd check-data` to vet teacher output or a reference set (GSM-Hard's programs) before
training on it. A malformed record stops the check before anything runs, naming its line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from fdd_core.answers import answers_match, normalize_answer
from fdd_core.sandbox import Sandbox
from fdd_core.store import DataFileError, iter_jsonl

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


def load_check_records(path: str | Path) -> list[CheckRecord]:
    """Every record of the file, validated; the first bad one raises DataFileError with file:line."""
    records = []
    for line, row in iter_jsonl(path):
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
