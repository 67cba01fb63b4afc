"""What crosses a stage boundary: each stage's result with its typed counts, the teacher's usage, and the round
summary the parent flow turns into a report row. Flows and the command line read attributes, never string keys.

A result holds paths and small numbers, never models or big lists (Prefect stores results and hashes inputs).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def format_usd(usd: float | None) -> str:
    """'$0.0123', or 'unknown' for a cost nobody knows (never shown as $0)."""
    return "unknown" if usd is None else f"${usd:.4f}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeacherUsage(_Record):
    """What a stage asked of the teacher; cost_usd is None when the model's price is unknown."""

    requests: int = Field(0, description="Paid requests that returned a reply.")
    cached: int = Field(0, description="Replies served from the response store (free).")
    failed: int = Field(0, description="Requests that failed after retries.")
    skipped_budget: int = Field(0, description="Requests not sent because the budget was reached.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    saved_usd: float | None = Field(0.0, description="Spend the response store saved.")

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TeacherUsage) -> TeacherUsage:
        """The usage of two stages together; an unknown cost stays unknown."""
        cost = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd
        saved = None if self.saved_usd is None or other.saved_usd is None else self.saved_usd + other.saved_usd
        numbers = {k: getattr(self, k) + getattr(other, k) for k in
                   ("requests", "cached", "failed", "skipped_budget", "prompt_tokens", "completion_tokens")}
        return TeacherUsage(**numbers, cost_usd=cost, saved_usd=saved)


# ------------------------------------------------------------------------------------------------- stage counts
class DataCounts(_Record):
    rows: dict[str, int] = Field(description="Problems written per set: 'seed' and each benchmark.")


class CurationCounts(_Record):
    candidates: int = Field(description="Teacher replies turned into rows.")
    accepted: int = Field(description="Rows that passed every filter.")
    dropped: dict[str, int] = Field(description="Rows dropped per reason (every reason, zeros included).")

    def nothing_usable(self) -> str | None:
        """Why a stage that accepted no row ends the run (retraining on an unchanged set would repeat the round),
        e.g. 'the teacher wrote nothing usable: 30 of 30 dropped as parse_error'; None when a row was accepted."""
        if self.accepted:
            return None
        if not self.candidates:
            return "the teacher wrote nothing usable: no candidate to curate"
        reasons = ", ".join(f"{reason} ({n})" if len(self.dropped) > 1 and n != self.candidates else reason
                            for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1]) if n)
        return f"the teacher wrote nothing usable: {self.candidates} of {self.candidates} dropped as {reasons}"


class BaselineRow(_Record):
    """The base student evaluated before round 0: the report's 'base' row, what every round is measured against."""

    model: str = Field(description="The base checkpoint evaluated (a folder or a Hub id).")
    accuracy: dict[str, float] = Field(description="Accuracy per benchmark.")
    seconds: float

    @field_validator("seconds")
    @classmethod
    def _tenths(cls, seconds: float) -> float:
        return round(float(seconds), 1)


class TrainingSetCounts(_Record):
    examples: int = Field(description="Rows of the distillation set.")


class PoolCounts(_Record):
    pool: int = Field(description="Distinct problems the student is asked in feedback.")


class TrainCounts(_Record):
    examples: int = Field(description="Examples trained on.")
    too_long: int = Field(description="Examples left out for being longer than student.max_length.")
    steps: int
    train_loss: float
    first_loss: float | None
    final_loss: float | None


class EvalCounts(_Record):
    accuracy: dict[str, float] = Field(description="Accuracy per benchmark.")
    rows: dict[str, int] = Field(description="Problems evaluated per benchmark.")


class FeedbackCounts(_Record):
    pool: int
    easy: int
    hard: int


# ------------------------------------------------------------------------------------------------ stage results
class StageResult(_Record):
    """What a stage returns: its output paths, typed counts, seconds and, for teacher stages, usage."""

    stage: str
    outputs: dict[str, str] = Field(default_factory=dict, description="Output name -> file or folder path.")
    seconds: float = 0.0


class DataResult(StageResult):
    stage: Literal["prepare_data"] = "prepare_data"
    counts: DataCounts


class GenerationResult(StageResult):
    stage: Literal["generate_solutions", "generate_variants"]
    counts: CurationCounts
    teacher: TeacherUsage


class TrainingSetResult(StageResult):
    stage: Literal["grow_training_set"] = "grow_training_set"
    counts: TrainingSetCounts


