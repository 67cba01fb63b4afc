"""The paper's effects on the embedded domain, against baselines, in one run (offline teacher, fixed seeds).

For each seed (run.seed: the synthetic split, sampling and training), with the demo profile otherwise:
  plain     plain distillation: one round on the seed solutions (FDD's round 0)
  budget    plain distillation with the teacher requests FDD spent in all its rounds, spent on more seed
            problems (the same k paths each; the first 400 seeds are FDD's own)
  fdd-rN    FDD after N feedback rounds (N = 1 .. --rounds)
  k=K       plain distillation with K reasoning paths per seed problem (the paths sweep)
Every student but budget trains the same number of steps (training.max_steps of the profile), so those rows differ
only in their data; budget trains as many epochs as FDD's last round (more steps over its bigger set). Each row:
held-out synthetic accuracy overall and by number of steps, teacher requests used.
Leakage: for every problem FDD generated, its highest word-bag similarity (the curation's measure) to any
test problem, as a histogram against the same figure for each test problem to the rest of the test set.

Every configuration is an ordinary `fdd run` (subprocess) under --workdir, one after another, so an interrupted
benchmark resumes where it stopped. With --deployment fdd/sweep, each is instead a flow run of that Prefect
deployment, submitted at once (bench/_sweep.py): N workers run N configurations at the same time; `budget-sS`
is submitted when `fdd-sS` completed (it spends what FDD spent). The tables are made from the run directories
either way. Writes method.json, method.md and PNG plots to --out. --profile smoke makes every configuration small.

Usage: python bench/bench_method.py [--profile full|smoke] [--seeds 0 1 2] [--rounds 3] [--k 1 2 4]
       [--out docs/results] [--workdir bench-runs/method] [--set key=value ...] [--deployment fdd/sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fdd_core.config_files import ConfigError, load_config  # noqa: E402
from fdd_core.run_data import check_run_values  # noqa: E402
from fdd_core.similarity import jaccard, word_bag  # noqa: E402
from fdd_core.synthetic import SEED_STEP_WEIGHTS  # noqa: E402
from fdd_core.store import atomic_write_text, iter_jsonl  # noqa: E402

BENCH = "synthetic-test"


def fdd_run(workdir: Path, name: str, sets: list[str]) -> dict:
    """`fdd run` on the demo profile with overrides; its report.json (resumed from cache when it exists)."""
    args = [str(Path(sys.executable).parent / "fdd"), "run", "--config", "demo",
            "--set", f"run.runs_dir={workdir}", "--set", f"run.name={name}", *[a for s in sets for a in ("--set", s)]]
    started = time.monotonic()
    log = workdir / f"{name}.log"
    workdir.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        code = subprocess.run(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"fdd run {name} failed (exit {code}); see {log}")
    report = json.loads((workdir / name / "report.json").read_text())
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    return report


def by_steps(run_dir: Path, round_: int) -> dict[str, float]:
    summary = json.loads((run_dir / "rounds" / f"r{round_}" / "eval" / "eval.json").read_text())
    return {s: v["accuracy"] for s, v in summary["benchmarks"][BENCH]["by_steps"].items()}


def used(teacher: dict) -> int:
    """Teacher replies a row's data cost: bought now or earlier (the runs of a seed share one reply cache)."""
    return teacher["requests"] + teacher["cached"]


def row(name: str, seed: int, report: dict, run_dir: Path, round_: int, requests: int) -> dict:
    return {"row": name, "seed": seed, "accuracy": report["rounds"][round_]["accuracy"][BENCH],
            "by_steps": by_steps(run_dir, round_), "requests": requests,
            "train_size": report["rounds"][round_]["train_size"]}


def max_similarity(queries: list[str], corpus: list[str], skip_self: bool = False) -> list[float]:
    """For each query, its highest word-bag Jaccard similarity to any corpus text (all pairs, exact)."""
    bags = [word_bag(t) for t in corpus]
    out = []
    for i, q in enumerate(queries):
        a, best = word_bag(q), 0.0
        for j, b in enumerate(bags):
            if skip_self and i == j:
                continue
            best = max(best, jaccard(a, b))
        out.append(best)
    return out


