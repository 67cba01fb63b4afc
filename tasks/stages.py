"""One thin Prefect task per fdd_core stage: retries where they help, the `gpu` tag, cache keys.

Tasks take paths and return the stage's typed result. Each calls exactly one fdd_core stage, which ends its
folder with a MANIFEST (fdd_core.store.finish_stage); a cache key's version changes with the stage's outputs.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from fdd_core.config import FDDConfig
from fdd_core.evaluate import evaluate_student
from fdd_core.feedback import run_feedback
from fdd_core.teacher.stages import generate_solutions, generate_variants
from fdd_core.results import DataResult, EvalResult, FeedbackResult, GenerationResult, PoolResult, TrainingSetResult
from fdd_core.results import TeacherUsage, TrainResult
from fdd_core.run_data import grow_training_set, pool_from_training_set, prepare_data
from fdd_core.report import stage_line
from fdd_core.results import StageResult
from fdd_core.store import read_jsonl
from fdd_core.student.factory import base_checkpoint
from fdd_core.student.train import train_student
from tasks.caching import retry_transient, stage_cache_key
from tasks.progress import progress_artifacts

TEACHER = ["teacher", "budget", "curation", "sandbox", "run.seed"]
STUDENT = ["student", "run.seed"]
HOUR = 3600
# Tasks with retries retry only what another try can fix (a timeout, a lost worker), never a bad setting or bad data
# (retry_transient). Cache keys leave out settings that change speed, not outputs (tasks.caching.NOT_IN_OUTPUTS):
# versions 4 (teacher stages) and 3 (evaluate, feedback) are the first without them; train reads none (its 3:
# training targets store the answer in `ans`, prompting.as_prompted; its 4: only where the prompt asks for it).

# What the run spent before a teacher stage, and who the run is: they set where the budget starts, not what a
# finished stage produced, so a resumed run finds its finished stages whatever came before them
LEDGER = ["spent", "run"]


def _logged(result: StageResult) -> StageResult:
    """The stage's one line in the run's log (its key numbers), then its result."""
    get_run_logger().info(stage_line(result))
    return result


# Cheap, deterministic stages are not cached across runs: redoing them costs less than checking them.
@task(name="prepare-data", cache_policy=NO_CACHE)
def prepare_data_task(cfg: FDDConfig, out_dir: str) -> DataResult:
    return _logged(prepare_data(cfg, Path(out_dir)))


@task(name="generate-solutions", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      timeout_seconds=12 * HOUR,
      cache_key_fn=stage_cache_key("generate_solutions", 4, TEACHER, ["problems"], LEDGER), persist_result=True)
def generate_solutions_task(cfg: FDDConfig, problems: str, out_dir: str, spent: TeacherUsage | None = None,
                            run: str | None = None) -> GenerationResult:
    with progress_artifacts():
        return _logged(generate_solutions(cfg, Path(problems), Path(out_dir), round_index=0, spent=spent, run=run))


@task(name="grow-training-set", cache_policy=NO_CACHE)
def grow_training_set_task(previous: str | None, accepted: list[str], out_dir: str) -> TrainingSetResult:
    return _logged(grow_training_set(Path(previous) if previous else None, [Path(p) for p in accepted],
                                     Path(out_dir)))


# Not cached by Prefect: base_checkpoint itself reuses the run's base folder when it is there and was built from
# the same student config, and builds it when it is not (a cached path could name a folder since deleted).
@task(name="base-checkpoint", tags=["gpu"], cache_policy=NO_CACHE)
def base_checkpoint_task(cfg: FDDConfig, run_dir: str, train: str) -> str:
    started = time.monotonic()
    texts = [text for row in read_jsonl(train) for text in (row["question"], row["program"])]
    base = str(base_checkpoint(cfg, Path(run_dir), texts))
    # its seconds, as every other stage's MANIFEST has them: a run's time is its stages' and Prefect's
    get_run_logger().info(f"base checkpoint: {base} ({time.monotonic() - started:.2f} s)")
    return base


@task(name="train", tags=["gpu"], timeout_seconds=24 * HOUR, persist_result=True,
      cache_key_fn=stage_cache_key("train", 4, [*STUDENT, "training"], ["train", "base", "previous"]))
def train_task(cfg: FDDConfig, train: str, out_dir: str, base: str, previous: str | None = None) -> TrainResult:
    with progress_artifacts():
        return _logged(train_student(cfg, Path(train), Path(out_dir), base=base,
                                     previous=Path(previous) if previous else None))


@task(name="evaluate", tags=["gpu"], retries=1, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      timeout_seconds=6 * HOUR, persist_result=True,
      cache_key_fn=stage_cache_key("evaluate", 3, ["inference", "sandbox", "data.eval_limit", "run.seed"],
                                   ["model", "benchmarks"]))
def evaluate_task(cfg: FDDConfig, model: str, benchmarks: dict[str, str], out_dir: str) -> EvalResult:
    with progress_artifacts():
        return _logged(evaluate_student(cfg, Path(model), {name: Path(p) for name, p in benchmarks.items()},
                                        Path(out_dir)))


@task(name="feedback", tags=["gpu"], retries=1, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      timeout_seconds=6 * HOUR, persist_result=True,
      cache_key_fn=stage_cache_key("feedback", 3, ["inference", "feedback", "sandbox", "run.seed"], ["model", "pool"]))
def feedback_task(cfg: FDDConfig, model: str, pool: str, out_dir: str, round_index: int) -> FeedbackResult:
    with progress_artifacts():
        return _logged(run_feedback(cfg, Path(model), Path(pool), Path(out_dir), round_index=round_index))


@task(name="pool", cache_policy=NO_CACHE)
def pool_task(train: str, out_dir: str) -> PoolResult:
    return _logged(pool_from_training_set(Path(train), Path(out_dir)))


@task(name="generate-variants", retries=2, retry_delay_seconds=10, retry_condition_fn=retry_transient,
      timeout_seconds=12 * HOUR, persist_result=True,
      cache_key_fn=stage_cache_key("generate_variants", 4, [*TEACHER, "feedback"], ["attempts", "train", "tests"],
                                   LEDGER))
def generate_variants_task(cfg: FDDConfig, attempts: str, out_dir: str, round_index: int, train: str,
                           tests: list[str], spent: TeacherUsage | None = None, run: str | None = None
                           ) -> GenerationResult:
    with progress_artifacts():
        return _logged(generate_variants(cfg, Path(attempts), Path(out_dir), round_index=round_index,
                                         train_path=Path(train), test_paths=[Path(p) for p in tests], spent=spent,
                                         run=run))
