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
from fdd_core.store import DataFileError, finish_stage, finished_stage, iter_jsonl, write_jsonl
from fdd_core.user_problems import HUB_PREFIX, check_source, is_user_source, load_user_problems

SYNTHETIC_TEST = "synthetic-test"  # the held-out synthetic benchmark, drawn with the seeds from data.* and run.seed


def synthetic_splits(cfg: FDDConfig) -> tuple[list[Problem], list[Problem]]:
    """The run's synthetic seed problems and held-out test set (make_splits draws the test set from its own
    seeded stream, so every caller gets the same sets for the same config)."""
    return synthetic.make_splits(cfg.data.n_seed, cfg.data.n_synthetic_test, cfg.run.seed)


BUILTIN_SEED_SETS = ("synthetic", "gsm8k-train")


def check_run_values(cfg: FDDConfig) -> None:
    """The values of a valid config a run still cannot use (the schema cannot know them): ConfigError, one
    line naming the key and the allowed values, before anything is bought or trained. The user's local seed
    and benchmark files are read here, so a missing column or an unreadable answer stops the run at once."""
    data = cfg.data
    for name, bench in data.user_benchmarks.items():
        key = f"data.user_benchmarks.{name}"
        if name in BENCHMARKS or name == SYNTHETIC_TEST:
            raise ConfigError(f"{key}: {name!r} is a built-in benchmark's name; choose another")
        if not bench.path:
            raise ConfigError(f"{key}.path: empty; set a JSONL, CSV or Parquet file or hub:owner/name")
        _check_source(bench.path, f"{key}.path")
    known = [SYNTHETIC_TEST, *BENCHMARKS, *data.user_benchmarks]
    for name in data.benchmarks:
        if name not in known:
            hint = " (a file or Hub dataset goes in data.user_benchmarks under a name)" if is_user_source(name) else ""
            raise ConfigError(f"data.benchmarks: unknown benchmark {name!r}; known: {', '.join(known)}{hint}")
    if data.seed_set not in BUILTIN_SEED_SETS:
        if not is_user_source(data.seed_set):
            raise ConfigError(f"data.seed_set: {data.seed_set!r} is neither {', '.join(BUILTIN_SEED_SETS)}, a "
                              ".jsonl, .csv or .parquet file, nor hub:owner/name")
        _check_source(data.seed_set, "data.seed_set")
    if SYNTHETIC_TEST in data.benchmarks and data.seed_set != "synthetic":
        raise ConfigError(f"data.benchmarks: {SYNTHETIC_TEST} needs data.seed_set: synthetic "
                          f"(got {data.seed_set!r})")
    # local files are read now (a Hub dataset only when the data stage loads it)
    if is_user_source(data.seed_set) and not data.seed_set.startswith(HUB_PREFIX):
        _read_checked(lambda: seed_problems(cfg), "data.seed_set")
    for name in data.benchmarks:
        bench = data.user_benchmarks.get(name)
        if bench is not None and not bench.path.startswith(HUB_PREFIX):
            _read_checked(lambda: user_benchmark_problems(cfg, name), f"data.user_benchmarks.{name}")


def _check_source(text: str, key: str) -> None:
    try:
        check_source(text, key)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _read_checked(read, key: str) -> None:
    try:
        read()
    except DataFileError as e:
        raise ConfigError(f"{key}: {e}") from None


def seed_problems(cfg: FDDConfig) -> list[Problem]:
    """The run's seed problems (the first data.n_seed), for every seed set but synthetic (synthetic_splits)."""
    data = cfg.data
    if data.seed_set == "gsm8k-train":
        return load_benchmark("gsm8k-train", source=data.source, data_dir=data.data_dir, limit=data.n_seed).problems
    return load_user_problems(data.seed_set, data.seed_columns, split="train", limit=data.n_seed)


def user_benchmark_problems(cfg: FDDConfig, name: str) -> list[Problem]:
    """A benchmark of data.user_benchmarks (the first data.eval_limit)."""
    bench = cfg.data.user_benchmarks[name]
    return load_user_problems(bench.path, bench, name=name, split="test", limit=cfg.data.eval_limit)


def prepare_data(cfg: FDDConfig, out_dir: Path) -> DataResult:
    """seed.jsonl and benchmarks/NAME.jsonl for cfg.data; the synthetic split is fixed by run.seed."""
    check_run_values(cfg)
    started = time.monotonic()
    out_dir = Path(out_dir)
    data = cfg.data
    synthetic_test = []
    if data.seed_set == "synthetic":
        seeds, synthetic_test = synthetic_splits(cfg)
    else:
        seeds = seed_problems(cfg)
    outputs = {"seed": str(write_jsonl(out_dir / "seed.jsonl", seeds))}
    rows = {"seed": len(seeds)}
    for name in data.benchmarks:
        if name == SYNTHETIC_TEST:
            problems = synthetic_test[: data.eval_limit] if data.eval_limit else synthetic_test
        elif name in data.user_benchmarks:
            problems = user_benchmark_problems(cfg, name)
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