class PoolResult(StageResult):
    stage: Literal["pool"] = "pool"
    counts: PoolCounts


class TrainResult(StageResult):
    stage: Literal["train"] = "train"
    counts: TrainCounts


class EvalResult(StageResult):
    stage: Literal["evaluate"] = "evaluate"
    counts: EvalCounts


class FeedbackResult(StageResult):
    stage: Literal["feedback"] = "feedback"
    counts: FeedbackCounts


# ------------------------------------------------------------------------------------------------------ a round
class RoundTeacher(_Record):
    """The teacher cell of a report row (report.json's stable schema)."""

    requests: int = Field(0, description="Replies this run paid for (in any invocation).")
    cached: int = Field(0, description="Replies the response store served free (bought by another run).")
    tokens: int = 0
    cost_usd: float | None = Field(0.0, description="What the paid replies cost; None when the price is unknown.")
    saved_usd: float | None = Field(0.0, description="What the free replies would have cost; None when unknown.")

    @classmethod
    def of(cls, usage: TeacherUsage) -> RoundTeacher:
        return cls(requests=usage.requests, cached=usage.cached, tokens=usage.tokens, cost_usd=usage.cost_usd,
                   saved_usd=usage.saved_usd)


class RoundRow(_Record):
    """One round of report.json: what the round's data cost and what the student scored."""

    round: int
    train_size: int
    easy: int = 0
    hard: int = 0
    candidates: int = 0
    accepted: int = 0
    teacher: RoundTeacher = Field(default_factory=RoundTeacher)
    accuracy: dict[str, float]
    seconds: float
    paid_per_row: float | None = Field(
        None, description="Paid teacher requests per training row the round's teacher work added (None: no row).")

    @field_validator("seconds")
    @classmethod
    def _tenths(cls, seconds: float) -> float:
        return round(float(seconds), 1)


class RoundSummary(_Record):
    """What the round subflow hands the parent: the report's numbers and where the run goes next."""

    model: str = Field(description="This round's student.")
    train_size: int
    accuracy: dict[str, float]
    seconds: float
    easy: int = 0
    hard: int = 0
    candidates: int = 0
    accepted: int = 0
    teacher: TeacherUsage = Field(default_factory=TeacherUsage)
    next_train: str | None = Field(None, description="The grown distillation set for the next round.")
    stop: str | None = Field(None, description="Why the run ends after this round (None: it goes on).")

    def row(self, round_index: int, *, extra: TeacherUsage | None = None, extra_seconds: float = 0.0,
            extra_rows: int = 0) -> RoundRow:
        """The report row; `extra` adds work done for this round outside it (round 0: the seed solutions, whose
        accepted rows are `extra_rows`)."""
        usage = self.teacher + extra if extra is not None else self.teacher
        rows = self.accepted + extra_rows
        return RoundRow(round=round_index, train_size=self.train_size, easy=self.easy, hard=self.hard,
                        candidates=self.candidates, accepted=self.accepted, teacher=RoundTeacher.of(usage),
                        accuracy=self.accuracy, seconds=self.seconds + extra_seconds,
                        paid_per_row=round(usage.requests / rows, 2) if rows else None)


class RunTotals(_Record):
    """The whole run's teacher spend, against the distillation set it bought."""

    teacher: RoundTeacher
    train_size: int = Field(description="Rows of the last round's distillation set.")
    paid_per_row: float | None = Field(description="Paid teacher requests per row of that set.")

    @classmethod
    def of(cls, rows: list[RoundRow]) -> RunTotals:
        usage = TeacherUsage()
        for r in rows:
            t = r.teacher
            usage = usage + TeacherUsage(requests=t.requests, cached=t.cached, prompt_tokens=t.tokens,
                                         cost_usd=t.cost_usd, saved_usd=t.saved_usd)
        size = rows[-1].train_size if rows else 0
        return cls(teacher=RoundTeacher.of(usage), train_size=size,
                   paid_per_row=round(usage.requests / size, 2) if size else None)


class RunResult(_Record):
    """What the `fdd` flow returns."""

    run_dir: str
    report: str = Field(description="Path of report.json.")
    rounds: list[RoundRow]
    totals: RunTotals
    baseline: BaselineRow | None = Field(None, description="The base student before round 0 (None: not evaluated).")
    stop: str | None = Field(None, description="Why the run ended after its last round.")