def leakage(workdir: Path, seed: int) -> dict:
    run_dir = workdir / f"fdd-s{seed}"
    tests = [r["question"] for _, r in iter_jsonl(run_dir / "data" / "benchmarks" / f"{BENCH}.jsonl")]
    generated = [r["question"] for path in sorted(run_dir.glob("rounds/r*/variants/accepted.jsonl"))
                 for _, r in iter_jsonl(path)]
    reasons = Counter(d["reason"] or "accepted" for path in sorted(run_dir.glob("rounds/r*/variants/decisions.jsonl"))
                      for _, d in iter_jsonl(path))
    return {"generated": max_similarity(generated, tests), "test_vs_test": max_similarity(tests, tests, True),
            "decisions": reasons}


def spread(values: list[float]) -> float:
    return max(values) - min(values) if values else 0.0


def summarise(rows: list[dict]) -> list[dict]:
    names = list(dict.fromkeys(r["row"] for r in rows))
    out = []
    for name in names:
        rs = [r for r in rows if r["row"] == name]
        steps = sorted({s for r in rs for s in r["by_steps"]}, key=int)
        out.append({
            "row": name, "seeds": len(rs),
            "accuracy": statistics.mean(r["accuracy"] for r in rs), "spread": spread([r["accuracy"] for r in rs]),
            "by_steps": {s: statistics.mean(r["by_steps"].get(s, 0.0) for r in rs) for s in steps},
            "requests": statistics.mean(r["requests"] for r in rs),
            "train_size": statistics.mean(r["train_size"] for r in rs),
        })
    return out


def gain_by_steps(row_: dict, base: dict) -> dict[str, float]:
    """Accuracy points a row gains over a baseline, per number of steps in the test problem."""
    return {s: row_["by_steps"][s] - base["by_steps"].get(s, 0.0) for s in sorted(row_["by_steps"], key=int)}


def tier_check(gains: dict[str, float], name: str, base: str = "plain") -> str:
    """Mean gain over `base` on test problems as long as the seeds against those longer than any seed problem."""
    seed_max = max(SEED_STEP_WEIGHTS)
    short = [g for s, g in gains.items() if int(s) <= seed_max]
    long = [g for s, g in gains.items() if int(s) > seed_max]
    if not short or not long:
        return f"{name} gain by length: the test set has no problems on one side of the seeds' {seed_max} steps"
    a, b = statistics.mean(short), statistics.mean(long)
    verdict = "largest on the longest" if b > a else "NOT largest on the longest"
    return (f"{name} gain over {base}, mean by length: within the seeds' lengths (1-{seed_max} steps) {a:+.0%},"
            f" longer than any seed ({seed_max + 1}-{max(int(s) for s in gains)} steps) {b:+.0%}: {verdict}")


