"""Feedback stage: the student attempts every pool problem; a problem it gets right often enough is easy,
else hard. attempts.jsonl (Problem fields + split) is what the teacher's generate_variants reads next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from fdd_core.config import FDDConfig
from fdd_core.evaluate import score_programs
from fdd_core.config_files import ConfigError
from fdd_core.progress import track
from fdd_core.records import Attempt, AttemptRow, Problem, load_problems
from fdd_core.results import FeedbackCounts, FeedbackResult
from fdd_core.sandbox import Sandbox
from fdd_core.store import finish_stage, write_jsonl

log = logging.getLogger(__name__)

# Several attempts at temperature 0 would be one attempt repeated; this is used when none is configured.
SAMPLING_TEMPERATURE = 0.7


def attempt_rows(problems: Sequence[Problem], programs: Sequence[Sequence[str]], sandbox: Sandbox, *,
                 easy_min_correct: int, round_index: int) -> list[AttemptRow]:
    """One row per problem: its fields, split (easy when at least easy_min_correct attempts are right),
    round, correct (count) and attempts (program, predicted answer, ok, error kind of each)."""
    if len(problems) != len(programs):
        raise ValueError("one list of programs per problem")
    flat_problems = [p for p, tries in zip(problems, programs) for _ in tries]
    scored = iter(score_programs(flat_problems, [t for tries in programs for t in tries], sandbox))
    rows = []
    for problem, tries in zip(problems, programs):
        attempts = [next(scored) for _ in tries]
        correct = sum(a.ok for a in attempts)
        rows.append(AttemptRow(
            **problem.model_dump(), split="easy" if correct >= easy_min_correct else "hard", round=round_index,
            correct=correct,
            attempts=[Attempt(program=a.program, predicted=a.predicted, ok=a.ok, error=a.error) for a in attempts],
        ))
    return rows


def run_feedback(cfg: FDDConfig, model_path: Path, pool_path: Path, out_dir: Path, *,
                 round_index: int) -> FeedbackResult:
    """The student answers the pool samples_per_problem times (greedy for one attempt, sampled for more)
    and each problem is split easy/hard; writes out_dir/attempts.jsonl."""
    from fdd_core.student.infer import generate_programs

    started = time.monotonic()
    fb = cfg.feedback
    if fb.easy_min_correct > fb.samples_per_problem:
        raise ConfigError(f"feedback.easy_min_correct={fb.easy_min_correct} exceeds feedback.samples_per_problem="
                          f"{fb.samples_per_problem}: no problem could ever be easy")
    if fb.samples_per_problem == 1:
        inference = cfg.inference.model_copy(update={"temperature": 0.0})
    elif cfg.inference.temperature == 0:
        log.info("feedback: %d attempts per problem at temperature %s (inference.temperature is 0)",
                 fb.samples_per_problem, SAMPLING_TEMPERATURE)
        inference = cfg.inference.model_copy(update={"temperature": SAMPLING_TEMPERATURE})
    else:
        inference = cfg.inference
    pool = load_problems(pool_path)
    # a seed per round: a problem kept in the pool gets fresh attempts, not the last round's draws
    with track("feedback", "problems", len(pool)) as tracker:
        programs = generate_programs(model_path, [p.question for p in pool], inference,
                                     samples=fb.samples_per_problem, seed=cfg.run.seed + round_index,
                                     progress=tracker)
        with Sandbox.from_config(cfg.sandbox) as box:
            rows = attempt_rows(pool, programs, box, easy_min_correct=fb.easy_min_correct, round_index=round_index)
    path = write_jsonl(Path(out_dir) / "attempts.jsonl", rows)
    easy = sum(r.split == "easy" for r in rows)
    result = FeedbackResult(outputs={"attempts": str(path)},
                            counts=FeedbackCounts(pool=len(rows), easy=easy, hard=len(rows) - easy),
                            seconds=round(time.monotonic() - started, 3))
    return finish_stage(out_dir, {"pool": pool_path}, result)
