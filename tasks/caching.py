"""Cache keys and manifests for stage tasks: a stage is redone exactly when something it reads changed.

Key = hash(stage name, stage version, the config fields the stage reads, content hashes of its input
files and folders, its other arguments). Prefect's default TASK_SOURCE policy would only see the
10-line wrapper, not the library code or the data, so it is not used. A task whose output folder
no longer matches its manifest (missing, truncated, damaged) is run again with refresh_cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fdd_core.config import FDDConfig
from fdd_core.store import tree_sha256, verify_manifest


def config_fields(cfg: FDDConfig, fields: Sequence[str]) -> dict[str, Any]:
    """The named config sections or dotted keys, as JSON-able values."""
    data = cfg.model_dump(mode="json")
    picked = {}
    for dotted in fields:
        value: Any = data
        for part in dotted.split("."):
            value = value[part]
        picked[dotted] = value
    return picked


def stage_cache_key(stage: str, version: int, fields: Sequence[str], inputs: Sequence[str],
                    ignore: Sequence[str] = ()) -> Callable:
    """A Prefect cache_key_fn for a task whose parameters are `cfg`, input paths named in `inputs`, scalars, and
    parameters named in `ignore` that do not decide the stage's output."""

    def key(_context, parameters: dict[str, Any]) -> str:
        parts: dict[str, Any] = {"stage": stage, "version": version,
                                 "config": config_fields(parameters["cfg"], fields)}
        for name, value in sorted(parameters.items()):
            if name == "cfg" or name in ignore:
                continue
            if name in inputs:
                if isinstance(value, dict):
                    parts[name] = {k: _content(p) for k, p in value.items()}
                elif isinstance(value, (list, tuple)):
                    parts[name] = [_content(p) for p in value]
                else:
                    parts[name] = _content(value)
            else:
                parts[name] = value
        blob = json.dumps(parts, sort_keys=True, default=str)
        return f"{stage}-v{version}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}"

    return key


def _content(path: str | None) -> list | None:
    """A path and the hash of what it holds now (None for a missing optional input)."""
    return [str(path), tree_sha256(Path(path)) if Path(path).exists() else None] if path else None


def needs_refresh(out_dir: Path) -> bool:
    """True when the stage's outputs are not all there and intact: a cached result must not be trusted."""
    return verify_manifest(out_dir) is None
