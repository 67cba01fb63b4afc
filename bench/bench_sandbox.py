"""Programs per second on the GSM-Hard reference programs: the warm sandbox pool against one interpreter per program.

Usage: python bench/bench_sandbox.py [--data-dir DIR] [--baseline-programs 100] [--repeats 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from fdd_core.sandbox import Sandbox

# The naive baseline: a fresh interpreter per program, no sandboxing at all (so it flatters the baseline).
BASELINE_RUNNER = (
    "import sys\n"
    "ns = {}\n"
    "exec(sys.stdin.read(), ns)\n"
    "print(ns['solution']() if callable(ns.get('solution')) else ns.get('ans'))\n"
)


def default_data_dir() -> Path:
    return Path(os.environ.get("FDD_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def load_programs(data_dir: Path) -> tuple[list[str], list[float]]:
    rows = [json.loads(line) for line in (data_dir / "gsm-hard" / "gsmhardv2.jsonl").open()]
    return [row["code"] for row in rows], [row["target"] for row in rows]


def count_correct(answers: list, targets: list[float]) -> int:
    return sum(
        isinstance(a, (int, float)) and math.isclose(a, t, rel_tol=1e-6, abs_tol=1e-6) for a, t in zip(answers, targets)
    )


def bench_pool(programs: list[str], targets: list[float], repeats: int) -> dict:
    start = time.perf_counter()
    sandbox = Sandbox()
    sandbox.run(["ans = 1"] * (4 * (os.cpu_count() or 1)))  # every worker started and answering
    startup_s = time.perf_counter() - start
    try:
        best_s, answers = math.inf, []
        for _ in range(repeats):
            start = time.perf_counter()
            results = sandbox.run(programs)
            best_s = min(best_s, time.perf_counter() - start)
            answers = [r.answer for r in results]
    finally:
        sandbox.close()
    return {
        "programs": len(programs),
        "best_seconds": best_s,
        "programs_per_s": len(programs) / best_s,
        "startup_s": startup_s,
        "correct": count_correct(answers, targets),
    }


def bench_baseline(programs: list[str], targets: list[float]) -> dict:
    start = time.perf_counter()
    answers = []
    for source in programs:
        done = subprocess.run([sys.executable, "-c", BASELINE_RUNNER], input=source, capture_output=True, text=True)
        try:
            answers.append(float(done.stdout.strip()))
        except ValueError:
            answers.append(None)
    seconds = time.perf_counter() - start
    return {
        "programs": len(programs),
        "seconds": seconds,
        "programs_per_s": len(programs) / seconds,
        "correct": count_correct(answers, targets),
    }


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "root": os.geteuid() == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--baseline-programs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    programs, targets = load_programs(args.data_dir)
    report = {"machine": machine()}
    report["pool"] = bench_pool(programs, targets, args.repeats)
    n = args.baseline_programs
    report["baseline"] = bench_baseline(programs[:n], targets[:n])
    report["speedup"] = report["pool"]["programs_per_s"] / report["baseline"]["programs_per_s"]

    m, pool, base = report["machine"], report["pool"], report["baseline"]
    print(f"machine: {m['cpu_count']} CPUs, {m['implementation']} {m['python']}, {m['platform']}, root={m['root']}")
    print(
        f"pool:     {pool['programs_per_s']:8.0f} programs/s  ({pool['programs']} programs, best of "
        f"{args.repeats}: {pool['best_seconds']:.3f} s; {pool['correct']} correct; startup {pool['startup_s']:.3f} s)"
    )
    print(
        f"baseline: {base['programs_per_s']:8.1f} programs/s  ({base['programs']} programs, one interpreter each: "
        f"{base['seconds']:.2f} s; {base['correct']} correct)"
    )
    print(f"speedup:  {report['speedup']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
