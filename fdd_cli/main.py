"""The `fdd` app and its commands: run, eval, check-data, benchmarks; `fdd teacher` lives in teacher.py, `fdd export`
in export.py."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fdd_cli.deployment import deployment_app
from fdd_cli.errors import fail as _fail, user_errors
from fdd_cli.export import export as export_command
from fdd_cli.options import ConfigOpt, SetOpt, load as _config
from fdd_cli.store import store_app
from fdd_cli.student import student_app
from fdd_cli.teacher import teacher_app
from fdd_core.interrupts import exit_on_signal, redeliver_swallowed_interrupts

app = typer.Typer(
    help=(
        "FDD: Feedback-Driven Distillation of math reasoning from a teacher LLM into a small student LM.\n\n"
        "The teacher writes program-of-thought solutions, the student is fine-tuned on them, the student's "
        "right and wrong answers decide which new problems the teacher writes next, and every round is "
        "evaluated on math benchmarks. Configuration: a YAML profile (--config) plus --set key=value overrides."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.command("check-data")
@user_errors
def check_data(
    file: Annotated[
        Optional[Path],
        typer.Argument(help="JSONL with one {question, program, answer} a line; omit to check the built-in sample."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write per-row results (index, ok, predicted, expected, error).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Run every program of FILE in the sandbox and compare its answer with the expected one.

    Prints `N passed, N failed` and the count per error kind (syntax, runtime, timeout, memory,
    forbidden, no_answer, wrong_answer). Exits 0 whenever the check ran, whatever the counts.
    """
    from fdd_core.check_data import SAMPLE, check_records, check_writable, load_check_records, summarize
    from fdd_core.sandbox import Sandbox
    from fdd_core.store import write_jsonl

    cfg = _config(config, set_)
    if out is not None:
        check_writable(out)
    if file is None:
        file = SAMPLE
        typer.echo(f"checking the built-in sample {SAMPLE.name} (its last two programs fail on purpose)")
    records = load_check_records(file)
    with Sandbox.from_config(cfg.sandbox) as box:
        results = check_records(records, box)
    line, kinds = summarize(results)
    typer.echo(line)
    for kind, count in kinds.items():
        typer.echo(f"  {kind}: {count}")
    if out is not None:
        write_jsonl(out, (r.to_json() for r in results))
        typer.echo(f"per-row results: {out}")


