"""Files of the run directory: atomic writes, JSONL with line-numbered errors, content hashes.

A killed run must never leave a half-written file that looks complete, so every write goes to a
temporary file in the same folder and is renamed over the target (os.replace is atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar


R = TypeVar("R")  # a stage's result (fdd_core.results.StageResult): outputs and a pydantic dump


class DataFileError(ValueError):
    """A file that cannot be read as expected; the message names the file and line."""


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to path through a temporary file and a rename; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    """Write rows (dicts or pydantic models) as JSON lines, atomically."""
    lines = []
    for row in rows:
        if hasattr(row, "model_dump"):
            row = row.model_dump(mode="json")
        lines.append(json.dumps(row, ensure_ascii=False))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line; a bad line raises DataFileError naming it."""
    path = Path(path)
    try:
        f = path.open(encoding="utf-8")
    except OSError as e:
        raise DataFileError(f"{path}: cannot read file ({e.strerror or e})") from None
    with f:
        try:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataFileError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                if not isinstance(record, dict):
                    raise DataFileError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
                yield lineno, record
        except UnicodeDecodeError as e:
            raise DataFileError(f"{path}: not UTF-8 text ({e.reason})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a JSONL file (see iter_jsonl for errors)."""
    return [record for _, record in iter_jsonl(path)]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, for manifests and cache keys."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


MANIFEST = "MANIFEST.json"


def write_manifest(folder: str | os.PathLike, *, inputs: dict[str, str], outputs: dict[str, str], **facts: Any) -> Path:
    """Write MANIFEST.json last: the content hashes of a stage's inputs and outputs, and its facts.

    A folder without a manifest, or whose outputs no longer match it, was not finished (or was
    damaged since) and must be redone; see verify_manifest.
    """
    record = {
        "inputs": {name: {"path": str(p), "sha256": tree_sha256(Path(p))} for name, p in inputs.items()},
        "outputs": {name: {"path": str(p), "sha256": tree_sha256(Path(p))} for name, p in outputs.items()},
        **facts,
    }
    return atomic_write_text(Path(folder) / MANIFEST, json.dumps(record, indent=2, default=str) + "\n")


def finish_stage(out_dir: str | os.PathLike, inputs: dict[str, str | os.PathLike], result: R) -> R:
    """End a stage: its folder's MANIFEST (inputs, outputs, the result) written last, so an interrupted stage
    never looks finished. Every stage folder ends this way."""
    write_manifest(out_dir, inputs={name: str(p) for name, p in inputs.items()}, outputs=result.outputs,
                   result=result.model_dump(mode="json"))
    return result


def finished_stage(out_dir: str | os.PathLike, inputs: dict[str, str | os.PathLike], result_type: type[R]) -> R | None:
    """The result a stage recorded in out_dir when its outputs are intact and its inputs unchanged, else None:
    a stage that is cheap to check skips work already done this way."""
    record = verify_manifest(out_dir, {name: str(p) for name, p in inputs.items()})
    if record is None:
        return None
    try:
        return result_type.model_validate(record["result"])
    except (KeyError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


def verify_manifest(folder: str | os.PathLike, inputs: dict[str, str] | None = None) -> dict | None:
    """The manifest when every output still matches it (and the inputs, if given, are the same); else None."""
    path = Path(folder) / MANIFEST
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        for entry in record["outputs"].values():
            if not Path(entry["path"]).exists() or tree_sha256(Path(entry["path"])) != entry["sha256"]:
                return None
        if inputs is not None:
            recorded = {name: entry["sha256"] for name, entry in record["inputs"].items()}
            if recorded != {name: tree_sha256(Path(p)) for name, p in inputs.items()}:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def tree_sha256(path: Path) -> str:
    """A file's hash, or for a folder (a model checkpoint) the hash of its files' names and hashes."""
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{child.relative_to(path)}:{file_sha256(child)}\n".encode())
    return h.hexdigest()