def markdown(summary: list[dict], checks: list[str], machine: str) -> str:
    steps = sorted({s for r in summary for s in r["by_steps"]}, key=int)
    head = ["row", "seeds", "accuracy", "spread", *[f"{s} steps" for s in steps], "teacher requests", "train size"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        cells = [r["row"], str(r["seeds"]), f"{r['accuracy']:.1%}", f"{r['spread']:.1%}",
                 *[f"{r['by_steps'].get(s, 0.0):.0%}" for s in steps], f"{r['requests']:,.0f}",
                 f"{r['train_size']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([f"Machine: {machine}", "", *lines, "", *[f"- {c}" for c in checks], ""])


def plots(summary: list[dict], leak: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, path: Path) -> str:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path.name

    written = []
    main = [r for r in summary if not r["row"].startswith("k=")]
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in main:
        steps = sorted(r["by_steps"], key=int)
        ax.plot([int(s) for s in steps], [r["by_steps"][s] for s in steps], marker="o", label=r["row"])
    ax.set(xlabel="steps in the test problem", ylabel="held-out accuracy", ylim=(0, 1.02),
           title="Accuracy by problem length (mean over seeds)")
    ax.legend()
    written.append(save(fig, out / "method_by_steps.png"))

    by_name = {r["row"]: r for r in summary}
    if "plain" in by_name:
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in main:
            if r["row"] != "plain":
                gains = gain_by_steps(r, by_name["plain"])
                ax.plot([int(s) for s in gains], list(gains.values()), marker="o", label=r["row"])
        ax.axvline(max(SEED_STEP_WEIGHTS) + 0.5, color="grey", linestyle=":", label="longest seed problem")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="steps in the test problem", ylabel="accuracy gained over plain",
               title="Gain over plain distillation by problem length")
        ax.legend()
        written.append(save(fig, out / "method_gain.png"))

    ks = [r for r in summary if r["row"].startswith("k=")]
    if ks:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.bar([r["row"] for r in ks], [r["accuracy"] for r in ks], yerr=[r["spread"] / 2 for r in ks], capsize=4)
        ax.set(ylabel="held-out accuracy", title="Reasoning paths per seed problem (plain distillation)")
        written.append(save(fig, out / "method_paths.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = [i / 20 for i in range(21)]
    ax.hist(leak["test_vs_test"], bins=bins, density=True, alpha=0.6, label="test item vs rest of the test set")
    ax.hist(leak["generated"], bins=bins, density=True, alpha=0.6, label="generated problem vs test set")
    ax.set(xlabel="highest word-bag similarity to a test problem", ylabel="density", title="Leakage")
    ax.legend()
    written.append(save(fig, out / "method_leakage.png"))
    return written


def write_outputs(rows: list[dict], leak: dict, a: argparse.Namespace, started: float) -> str:
    """Summaries, checks, plots, method.json and method.md for the rows so far (written after every seed)."""
    summary = summarise(rows)
    by_name = {r["row"]: r for r in summary}
    last = by_name.get(f"fdd-r{a.rounds}")
    checks = []
    if last:
        for base in ("plain", "budget"):
            gap = last["accuracy"] - by_name[base]["accuracy"]
            noise = max(last["spread"], by_name[base]["spread"])
            verdict = ("one seed: no spread yet" if last["seeds"] < 2 else
                       "beats it by more than the spread" if gap > noise else "NOT beyond the spread")
            checks.append(f"fdd-r{a.rounds} - {base}: {gap:+.1%} (largest spread across seeds {noise:.1%}): {verdict}")
        for n in range(1, a.rounds + 1):
            gains = gain_by_steps(by_name[f"fdd-r{n}"], by_name["plain"])
            top = max(gains, key=gains.get)
            checks.append(f"fdd-r{n} gain over plain by steps: " + ", ".join(f"{s}: {g:+.0%}" for s, g in gains.items())
                          + f" (largest at {top} steps)")
        checks.append(tier_check(gain_by_steps(last, by_name["plain"]), f"fdd-r{a.rounds}"))
        # against the same teacher spend on more seed problems: what the feedback's choice of problems adds
        checks.append(tier_check(gain_by_steps(last, by_name["budget"]), f"fdd-r{a.rounds}", "budget"))
    g, t = leak["generated"], leak["test_vs_test"]
    if g and t:
        checks.append(f"leakage: generated problems' highest similarity to a test problem: median {statistics.median(g):.2f},"
                      f" max {max(g):.2f}; test problems to the rest of the test set: median {statistics.median(t):.2f},"
                      f" max {max(t):.2f}")
        d = leak["decisions"]
        checks.append(f"generated candidates (all seeds and rounds): {sum(d.values()):,}, accepted {d.get('accepted', 0):,},"
                      f" dropped as contaminated (a benchmark test item's text) {d.get('contaminated', 0):,}; other drops: "
                      + ", ".join(f"{k} {v:,}" for k, v in sorted(d.items()) if k not in ("accepted", "contaminated")))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    a.out.mkdir(parents=True, exist_ok=True)
    images = plots(summary, leak, a.out)
    result = {"machine": machine, "seeds": a.seeds, "rounds": a.rounds, "rows": rows, "summary": summary,
              "checks": checks, "seconds": round(time.monotonic() - started, 1), "images": images,
              "leakage": {k: sorted(round(x, 4) for x in leak[k]) for k in ("generated", "test_vs_test")},
              "decisions": leak["decisions"],
              "command": "python bench/bench_method.py " + " ".join(sys.argv[1:])}
    atomic_write_text(a.out / "method.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(a.out / "method.md", markdown(summary, checks, machine))
    return markdown(summary, checks, machine)


PROFILES = {
    "full": {"seeds": [0, 1, 2], "rounds": 3, "k": [1, 2, 4], "sets": []},
    # every configuration small (a few minutes in all on 2 CPU cores): a check that the benchmark runs, not a result
    "smoke": {"seeds": [0], "rounds": 1, "k": [1, 2],
              "sets": ["data.n_seed=12", "data.n_synthetic_test=12", "training.max_steps=4",
                       "inference.max_new_tokens=32"]},
}


def common_sets(a: argparse.Namespace, workdir: Path, seed: int) -> list[str]:
    """Overrides every run of a seed has: the seed, and one response store the seed's runs share."""
    return [*a.sets, f"run.seed={seed}", f"teacher.cache_path={workdir / f'teacher-s{seed}.sqlite'}"]


def first_wave(a: argparse.Namespace, workdir: Path, seed: int, k: int) -> dict[str, list[str]]:
    """A seed's configurations that need no other run's result: FDD itself and the paths sweep's other k."""
    common = common_sets(a, workdir, seed)
    runs = {f"fdd-s{seed}": [*common, f"run.rounds={a.rounds}"]}
    for kk in a.k:
        if kk != k:  # k = the profile's k_solutions: FDD's round 0 is that row
            runs[f"k{kk}-s{seed}"] = [*common, "run.rounds=0", f"teacher.k_solutions={kk}"]
    return runs


def budget_run(a: argparse.Namespace, workdir: Path, seed: int, report: dict) -> tuple[str, list[str]]:
    """Plain distillation with the teacher requests FDD spent in all its rounds (needs FDD's report), trained as many
    epochs as FDD's last round was: its set is ~2x bigger, and in FDD's steps it learned little (18% held-out against
    plain's 30% at 600 steps, 2.6 epochs), which made it a straw man rather than the same spend, learned as well."""
    spent = sum(used(r["teacher"]) for r in report["rounds"])
    k, n_seed = report["config"]["teacher"]["k_solutions"], report["config"]["data"]["n_seed"]
    n_budget = max(n_seed, round(spent / k))
    epochs = fdd_epochs(report)
    train = ["training.max_steps=null", f"training.epochs={epochs:.4f}"] if epochs else []
    return f"budget-s{seed}", [*common_sets(a, workdir, seed), "run.rounds=0", f"data.n_seed={n_budget}", *train]


def fdd_epochs(report: dict) -> float | None:
    """Epochs FDD's last round trained over its set, or None when it trained by epochs already."""
    tc = report["config"]["training"]
    if not tc.get("max_steps"):
        return None
    rows = report["rounds"][-1]["train_size"]
    return tc["max_steps"] * tc["batch_size"] * tc["gradient_accumulation_steps"] / max(1, rows)


def seed_rows(a: argparse.Namespace, workdir: Path, seed: int, k: int, report_of) -> list[dict]:
    """A seed's rows; report_of(name, overrides) gives the report.json of that configuration's run."""
    wave = first_wave(a, workdir, seed, k)
    name = f"fdd-s{seed}"
    report = report_of(name, wave[name])
    run_dir = workdir / name
    rows = []
    # plain distillation paid only for the seed solutions; FDD after N rounds for rounds 0..N-1 (round 0's
    # requests include the solutions)
    solutions = json.loads((run_dir / "rounds" / "r0" / "solutions" / "MANIFEST.json").read_text())
    plain_requests = used(solutions["result"]["teacher"])
    rows.append(row("plain", seed, report, run_dir, 0, plain_requests))
    spent = 0
    for r in report["rounds"]:
        if r["round"] > 0:
            rows.append(row(f"fdd-r{r['round']}", seed, report, run_dir, r["round"], spent))
        spent += used(r["teacher"])
    bname, bsets = budget_run(a, workdir, seed, report)
    b = report_of(bname, bsets)
    rows.append(row("budget", seed, b, workdir / bname, 0, used(b["rounds"][0]["teacher"])))
    for kk in a.k:
        if kk == k:
            kr, kdir, kreq = report, run_dir, plain_requests
        else:
            kname = f"k{kk}-s{seed}"
            kr = report_of(kname, wave[kname])
            kdir, kreq = workdir / kname, used(kr["rounds"][0]["teacher"])
        rows.append(row(f"k={kk}", seed, kr, kdir, 0, kreq))
    return rows


def swept(a: argparse.Namespace, workdir: Path, k: int):
    """Every configuration as a flow run of --deployment, concurrently (bench/_sweep.py); report_of then reads
    the finished runs, checking that each ran with the overrides the sequential benchmark would give it."""
    from _sweep import sweep  # bench/ is on sys.path: scripts run as python bench/NAME.py

    waves = [first_wave(a, workdir, seed, k).items() for seed in a.seeds]
    # FDD's runs are submitted first (workers take runs in that order): the longest, and each budget run waits for one
    first = {name: sets for fdd in (True, False) for wave in waves for name, sets in wave
             if name.startswith("fdd-") == fdd}

    def then(name: str, report: dict):
        return budget_run(a, workdir, int(name.rsplit("-s", 1)[1]), report) if name.startswith("fdd-s") else None

    runs = sweep(a.deployment, workdir, first, then)

    def report_of(name: str, sets: list[str]) -> dict:
        ran, report = runs[name]
        assert ran == sets, f"{name} ran with {ran}, the sequential benchmark would give {sets}"
        return report

    return report_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full",
                    help="defaults of --seeds, --rounds, --k and overrides of every run (smoke: all small)")
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--k", type=int, nargs="*", help="paths sweep (empty: skip)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results")
    ap.add_argument("--workdir", type=Path, default=REPO / "bench-runs" / "method")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override for every run")
    ap.add_argument("--deployment", help="run every configuration as a flow run of this Prefect deployment (e.g. "
                    "fdd/sweep, at PREFECT_API_URL), as many at once as its workers take; default: one after another")
    a = ap.parse_args()
    profile = PROFILES[a.profile]
    for key in ("seeds", "rounds", "k"):
        if getattr(a, key) is None:
            setattr(a, key, profile[key])
    a.sets = [*profile["sets"], *a.sets]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    workdir = a.workdir.resolve()
    rows: list[dict] = []
    leak: dict = {"generated": [], "test_vs_test": [], "decisions": Counter()}
    started = time.monotonic()
    try:  # a bad --set is one line before any run starts, either way (each run's own overrides are ours)
        cfg = load_config("demo", a.sets)
        check_run_values(cfg)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    k = cfg.teacher.k_solutions  # run.seed and the store path leave it as it is
    if a.deployment:
        report_of = swept(a, workdir, k)
    else:
        def report_of(name: str, sets: list[str]) -> dict:
            return fdd_run(workdir, name, sets)
    for seed in a.seeds:
        rows += seed_rows(a, workdir, seed, k, report_of)
        seed_leak = leakage(workdir, seed)
        for key in ("generated", "test_vs_test"):
            leak[key] += seed_leak[key]
        leak["decisions"].update(seed_leak["decisions"])
        text = write_outputs(rows, leak, a, started)
        print(f"seed {seed} done ({time.monotonic() - started:.0f} s)", flush=True)
    print(text)


if __name__ == "__main__":
    main()
