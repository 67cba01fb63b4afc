"""The paper's three teacher requests (solve, harder, similar) as versioned prompt files.

A prompt file holds the system text, the instruction with a `{question}` slot and few-shot
examples; the name and version travel with every request into the response store's key. The name
is the request's kind (solve, harder, similar), which also travels with every request as data (the
KIND_HEADER header): the offline teacher reads the kind from there, never from the prompt's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
RequestKind = Literal["solve", "harder", "similar"]
KINDS: tuple[RequestKind, ...] = ("solve", "harder", "similar")
# HTTP header that carries a request's kind with the teacher call (litellm's extra_headers): real
# providers ignore it, the offline teacher (in process and over HTTP) answers by it.
KIND_HEADER = "X-FDD-Request-Kind"


@dataclass(frozen=True)
class Prompt:
    name: RequestKind
    version: int
    system: str
    instruction: str
    examples: tuple[tuple[str, str], ...]  # (question, reply) few-shot pairs

    @property
    def tag(self) -> str:
        """Name and version, e.g. 'solve.v1': recorded in lineage and in cache keys."""
        return f"{self.name}.v{self.version}"

    @property
    def kind(self) -> RequestKind:
        """The request kind this prompt asks for: its name."""
        return self.name

    def messages(self, question: str) -> list[dict[str, str]]:
        """Chat messages: system, the few-shot turns, then the instruction for this question."""
        messages = [{"role": "system", "content": self.system}]
        for example_question, reply in self.examples:
            messages.append({"role": "user", "content": self.instruction.format(question=example_question)})
            messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": self.instruction.format(question=question.strip())})
        return messages


@cache
def load_prompt(name: RequestKind, prompts_dir: Path = PROMPTS_DIR) -> Prompt:
    """The prompt file `<name>.yaml`; a missing key is an error naming the file."""
    path = prompts_dir / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = [k for k in ("name", "version", "system", "instruction", "examples") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    if data["name"] not in KINDS:
        raise ValueError(f"{path}: name {data['name']!r} is not a request kind ({', '.join(KINDS)})")
    if "{question}" not in data["instruction"]:
        raise ValueError(f"{path}: instruction has no {{question}} slot")
    examples = tuple((e["question"], e["reply"]) for e in data["examples"])
    return Prompt(data["name"], int(data["version"]), data["system"].strip(), data["instruction"], examples)
