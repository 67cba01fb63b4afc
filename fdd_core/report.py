"""The run's report: report.json (the stable schema users script against), report.md and accuracy.png.

report.json: {"baseline": BaselineRow {"model", "accuracy", "seconds"} or null (the base student before round 0, the
table's and plot's "base"), "rounds": [RoundRow: {"round", "train_size", "easy", "hard", "candidates", "accepted",
"teacher": {"requests", "cached", "tokens", "cost_usd", "saved_usd"}, "accuracy": {benchmark: value}, "seconds",
"paid_per_row"}], "totals": RunTotals: {"teacher", "train_size", "paid_per_row"}, "run_dir", "config"}; a cost is
null when the teacher's price is unknown. A round's teacher figures count the replies its data needed: paid by this
run (in whichever invocation), or served free by the response store (bought by another run).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from collections.abc import Sequence

from fdd_core.results import (
    BaselineRow, DataResult, EvalResult, FeedbackResult, GenerationResult, PoolResult, RoundRow, RunTotals,
    StageResult, TrainingSetResult, TrainResult, format_usd,
)
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


def markdown(run_dir: Path, rounds: Sequence[RoundRow], baseline: BaselineRow | None = None,
             image: str = "accuracy.png") -> str:
    """report.md: the per-round table and the chart. `image` is its address: the file beside report.md, or
    png_data_uri(...) where no file can be reached (the Prefect UI's markdown artifact)."""
    header, rows = table(rounds, baseline)
    # the accuracy columns first after the round: a page too narrow for the whole table still shows them
    benchmarks = len(header) - 12  # table(): 11 columns before the benchmarks, seconds after them
    order = [0, *range(len(header) - 1 - benchmarks, len(header) - 1), *range(1, len(header) - 1 - benchmarks),
             len(header) - 1]
    header, rows = [header[i] for i in order], [[row[i] for i in order] for row in rows]
    lines = [f"# FDD run: {Path(run_dir).name}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"![accuracy per round]({image})", "", f"Run directory: `{run_dir}`", ""]
    return "\n".join(lines)


def png_data_uri(path: Path | str) -> str:
    """The PNG inlined as a data: URI (~35 KB for the chart), so a page shows it with no file beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def round_line(row: RoundRow) -> str:
    """One line per finished round: 'round 1: synthetic-test 53.2%, 812 training rows, 420 easy / 380 hard,
    361 of 1,594 candidates accepted, 1,250 paid teacher requests ($0.0000), 95s'."""
    parts = [", ".join(f"{name} {value:.1%}" for name, value in sorted(row.accuracy.items())) or "no benchmark",
             f"{row.train_size:,} training rows"]
    if row.easy or row.hard:
        parts.append(f"{row.easy:,} easy / {row.hard:,} hard")
    if row.candidates:
        parts.append(f"{row.accepted:,} of {row.candidates:,} candidates accepted")
    t = row.teacher
    parts += [f"{t.requests:,} paid teacher requests ({format_usd(t.cost_usd)}), {t.cached:,} from the store",
              f"{row.seconds:.0f}s"]
    return f"round {row.round}: " + ", ".join(parts)


def stage_line(result: StageResult) -> str:
    """One line per finished stage with its key numbers, for the run's log."""
    c, took = getattr(result, "counts", None), f"{result.seconds:.0f}s"
    if isinstance(result, TrainResult):
        loss = f"loss {c.first_loss:.4g} -> {c.final_loss:.4g}" if c.final_loss is not None else \
            f"loss {c.train_loss:.4g}"
        facts = f"{c.steps:,} steps on {c.examples:,} examples ({c.too_long:,} too long), {loss}"
    elif isinstance(result, EvalResult):
        facts = ", ".join(f"{name} {acc:.1%} of {c.rows[name]:,}" for name, acc in c.accuracy.items())
    elif isinstance(result, FeedbackResult):
        facts = f"{c.pool:,} problems: {c.easy:,} easy, {c.hard:,} hard"
    elif isinstance(result, GenerationResult):
        t = result.teacher
        dropped = ", ".join(f"{n:,} {why}" for why, n in c.dropped.items() if n) or "none"
        facts = (f"{c.accepted:,} of {c.candidates:,} candidates accepted (dropped: {dropped}); teacher "
                 f"{t.requests:,} paid ({format_usd(t.cost_usd)}), {t.cached:,} from the store, {t.failed:,} failed"
                 + (f", {t.skipped_budget:,} kept back by the budget" if t.skipped_budget else ""))
    elif isinstance(result, (DataResult, TrainingSetResult, PoolResult)):
        facts = ", ".join(f"{k} {v:,}" for k, v in (c.rows if isinstance(result, DataResult)
                                                     else c.model_dump()).items())
    else:
        facts = ""
    return f"{result.stage.replace('_', '-')} finished in {took}" + (f": {facts}" if facts else "")


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