@app.command("benchmarks")
@user_errors
def benchmarks(
    source: Annotated[
        Optional[str], typer.Option(help="auto, local or hub (default: data.source of the config).")
    ] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Folder of local benchmark files (else FDD_DATA_DIR).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """List each benchmark with its row count and where it was loaded from."""
    from fdd_core.benchmarks import BENCHMARKS, load_benchmark

    cfg = _config(config, set_)
    source = source or cfg.data.source
    if source not in ("auto", "local", "hub"):
        _fail(f"--source: expected auto, local or hub, got '{source}'")
    rows = []
    for name in BENCHMARKS:
        loaded = load_benchmark(name, source=source, data_dir=data_dir or cfg.data.data_dir)
        rows.append({"benchmark": name, "rows": len(loaded.problems), "origin": str(loaded.origin)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["benchmark"]) for r in rows)
    for r in rows:
        typer.echo(f"{r['benchmark']:<{width}}  {r['rows']:>6}  {r['origin']}")


@app.command("eval")
@user_errors
def eval_student(
    student: Annotated[
        str, typer.Option(help="Student: a model folder, a LoRA adapter folder, a GGUF file, or a Hub id "
                               "(e.g. HuggingFaceTB/SmolLM2-135M-Instruct).")],
    benchmark: Annotated[
        Optional[list[str]],
        typer.Option(help="Benchmark name (gsm8k, svamp, ..., synthetic-test) or Problem JSONL file; repeatable "
                          "(default: data.benchmarks)."),
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option(help="Only the first N problems of each benchmark (default: data.eval_limit).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Folder for eval.json and eval-<benchmark>.jsonl (default: "
                                          "<run.runs_dir>/eval/<student's name>; never inside the model folder).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Evaluate a student: its program for each problem runs in the sandbox and is scored against the gold answer.

    Prints rows and accuracy per benchmark; writes per-row outputs (program, predicted, gold, error kind) and
    eval.json (accuracy per benchmark, and per step count on synthetic sets). The model folder is only read.
    """
    from fdd_core.benchmarks import BenchmarkError
    from fdd_core.evaluate import evaluate_student, resolve_benchmarks
    from fdd_core.student.gguf import GGUFError
    from fdd_core.student.infer import StudentNotFound, inspect_student

    cfg = _config(config, set_)
    if limit is not None and limit < 1:
        _fail(f"--limit: expected a positive number, got {limit}")
    try:
        info = inspect_student(student)  # before any benchmark loads: a typo in the path fails at once
        sets = resolve_benchmarks(cfg, benchmark or cfg.data.benchmarks)
    except (StudentNotFound, BenchmarkError, GGUFError) as e:
        _fail(str(e))
    out = (out or _default_eval_dir(Path(cfg.run.runs_dir), student)).expanduser()
    for folder in {info.path, Path(info.base)}:
        if folder.is_dir() and _inside(out, folder):
            _fail(f"--out {out} is inside the model folder {folder}: evaluation never writes into a model (a run's "
                  f"train stage hashes that folder); choose a folder outside it")
    cap = limit if limit is not None else cfg.data.eval_limit
    problems = sum(len(ps[:cap] if cap else ps) for ps in sets.values())
    typer.echo(f"evaluating {info.path} on {problems} problems ({', '.join(sets)}); progress below", err=True)
    from fdd_cli.progress import terminal_progress

    with _progress_to_stderr(), terminal_progress(sys.stderr):  # stdout keeps the results alone
        result = evaluate_student(cfg, info.path, sets, out, limit=limit)
    width = max(len("benchmark"), *(len(name) for name in sets))
    typer.echo(f"{'benchmark':<{width}}  {'rows':>6}  {'accuracy':>8}")
    for name, accuracy in result.counts.accuracy.items():
        typer.echo(f"{name:<{width}}  {result.counts.rows[name]:>6}  {accuracy:>8.1%}")
    typer.echo(f"per-row outputs and eval.json: {out}")


GENERIC_PARTS = ("model", "adapter", "student", "snapshots")


def _default_eval_dir(runs_dir: Path, student: str) -> Path:
    """<runs_dir>/eval/<name>: a Hub id as owner--name; a run's round student as <run>-<round> (runs/demo/rounds/r2/
    student/model -> demo-r2); another folder or file by its name."""
    path = Path(student).expanduser()
    if not path.exists():  # a Hub id
        return runs_dir / "eval" / student.replace("/", "--")
    parts = [p for p in path.resolve().parts if p not in ("/", "")]
    while len(parts) > 1 and parts[-1] in GENERIC_PARTS:
        parts.pop()
    name = parts[-1] if parts else "student"
    if len(parts) >= 3 and parts[-2] == "rounds":
        name = f"{parts[-3]}-{parts[-1]}"
    return runs_dir / "eval" / Path(name).stem


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


class _progress_to_stderr:
    """fdd_core's INFO logs (generation progress per batch, sandbox and vLLM timings) on stderr while inside."""

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("fdd_core")
        self.handler = logging.StreamHandler()
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        self.level = self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        return False


app.command("export")(export_command)
app.add_typer(teacher_app, name="teacher")
app.add_typer(deployment_app, name="deployment")
app.add_typer(store_app, name="store")
app.add_typer(student_app, name="student")


def _stored_replies(path: Path) -> int:
    """Replies in the teacher's response store (0 before it exists)."""
    from fdd_core.teacher.response_store import ResponseStore

    if not path.exists():
        return 0
    with ResponseStore(path) as store:
        return len(store)


@app.command("run")
@user_errors
def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Start nothing: print the most teacher requests, tokens and cost the config "
                                       "can buy per stage and round, and where the budget would stop the run."),
    ] = False,
) -> None:
    """Run FDD end to end (the `fdd` Prefect flow). With no option: the embedded default.

    The embedded default needs no GPU, API key or network: the synthetic domain, the offline
    teacher through litellm, a tiny student built from config and trained on the CPU, Prefect's
    local backend. Re-running the same config resumes: finished stages and paid replies are reused.
    A missing API key is an error before anything starts; --dry-run forecasts the teacher spend instead.
    """
    cfg = _config(config or "demo", set_)
    from fdd_core.config import pretrained_student_warning

    warning = pretrained_student_warning(cfg)
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    from fdd_core.teacher.client import TeacherConfigError, check_budget_is_measurable, check_teacher_key

    if dry_run:
        from fdd_core.teacher.forecast import forecast

        for line in _forecast_lines(forecast(cfg)):
            typer.echo(line)
        try:
            check_teacher_key(cfg.teacher)
        except TeacherConfigError as e:  # a dry run buys nothing: say so, but it is no error
            typer.echo(f"warning: {e}")
        return
    # before Prefect starts: a missing key or an unmeasurable budget is one error line (user_errors)
    check_teacher_key(cfg.teacher)
    check_budget_is_measurable(cfg.teacher, cfg.budget)
    from fdd_core.run_data import check_run_values

    check_run_values(cfg)
    # SIGTERM (kill, docker stop, a scheduler's timeout) would end the process without Python's exit handlers,
    # leaving Prefect's temporary server running; as SystemExit the flow is marked crashed and the server stops.
    # One that lands in a garbage collection would be dropped by Python: the hook sends it again.
    signal.signal(signal.SIGTERM, exit_on_signal)
    redeliver_swallowed_interrupts()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from fdd_core.run_lock import run_lock
    from fdd_core.watchdog import start_watchdog

    # One live run per run directory (a second one would buy the same replies again): refused before Prefect starts
    with run_lock(Path(cfg.run.runs_dir).expanduser().resolve() / cfg.run.name):
        start_watchdog()  # Prefect's temporary server goes when this process goes, even killed by SIGKILL
        from fdd_cli.prefect_server import start_temporary_server

        _run_flow(cfg, start_temporary_server())  # the server starts while the flow's imports run


