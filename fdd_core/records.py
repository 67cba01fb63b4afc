"""The nouns that flow between stages, with one stable JSONL schema each.

Records are pydantic models so that every file on disk round-trips and a malformed row is
reported with its field name rather than crashing a stage three steps later.
"""

from __future__ import annotations

import os

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fdd_core.store import DataFileError, iter_jsonl


class Problem(BaseModel):
    """A math word problem with its gold answer, from a benchmark, the seed set or a teacher."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Stable id, unique within its source, e.g. 'gsm8k-test-17'.")
    question: str = Field(description="The problem text as the student sees it.")
    answer: str = Field(description="Gold answer as text; compare it with fdd_core.answers.")
    source: str = Field(description="Benchmark or generator name, e.g. 'gsm8k-test', 'synthetic-seed'.")
    solution: str | None = Field(
        default=None, description="Reference worked solution where the source has one (GSM8K train, GSM-Hard code)."
    )


def load_problems(path: str | os.PathLike) -> list[Problem]:
    """Problem rows of a JSONL file; extra keys (a feedback split, attempts) are ignored. A row that is not a
    Problem raises DataFileError naming the file, line and field."""
    problems = []
    for lineno, row in iter_jsonl(path):
        try:
            problems.append(Problem.model_validate({k: row[k] for k in Problem.model_fields if k in row}))
        except ValidationError as e:
            where = ", ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise DataFileError(f"{path}:{lineno}: not a Problem row ({where})") from None
    return problems


Kind = Literal["solve", "harder", "similar"]
Split = Literal["seed", "easy", "hard"]


class Candidate(BaseModel):
    """One teacher reply turned into a row: a program for a known problem, or a new problem with its program."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique row id, e.g. 'r1-harder-synthetic-seed-12-0'.")
    kind: Kind = Field(description="The request that produced it: solve, harder or similar.")
    question: str = Field(description="The problem (solve: the parent's; harder/similar: the new one; '' if unparsed).")
    program: str = Field(description="The program found in the reply ('' if none).")
    raw: str = Field(description="The raw reply text, kept for inspection.")
    parse_error: str | None = Field(default=None, description="Why the reply could not be parsed.")
    parent_id: str = Field(description="The problem this row was written from.")
    gold: str | None = Field(default=None, description="The parent's gold answer (solve requests on known problems).")
    round: int = Field(description="The FDD round that asked for it (0 = initialisation).")
    split: Split = Field(description="seed (initialisation), easy or hard (the parent's feedback split).")
    teacher_model: str = Field(description="litellm model name of the teacher.")
    prompt: str = Field(description="Prompt name and version, e.g. 'harder.v1'.")
    sample_index: int = Field(default=0, description="Which of the samples for the same request this is.")


class Decision(BaseModel):
    """What curation made of one candidate: accepted with its answer, or dropped with the reason."""

    model_config = ConfigDict(extra="forbid")

    candidate_id: str
    accepted: bool
    reason: str | None = Field(default=None, description="The filter that dropped it, e.g. 'wrong_answer'.")
    answer: str | None = Field(default=None, description="The program's answer when it ran.")
    detail: str = Field(default="", description="One line of context: the error message, the duplicate's id...")


class Example(BaseModel):
    """A training row: question -> program, with its answer and lineage."""

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    program: str
    answer: str
    source: str = Field(description="Where the question came from: a benchmark/seed name or 'generated'.")
    parent_id: str | None = None
    round: int = 0
    split: Split = "seed"
    teacher_model: str | None = None
    prompt: str | None = None


class Attempt(BaseModel):
    """One of the student's attempts at a pool problem."""

    model_config = ConfigDict(extra="forbid")

    program: str
    predicted: Any = Field(None, description="The program's answer (None when it did not run).")
    ok: bool
    error: str | None = Field(None, description="None, a sandbox error kind, no_program or wrong_answer.")


class AttemptRow(Problem):
    """A row of attempts.jsonl: a pool problem, the student's attempts and the split they decide."""

    split: Literal["easy", "hard"] = Field(description="easy when at least feedback.easy_min_correct attempts are right.")
    round: int = Field(description="The round whose student made the attempts.")
    correct: int = Field(description="Attempts whose answer matches the gold one.")
    attempts: list[Attempt]


class EvalRow(BaseModel):
    """A row of eval-<benchmark>.jsonl: the student's program for one problem, run and scored.

    Optional fields are written only when they apply (model_dump(exclude_unset=True)).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    program: str
    predicted: Any = None
    gold: str
    ok: bool = False
    error: str | None = Field("no_program", description="None, a sandbox error kind, no_program or wrong_answer.")
    message: str | None = Field(None, description="The sandbox's message when the program failed.")
    steps: int | None = Field(None, description="Synthetic problems: the number of reasoning steps.")
    strict: str | None = Field(None, description="The answer a strict reading of the generated text finds.")
    strict_ok: bool | None = None
    flexible: str | None = Field(None, description="The answer a flexible reading (last number) finds.")
    flexible_ok: bool | None = None
    text: str | None = Field(None, description="The raw generation, when extraction cut something away.")
