"""GGUF checkpoints as students: convert a GGUF file (llama.cpp's format) to a hub-format folder once.

transformers reads GGUF through the `gguf` package and dequantises it to float32; the folder it then saves loads
with plain Auto* classes, trains, and serves like any hub checkpoint (tokenizer and chat template included).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .factory import quiet_transformers, save_dir_atomically

CONVERTED_MARKER = "fdd_gguf.json"  # in a converted folder: which file it came from (name, size, sha256)


class GGUFError(ValueError):
    """A GGUF file that cannot be converted (missing, not GGUF, an architecture transformers cannot read)."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_of(gguf_file: Path) -> dict:
    gguf_file = Path(gguf_file).expanduser()
    return {"gguf": gguf_file.name, "bytes": gguf_file.stat().st_size, "sha256": file_sha256(gguf_file)}


def converted_from(folder: Path) -> dict | None:
    """The source record of a folder convert_gguf wrote, or None."""
    marker = Path(folder) / CONVERTED_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def convert_gguf(gguf_file: str | Path, out_dir: str | Path) -> Path:
    """Write out_dir (atomically): float32 safetensors, config, tokenizer and chat template from a GGUF file.
    A folder already converted from the same file (same sha256) is kept as it is."""
    gguf_file = Path(gguf_file).expanduser()
    out_dir = Path(out_dir).expanduser()
    if not gguf_file.is_file():
        raise GGUFError(f"{gguf_file}: no such GGUF file")
    with open(gguf_file, "rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFError(f"{gguf_file}: not a GGUF file (it does not start with the GGUF magic bytes)")
    source = source_of(gguf_file)
    if converted_from(out_dir) == source and (out_dir / "config.json").is_file():
        return out_dir
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it; say so in one line rather than deep inside)
    except ImportError:
        raise GGUFError("reading GGUF needs the `gguf` package: pip install gguf") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils.quantization_config import GgufConfig

    folder, name = str(gguf_file.parent), gguf_file.name
    with quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                         quantization_config=GgufConfig(dequantize=True))
        except (ValueError, KeyError, RuntimeError) as e:
            raise GGUFError(f"{gguf_file}: transformers cannot read it ({e})") from e
        if getattr(model, "hf_quantizer", None) is not None:  # dequantised already; saving refuses while it is set
            model.hf_quantizer.remove_quantization_config(model)

        def write(tmp: Path) -> None:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / CONVERTED_MARKER).write_text(json.dumps(source, indent=2) + "\n")

        return save_dir_atomically(out_dir, write)