def _run_flow(cfg, server=None) -> None:
    from fdd_cli.progress import terminal_progress
    from fdd_core.report import text_table, totals_line
    from flows.fdd_flow import fdd

    store = Path(cfg.teacher.cache_path).expanduser()
    stored_before = _stored_replies(store)
    if server is not None:
        server.ready()
    with terminal_progress():  # bars on a terminal, a line every few seconds in a log
        result = fdd(cfg)
    typer.echo(text_table(result.rounds, result.baseline))
    typer.echo(totals_line(result.rounds))
    if result.stop:
        typer.echo(f"stopped after round {result.rounds[-1].round}: {result.stop}")
    # The table counts what each round's data cost, stages reused from an earlier invocation included; say what
    # this invocation bought (new replies in the store; another run sharing the store at once adds to it).
    typer.echo(f"this invocation: {_stored_replies(store) - stored_before} new teacher replies bought "
               f"(the table's requests include stages reused from earlier invocations)")
    typer.echo(f"report: {result.report}")


def _forecast_lines(fc) -> list[str]:
    """`fdd run --dry-run`'s report of a teacher forecast (fdd_core.teacher.forecast.Forecast)."""
    from fdd_core.teacher.costs import format_usd

    if fc.free:
        price = "free (the offline teacher): every cost below is a known $0"
    elif fc.priced:
        price = (f"litellm's price map: ${fc.usd_per_million_prompt:.4g} per 1M prompt tokens, "
                 f"${fc.usd_per_million_completion:.4g} per 1M completion tokens")
    else:
        price = "not in litellm's price map: every cost below is unknown"
    seeds = fc.seed_questions
    lines = [
        "dry run: nothing started, no teacher request sent, nothing trained",
        f"teacher {fc.model}: {price}",
        f"tokens: {fc.tokenizer}; seed questions: {seeds.count:,}, longest {seeds.longest_tokens} tokens, "
        f"mean {seeds.mean_tokens:g} ({seeds.source})",
        "",
        "MAX = upper bound: the most this config can buy. EXP = expected: the same requests at typical lengths.",
    ]
    header = ["round", "stage", "part", "requests", "MAX prompt tok", "MAX compl tok", "MAX cost",
              "EXP prompt tok", "EXP compl tok", "EXP cost"]
    cells = [[str(r.round), r.stage, f"{r.part} ({r.prompts})", f"{r.max_requests:,}", f"{r.max_prompt_tokens:,}",
              f"{r.max_completion_tokens:,}", format_usd(r.max_cost_usd), f"{r.expected_prompt_tokens:,}",
              f"{r.expected_completion_tokens:,}", format_usd(r.expected_cost_usd)] for r in fc.rows]
    t = fc.total
    cells.append(["total", "", "", f"{t.max_requests:,}", f"{t.max_prompt_tokens:,}", f"{t.max_completion_tokens:,}",
                  format_usd(t.max_cost_usd), f"{t.expected_prompt_tokens:,}", f"{t.expected_completion_tokens:,}",
                  format_usd(t.expected_cost_usd)])
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    left = {1, 2}  # text columns; numbers align right

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines += [line(header), *(line(row) for row in cells), ""]
    lines += fc.assumptions
    lines += _budget_lines(fc)
    return lines


def _budget_lines(fc) -> list[str]:
    if not fc.budget:
        return ["budget: none set (budget.max_requests, budget.max_usd): only run.rounds ends teacher spending"]
    lines = []
    for check in fc.budget:
        if check.limit == "max_requests":
            name, cap, most = "budget.max_requests", f"{int(check.value):,}", f"{fc.total.max_requests:,} requests"
        else:
            name, cap, most = "budget.max_usd", f"${check.value:g}", f"${fc.total.max_cost_usd or 0:.4f}"
        if not check.enforceable:
            lines.append(f"budget: {name}={cap} cannot be enforced: {fc.model} is not in litellm's price map, so "
                         "the run refuses to start; set budget.max_requests instead")
        elif not check.reached:
            lines.append(f"budget: {name}={cap} cannot stop this run: the most it can buy is {most}")
        else:
            text = (f"budget: {name}={cap} can stop this run: the most it can buy ({most}) reaches it in round "
                    f"{check.round} {check.stage} ({check.part}) at the earliest")
            if check.expected_reached is True:
                text += (f"; at the expected spend (${fc.total.expected_cost_usd or 0:.4f} in all) in round "
                         f"{check.expected_round} {check.expected_stage} ({check.expected_part})")
            elif check.expected_reached is False:
                text += f"; the expected spend (${fc.total.expected_cost_usd or 0:.4f}) stays under it"
            lines.append(text + ". Where the cap is reached, teacher spending stops; the run trains and evaluates "
                                "that round, then ends")
    return lines


if __name__ == "__main__":  # python -m fdd_cli.main: the `fdd` script without the script
    app()
