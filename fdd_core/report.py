"""The run's report: report.json (the stable schema users script against), report.md and accuracy.png.

report.json: {"baseline": BaselineRow {"model", "accuracy", "seconds"} or null (the base student before round 0, the
table's and plot's "base"), "rounds": [RoundRow: {"round", "train_size", "easy", "hard", "candidates", "accepted",
"teacher": {"requests", "cached", "tokens", "cost_usd", "saved_usd"}, "accuracy": {benchmark: value}, "seconds",
"paid_per_row"}], "totals": RunTotals: {"teacher", "train_size", "paid_per_row"}, "run_dir", "config"}; a cost is
null when the teacher's price is unknown. A round's teacher figures count the replies its data needed: paid by this
run (in whichever invocation), or served free by the response store (bought by another run).
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Sequence

from fdd_core.results import BaselineRow, RoundRow, RunTotals, format_usd
from fdd_core.store import atomic_write_text

def write_report(run_dir: Path, rounds: Sequence[RoundRow], config: dict,
                 baseline: BaselineRow | None = None) -> dict[str, str]:
    """report.json, report.md and accuracy.png in run_dir; returns their paths."""
    run_dir = Path(run_dir)
    report = {"baseline": baseline.model_dump(mode="json") if baseline else None,
              "rounds": [r.model_dump(mode="json") for r in rounds],
              "totals": RunTotals.of(list(rounds)).model_dump(mode="json"), "run_dir": str(run_dir), "config": config}
    paths = {
        "json": str(atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")),
        "plot": str(plot_accuracy(rounds, run_dir / "accuracy.png", baseline)),
    }
    paths["markdown"] = str(atomic_write_text(run_dir / "report.md", markdown(run_dir, rounds, baseline)))
    return paths


def table(rounds: Sequence[RoundRow], baseline: BaselineRow | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-round table, as printed by `fdd run` and shown in the Prefect UI; with a
    baseline, a first row 'base': the base student's accuracy before any training."""
    benchmarks = sorted({name for r in rounds for name in r.accuracy} | set(baseline.accuracy if baseline else ()))
    header = ["round", "train", "easy", "hard", "candidates", "accepted", "requests", "cached", "cost", "saved",
              "paid/row", *benchmarks, "seconds"]
    rows = []
    if baseline is not None:
        accuracy = [f"{baseline.accuracy[b]:.1%}" if b in baseline.accuracy else "-" for b in benchmarks]
        rows.append(["base", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", *accuracy, f"{baseline.seconds:.0f}"])
    for r in rounds:
        t = r.teacher
        per_row = "-" if r.paid_per_row is None else f"{r.paid_per_row:.2f}"
        accuracy = [f"{r.accuracy[b]:.1%}" if b in r.accuracy else "-" for b in benchmarks]
        rows.append([str(r.round), str(r.train_size), str(r.easy), str(r.hard), str(r.candidates),
                     str(r.accepted), str(t.requests), str(t.cached), format_usd(t.cost_usd),
                     format_usd(t.saved_usd), per_row, *accuracy, f"{r.seconds:.0f}"])
    return header, rows


def totals_line(rounds: Sequence[RoundRow]) -> str:
    """The run's teacher spend in one line: paid requests and cost, per row of the final set, what the store saved."""
    totals = RunTotals.of(list(rounds))
    t = totals.teacher
    per_row = "-" if totals.paid_per_row is None else f"{totals.paid_per_row:.2f}"
    return (f"teacher: {t.requests} paid requests, cost {format_usd(t.cost_usd)}, {per_row} per row of the final "
            f"set ({totals.train_size} rows); the response store served {t.cached} free, "
            f"saving {format_usd(t.saved_usd)}")


def text_table(rounds: Sequence[RoundRow], baseline: BaselineRow | None = None) -> str:
    header, rows = table(rounds, baseline)
    widths = [max(len(x) for x in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in [header, *rows])


def markdown(run_dir: Path, rounds: Sequence[RoundRow], baseline: BaselineRow | None = None) -> str:
    header, rows = table(rounds, baseline)
    lines = [f"# FDD run: {Path(run_dir).name}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "![accuracy per round](accuracy.png)", ""]
    return "\n".join(lines)


def plot_accuracy(rounds: Sequence[RoundRow], path: Path, baseline: BaselineRow | None = None) -> Path:
    """Accuracy per round, one line per benchmark, as a PNG; the baseline is the first point, at 'base'."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    base = baseline.accuracy if baseline else {}
    for name in sorted({n for r in rounds for n in r.accuracy} | set(base)):
        points = [(-1, base[name])] if name in base else []
        points += [(r.round, r.accuracy[name]) for r in rounds if name in r.accuracy]
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy (%)")
    ticks = ([-1] if baseline else []) + [r.round for r in rounds]
    ax.set_xticks(ticks, ["base" if t == -1 else str(t) for t in ticks])
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
