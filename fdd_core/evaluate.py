"""Evaluation stage: the student writes a program per benchmark problem, the sandbox runs it, and the answer
is compared with the gold one; per-row outputs and eval.json (accuracy per benchmark, per step count) result.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from fdd_core.answers import answers_match, extract_answer
from fdd_core.benchmarks import BENCHMARKS, BenchmarkError, load_benchmark
from fdd_core.config import FDDConfig
from fdd_core.progress import track
from fdd_core.sandbox import Sandbox
from fdd_core.records import EvalRow, Problem, load_problems
from fdd_core.results import EvalCounts, EvalResult
from fdd_core.store import atomic_write_text, finish_stage, write_jsonl
from fdd_core.run_data import SYNTHETIC_TEST, synthetic_splits
from fdd_core.synthetic import steps_of
from fdd_core.user_problems import load_user_problems

BenchmarkInput = Path | str | Sequence[Problem]


def resolve_benchmark(cfg: FDDConfig, name_or_path: str | Path) -> tuple[str, list[Problem]]:
    """(name, problems) for a benchmark name, `synthetic-test`, or a Problem JSONL file (named by its stem)."""
    text = str(name_or_path)
    if text in BENCHMARKS:
        return text, load_benchmark(text, source=cfg.data.source, data_dir=cfg.data.data_dir).problems
    if text == SYNTHETIC_TEST:
        return SYNTHETIC_TEST, synthetic_splits(cfg)[1]
    if text in cfg.data.user_benchmarks:
        bench = cfg.data.user_benchmarks[text]
        return text, load_user_problems(bench.path, bench, name=text, split="test")
    path = Path(text).expanduser()
    if path.is_file():
        return path.stem, load_problems(path)
    known = ", ".join([*BENCHMARKS, SYNTHETIC_TEST, *cfg.data.user_benchmarks])
    raise BenchmarkError(f"unknown benchmark {text!r}: not a benchmark name ({known}) and no such Problem JSONL file")


def resolve_benchmarks(cfg: FDDConfig, items: Sequence[str | Path]) -> dict[str, list[Problem]]:
    """name -> problems for benchmark names and Problem JSONL files; a repeated name gets a -2, -3 suffix."""
    sets: dict[str, list[Problem]] = {}
    for item in items:
        name, problems = resolve_benchmark(cfg, item)
        unique, k = name, 1
        while unique in sets:
            k += 1
            unique = f"{name}-{k}"
        sets[unique] = problems
    return sets


def _resolve_all(cfg: FDDConfig, benchmarks: Mapping[str, BenchmarkInput] | None,
                 limit: int | None) -> dict[str, list[Problem]]:
    if benchmarks is None:
        benchmarks = resolve_benchmarks(cfg, cfg.data.benchmarks)
    sets = {}
    for name, value in benchmarks.items():
        if isinstance(value, (str, Path)):
            value = resolve_benchmark(cfg, value)[1]
        sets[name] = list(value)[:limit] if limit is not None else list(value)
    return sets


def score_programs(problems: Sequence[Problem], programs: Sequence[str], sandbox: Sandbox, *,
                   texts: Sequence[str] | None = None) -> list[EvalRow]:
    """One row per problem: its program run in the sandbox and the answer compared with the gold one.

    error is None, a sandbox error kind, no_program (nothing to run) or wrong_answer. With `texts` (the raw
    generations) each row also gets the chain-of-thought readings: the strict ("#### N", "The answer is N")
    and flexible (last number) answers and whether they match.
    """
    if len(problems) != len(programs) or (texts is not None and len(texts) != len(problems)):
        raise ValueError("problems, programs and texts must have the same length")
    to_run = [i for i, program in enumerate(programs) if program.strip()]
    results = dict(zip(to_run, sandbox.run([programs[i] for i in to_run])))
    rows = []
    for i, (problem, program) in enumerate(zip(problems, programs)):
        row = EvalRow(id=problem.id, question=problem.question, program=program, predicted=None,
                      gold=problem.answer, ok=False, error="no_program")
        result = results.get(i)
        if result is not None and result.ok:
            row.predicted = result.answer
            row.ok = answers_match(result.answer, problem.answer)
            row.error = None if row.ok else "wrong_answer"
        elif result is not None:
            row.error, row.message = result.error.value, result.message
        steps = steps_of(problem)
        if steps is not None:
            row.steps = steps
        if texts is not None:
            row.strict = extract_answer(texts[i], "strict")
            row.strict_ok = answers_match(row.strict, problem.answer)
            row.flexible = extract_answer(texts[i], "flexible")
            row.flexible_ok = answers_match(row.flexible, problem.answer)
            if texts[i].strip() != program:
                row.text = texts[i]  # what extraction cut away is worth seeing when a row looks odd
        rows.append(row)
    return rows


def summarize(rows: Sequence[EvalRow]) -> dict:
    """eval.json's entry for one benchmark: rows, correct, accuracy, error counts; accuracy by step count for
    synthetic rows; strict/flexible answer accuracy when the rows carry those readings."""
    n = len(rows)
    correct = sum(r.ok for r in rows)
    summary: dict = {"rows": n, "correct": correct, "accuracy": correct / n if n else 0.0,
                     "errors": dict(Counter(r.error for r in rows if r.error).most_common())}
    by_steps: dict[int, list[EvalRow]] = {}
    for r in rows:
        if r.steps is not None:
            by_steps.setdefault(r.steps, []).append(r)
    if by_steps:
        summary["by_steps"] = {str(s): {"rows": len(rs), "accuracy": sum(r.ok for r in rs) / len(rs)}
                               for s, rs in sorted(by_steps.items())}
    if n and rows[0].strict_ok is not None:
        summary["answer_accuracy"] = {"strict": sum(bool(r.strict_ok) for r in rows) / n,
                                      "flexible": sum(bool(r.flexible_ok) for r in rows) / n}
    return summary


def file_name(benchmark: str) -> str:
    """eval-<benchmark>.jsonl with anything but letters, digits, dot, dash and underscore replaced."""
    return f"eval-{re.sub(r'[^A-Za-z0-9._-]', '_', benchmark)}.jsonl"


def evaluate_student(cfg: FDDConfig, model_path: Path, benchmarks: Mapping[str, BenchmarkInput] | None,
                     out_dir: Path, *, limit: int | None = None) -> EvalResult:
    """Accuracy of the student on each benchmark (None: cfg.data.benchmarks), the first `limit` problems
    of each (None: cfg.data.eval_limit). All benchmarks go through one generation call (the model loads once)."""
    from fdd_core.student.infer import generate_texts
    from fdd_core.student.prompting import program_from_generation

    started = time.monotonic()
    sets = _resolve_all(cfg, benchmarks, limit if limit is not None else cfg.data.eval_limit)
    problems = [p for ps in sets.values() for p in ps]
    gen_started = time.monotonic()
    with track("evaluate", "problems", len(problems)) as tracker:
        texts = [row[0] for row in generate_texts(model_path, [p.question for p in problems], cfg.inference,
                                                  seed=cfg.run.seed, progress=tracker)]
        gen_seconds = time.monotonic() - gen_started
        with Sandbox.from_config(cfg.sandbox) as box:
            rows = score_programs(problems, [program_from_generation(t) for t in texts], box, texts=texts)
    out_dir = Path(out_dir)
    outputs, summaries, start = {}, {}, 0
    for name, ps in sets.items():
        bench_rows = rows[start:start + len(ps)]
        start += len(ps)
        outputs[f"eval-{name}"] = str(write_jsonl(out_dir / file_name(name),
                                                  (r.model_dump(mode="json", exclude_unset=True) for r in bench_rows)))
        summaries[name] = summarize(bench_rows)
    report = {
        "student": str(model_path),
        "backend": cfg.inference.backend,
        "accuracy": {name: s["accuracy"] for name, s in summaries.items()},
        "benchmarks": summaries,
        "generation_seconds": round(gen_seconds, 3),
        "problems_per_second": round(len(problems) / gen_seconds, 3) if gen_seconds > 0 and problems else None,
    }
    outputs["eval"] = str(atomic_write_text(out_dir / "eval.json", json.dumps(report, indent=2) + "\n"))
    counts = EvalCounts(accuracy=report["accuracy"], rows={name: s["rows"] for name, s in summaries.items()})
    result = EvalResult(outputs=outputs, counts=counts, seconds=round(time.monotonic() - started, 3))
    files = {name: value for name, value in (benchmarks or {}).items() if isinstance(value, (str, Path))
             and Path(value).is_file()}
    return finish_stage(out_dir, files, result)
