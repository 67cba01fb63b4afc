"""The run's data stages: prepare the problems, grow the distillation set, list the pool feedback asks.

prepare_data writes the seed problems and every benchmark a round is evaluated on as Problem JSONL inside
the run directory, so later stages (and their cache keys) only ever see files. Each stage folder ends with
its MANIFEST (store.finish_stage); growing the set and listing the pool skip work their MANIFEST shows done.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from fdd_core import synthetic
from fdd_core.benchmarks import BENCHMARKS, load_benchmark
from fdd_core.config import FDDConfig
from fdd_core.config_files import ConfigError
from fdd_core.records import Example, Problem
from fdd_core.results import DataCounts, DataResult, PoolCounts, PoolResult, TrainingSetCounts, TrainingSetResult
from fdd_core.store import finish_stage, finished_stage, iter_jsonl, write_jsonl

SYNTHETIC_TEST = "synthetic-test"  # the held-out synthetic benchmark, drawn with the seeds from data.* and run.seed


def synthetic_splits(cfg: FDDConfig) -> tuple[list[Problem], list[Problem]]:
    """The run's synthetic seed problems and held-out test set (make_splits draws the test set from its own
    seeded stream, so every caller gets the same sets for the same config)."""
    return synthetic.make_splits(cfg.data.n_seed, cfg.data.n_synthetic_test, cfg.run.seed)


def check_run_values(cfg: FDDConfig) -> None:
    """The values of a valid config a run still cannot use (the schema cannot know them): ConfigError, one
    line naming the key and the allowed values, before anything is bought or trained."""
    known = [SYNTHETIC_TEST, *BENCHMARKS]
    for name in cfg.data.benchmarks:
        if name not in known:
            raise ConfigError(f"data.benchmarks: unknown benchmark {name!r}; known: {', '.join(known)}")
    if SYNTHETIC_TEST in cfg.data.benchmarks and cfg.data.seed_set != "synthetic":
        raise ConfigError(f"data.benchmarks: {SYNTHETIC_TEST} needs data.seed_set: synthetic "
                          f"(got {cfg.data.seed_set!r})")


def prepare_data(cfg: FDDConfig, out_dir: Path) -> DataResult:
    """seed.jsonl and benchmarks/<name>.jsonl for cfg.data; the synthetic split is fixed by run.seed."""
    check_run_values(cfg)
    started = time.monotonic()
    out_dir = Path(out_dir)
    data = cfg.data
    synthetic_test = []
    if data.seed_set == "synthetic":
        seeds, synthetic_test = synthetic_splits(cfg)
    else:
        seeds = load_benchmark("gsm8k-train", source=data.source, data_dir=data.data_dir, limit=data.n_seed).problems
    outputs = {"seed": str(write_jsonl(out_dir / "seed.jsonl", seeds))}
    rows = {"seed": len(seeds)}
    for name in data.benchmarks:
        if name == SYNTHETIC_TEST:
            problems = synthetic_test[: data.eval_limit] if data.eval_limit else synthetic_test
        else:
            problems = load_benchmark(name, source=data.source, data_dir=data.data_dir, limit=data.eval_limit).problems
        outputs[name] = str(write_jsonl(out_dir / "benchmarks" / f"{name}.jsonl", problems))
        rows[name] = len(problems)
    result = DataResult(outputs=outputs, counts=DataCounts(rows=rows), seconds=round(time.monotonic() - started, 3))
    return finish_stage(out_dir, {}, result)


def grow_training_set(previous: Path | None, accepted: Sequence[Path], out_dir: Path) -> TrainingSetResult:
    """D_{r+1} = D_r plus the accepted rows of this round (an id already present is kept once): out_dir/train.jsonl."""
    started = time.monotonic()
    inputs = ({"previous": previous} if previous else {}) | {f"accepted-{i}": p for i, p in enumerate(accepted)}
    done = finished_stage(out_dir, inputs, TrainingSetResult)
    if done is not None:
        return done
    rows: dict[str, Example] = {}
    for path in inputs.values():
        for _, row in iter_jsonl(path):
            example = Example.model_validate(row)
            rows.setdefault(example.id, example)
    out = write_jsonl(Path(out_dir) / "train.jsonl", rows.values())
    result = TrainingSetResult(outputs={"train": str(out)}, counts=TrainingSetCounts(examples=len(rows)),
                               seconds=round(time.monotonic() - started, 3))
    return finish_stage(out_dir, inputs, result)


def pool_from_training_set(train_path: Path, out_dir: Path) -> PoolResult:
    """The problems of a distillation set, once each, with their gold answers: what feedback asks the student
    (out_dir/pool.jsonl).

    A seed solution stands for its parent problem; a generated problem is its own, its program's
    (vote-checked) answer as gold.
    """
    started = time.monotonic()
    done = finished_stage(out_dir, {"train": train_path}, PoolResult)
    if done is not None:
        return done
    problems: dict[str, Problem] = {}
    for _, row in iter_jsonl(train_path):
        example = Example.model_validate(row)
        pid = example.parent_id if example.split == "seed" and example.parent_id else example.id
        problems.setdefault(pid, Problem(id=pid, question=example.question, answer=example.answer,
                                         source=example.source))
    out = write_jsonl(Path(out_dir) / "pool.jsonl",
                      (p.model_dump(mode="json", exclude={"solution"}) for p in problems.values()))
    result = PoolResult(outputs={"pool": str(out)}, counts=PoolCounts(pool=len(problems)),
                        seconds=round(time.monotonic() - started, 3))
    return finish_stage(out_dir, {"train": train_path}, result)
