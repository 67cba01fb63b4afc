"""Content hashes of a saved model folder (the base checkpoint, each round's student): written with the model,
checked before the model is read, so a damaged weight file is never trained from or evaluated silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fdd_core.store import atomic_write_text, file_sha256

MODEL_MANIFEST = "fdd_model_manifest.json"


class ModelDamaged(ValueError):
    """A model folder whose files no longer match their manifest; str() is one line naming the file."""


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MODEL_MANIFEST}


def write_model_manifest(folder: str | os.PathLike) -> Path:
    """folder/MODEL_MANIFEST: the SHA-256 of every other file in it. Call it last, once the model is saved."""
    folder = Path(folder)
    return atomic_write_text(folder / MODEL_MANIFEST, json.dumps({"files": _files(folder)}, indent=1) + "\n")


def check_model(folder: str | os.PathLike, *, hint: str = "") -> bool:
    """True when folder's files match its manifest; False when it has none (a model FDD did not write: a hub
    checkpoint, a folder of the user's); ModelDamaged naming the first file that differs otherwise."""
    folder = Path(folder).expanduser()
    manifest = folder / MODEL_MANIFEST
    if not folder.is_dir() or not manifest.is_file():
        return False
    try:
        expected = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelDamaged(f"model {folder}: its manifest {MODEL_MANIFEST} cannot be read ({e}){hint}") from None
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise ModelDamaged(f"model {folder}: {name} is missing{hint}")
        if file_sha256(path) != digest:
            raise ModelDamaged(f"model {folder}: {name} differs from its manifest (damaged or changed since it "
                               f"was written){hint}")
    return True
