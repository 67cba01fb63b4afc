"""The user's own problems: seeds or a benchmark from a local JSONL, CSV or Parquet file, or a Hub dataset.

A column mapping (fdd_core.config.ProblemColumns) says which column holds the question, the gold answer and,
optionally, a worked solution or program and an id. The rows become Problem records like the built-in
benchmarks'. A bad row is one DataFileError line naming the file, the row and the column.

CSV, Parquet and Hub datasets are read by `datasets` (its csv builder is pandas', so quoting and encodings are
handled there); JSONL by store.iter_jsonl, whose errors name the line (datasets' json builder names none).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fdd_core.answers import answer_text, as_number
from fdd_core.config import ProblemColumns
from fdd_core.records import Problem
from fdd_core.store import DataFileError, iter_jsonl

HUB_PREFIX = "hub:"
FILE_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def is_user_source(text: str) -> bool:
    """Whether a seed set or benchmark value names a file or a Hub dataset rather than a built-in set."""
    return text.startswith(HUB_PREFIX) or Path(text).suffix.lower() in FILE_FORMATS


def source_name(text: str) -> str:
    """A short name for problems' source and ids: the file's stem, or the Hub dataset's name."""
    if text.startswith(HUB_PREFIX):
        return text[len(HUB_PREFIX):].rstrip("/").rsplit("/", 1)[-1]
    return Path(text).stem


def question_id(prefix: str, question: str) -> str:
    """An id from the question's text (whitespace collapsed): the same wherever the problem was loaded from."""
    digest = hashlib.sha256(" ".join(question.split()).encode("utf-8")).hexdigest()[:12]
    return f"{prefix}-{digest}"


def check_source(text: str, key: str) -> None:
    """ValueError, one line naming `key`, for a value that is neither a readable file nor hub:owner/name."""
    if text.startswith(HUB_PREFIX):
        name = text[len(HUB_PREFIX):]
        if not name or name.count("/") != 1 or not all(name.split("/")):
            raise ValueError(f"{key}: expected hub:owner/name, got {text!r}")
        return
    path = Path(text).expanduser()
    if path.suffix.lower() not in FILE_FORMATS:
        raise ValueError(f"{key}: {text!r} is not a .jsonl, .csv or .parquet file nor hub:owner/name")
    if not path.is_file():
        raise ValueError(f"{key}: file not found: {path}")


def load_user_problems(text: str, columns: ProblemColumns, *, name: str | None = None, split: str = "train",
                       limit: int | None = None) -> list[Problem]:
    """Problems of a file or `hub:owner/name` (its columns.split, else `split`); ids are `name`-prefixed
    (default: the file's stem) and come from columns.id or else from the question text."""
    name = name or source_name(text)
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for where, row, columns_present in _rows(text, columns, split):
        if limit is not None and len(problems) >= limit:
            break
        problem = _problem(row, columns, name, where, columns_present)
        if problem.id in seen:
            how = "" if columns.id else " (ids come from the question text: remove one, or name an id column)"
            raise DataFileError(f"{where}: duplicate problem id {problem.id!r}, first at {seen[problem.id]}{how}")
        seen[problem.id] = where
        problems.append(problem)
    return problems


def _rows(text: str, columns: ProblemColumns, split: str) -> Iterator[tuple[str, Mapping[str, Any], list[str]]]:
    """(where, row, the source's column names) for every row."""
    if text.startswith(HUB_PREFIX):
        yield from _hub_rows(text[len(HUB_PREFIX):], columns.config, columns.split or split)
        return
    path = Path(text).expanduser()
    kind = FILE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataFileError(f"{path}: not a .jsonl, .csv or .parquet file")
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    if kind == "jsonl":
        for lineno, row in iter_jsonl(path):
            yield f"{path}:{lineno} (row {lineno})", row, list(row)
        return
    ds = _load(kind, path)
    for i, row in enumerate(ds, start=1):
        # a CSV's row 1 is its line 2 (the header is line 1)
        yield (f"{path}: row {i} (line {i + 1})" if kind == "csv" else f"{path}: row {i}"), row, ds.column_names


def _load(kind: str, path: Path):
    import datasets  # heavy import: only when a file is read

    try:
        return datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as e:  # pandas/pyarrow parse errors arrive wrapped in several layers
        cause = e.__cause__ or e
        raise DataFileError(f"{path}: cannot read as {kind} ({' '.join(str(cause).split())[:300]})") from None


def _hub_rows(dataset: str, config: str | None, split: str):
    import datasets

    try:
        ds = datasets.load_dataset(dataset, config, split=split)
    except Exception as e:  # network, auth, offline mode, unknown split or config
        raise DataFileError(f"hub:{dataset}: cannot load {dataset} (config {config}, split {split}) from the "
                            f"Hugging Face Hub: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    for i, row in enumerate(ds, start=1):
        yield f"hub:{dataset} [{split}] row {i}", row, ds.column_names


def _problem(row: Mapping[str, Any], columns: ProblemColumns, name: str, where: str, present: list[str]) -> Problem:
    def cell(key: str, column: str) -> Any:
        if column not in row:
            raise DataFileError(f"{where}: no column {column!r} (the {key} column); columns: {', '.join(present)}")
        return row[column]

    question = cell("question", columns.question)
    if not isinstance(question, str) or not question.strip():
        raise DataFileError(f"{where}: column {columns.question!r} (question) is empty or not text: {question!r}")
    answer = _answer(cell("answer", columns.answer), where, columns.answer)
    solution = cell("solution", columns.solution) if columns.solution else None
    solution = str(solution).strip() if solution is not None and str(solution).strip() else None
    if columns.id:
        raw = cell("id", columns.id)
        if raw is None or not str(raw).strip():
            raise DataFileError(f"{where}: column {columns.id!r} (id) is empty")
        pid = f"{name}-{str(raw).strip()}"
    else:
        pid = question_id(name, question)
    return Problem(id=pid, question=question.strip(), answer=answer, source=name, solution=solution)


def _answer(value: Any, where: str, column: str) -> str:
    """The gold answer as text: a number, or a worked solution's '#### N' tail. Anything else stops the load."""
    text = None
    if value is not None and not isinstance(value, bool):
        try:
            text = answer_text(value)
        except TypeError:
            text = None
    if text is not None and "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    if text is None or as_number(text) is None:
        raise DataFileError(f"{where}: column {column!r} (answer) holds {value!r}, not a number; FDD's programs "
                            "answer with numbers (a worked solution must end in '#### N')")
    return text.replace(",", "") if as_number(text.replace(",", "")) == as_number(text) else text
