"""The `fdd` command line: thin commands over fdd_core; every user mistake ends as one `error:` line."""

from __future__ import annotations

import functools
import json
import os
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from fdd_core.interrupts import exit_on_signal, redeliver_swallowed_interrupts

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else every litellm import tries the network

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

ConfigOpt = Annotated[
    Optional[str], typer.Option("--config", "-c", help="YAML profile: a file, or a name in configs/ (demo, gsm8k).")
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override one config key, e.g. --set teacher.model=gpt-4o-mini (repeatable)."),
]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(command):
    """Turn the errors a user can cause (config, input files) into one line and exit 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from fdd_core.benchmarks import BenchmarkError
        from fdd_core.profiles import ConfigError
        from fdd_core.store import DataFileError

        try:
            return command(*args, **kwargs)
        except (ConfigError, DataFileError, BenchmarkError) as e:
            _fail(str(e))

    return wrapper


def _config(config: str | None, overrides: list[str] | None):
    from fdd_core.profiles import load_config

    return load_config(config, overrides or [])


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
    from fdd_core.check_data import SAMPLE, check_records, load_check_records, summarize
    from fdd_core.sandbox import Sandbox
    from fdd_core.store import write_jsonl

    cfg = _config(config, set_)
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
    student: Annotated[Path, typer.Option(help="Student folder: a saved model, or a LoRA adapter over its base.")],
    benchmark: Annotated[
        Optional[list[str]],
        typer.Option(help="Benchmark name (gsm8k, svamp, ..., synthetic-test) or Problem JSONL file; repeatable "
                          "(default: data.benchmarks)."),
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option(help="Only the first N problems of each benchmark (default: data.eval_limit).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="Folder for eval.json and eval-<benchmark>.jsonl (default: STUDENT/eval).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Evaluate a student: its program for each problem runs in the sandbox and is scored against the gold answer.

    Prints rows and accuracy per benchmark; writes per-row outputs (program, predicted, gold, error kind) and
    eval.json (accuracy per benchmark, and per step count on synthetic sets).
    """
    from fdd_core.benchmarks import BenchmarkError
    from fdd_core.evaluate import evaluate_student, resolve_benchmarks
    from fdd_core.student.infer import StudentNotFound, inspect_student

    cfg = _config(config, set_)
    if limit is not None and limit < 1:
        _fail(f"--limit: expected a positive number, got {limit}")
    try:
        inspect_student(student)  # before any benchmark loads: a typo in the path fails at once
        sets = resolve_benchmarks(cfg, benchmark or cfg.data.benchmarks)
    except (StudentNotFound, BenchmarkError) as e:
        _fail(str(e))
    out = out or student / "eval"
    result = evaluate_student(cfg, student, sets, out, limit=limit)
    width = max(len("benchmark"), *(len(name) for name in sets))
    typer.echo(f"{'benchmark':<{width}}  {'rows':>6}  {'accuracy':>8}")
    for name, accuracy in result.counts["accuracy"].items():
        typer.echo(f"{name:<{width}}  {result.counts['rows'][name]:>6}  {accuracy:>8.1%}")
    typer.echo(f"per-row outputs and eval.json: {out}")


teacher_app = typer.Typer(help="The teacher: the offline teacher's OpenAI-compatible server.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("serve")
def teacher_serve(
    host: Annotated[str, typer.Option(help="Address to listen on (keep it on loopback unless you mean it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    error_rate: Annotated[float, typer.Option(help="Share of replies made wrong or malformed on purpose.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the replies and of the fault draws.")] = 0,
    fail_429: Annotated[float, typer.Option(help="Share of requests answered 429 with Retry-After.")] = 0.0,
    fail_500: Annotated[float, typer.Option(help="Share of requests answered 500.")] = 0.0,
    fail_timeout: Annotated[float, typer.Option(help="Share of requests that hang for --slow-s seconds.")] = 0.0,
    slow_s: Annotated[float, typer.Option(help="How long a hanging request hangs.")] = 30.0,
    latency_ms: Annotated[float, typer.Option(help="Fixed delay added to every reply (throughput tests).")] = 0.0,
    log: Annotated[Optional[Path], typer.Option(help="JSONL file with one line per request served.")] = None,
    reference: Annotated[
        Optional[Path], typer.Option(help="GSM8K train.jsonl the offline teacher solves from (default: FDD_DATA_DIR's).")
    ] = None,
) -> None:
    """Serve the offline teacher at http://HOST:PORT/v1 (reach it with litellm model openai/fdd-offline and api_base)."""
    from fdd_core.teacher.server import FaultPlan, serve

    faults = FaultPlan(fail_429=fail_429, fail_500=fail_500, fail_timeout=fail_timeout, slow_s=slow_s,
                       latency_s=latency_ms / 1000, seed=seed)
    serve(host, port, error_rate=error_rate, faults=faults, log_path=log, reference_path=reference, seed=seed)


@teacher_app.command("solve")
@user_errors
def teacher_solve(
    problems: Annotated[str, typer.Argument(help="A benchmark name (e.g. gsm8k-train) or a JSONL file of problems.")],
    out_dir: Annotated[Path, typer.Option(help="Where candidates, decisions, accepted rows and check.jsonl go.")],
    limit: Annotated[Optional[int], typer.Option(help="Only the first N problems.")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Ask the configured teacher for k solutions per problem and curate them (the initialisation stage).

    Also writes OUT_DIR/check.jsonl ({question, program, answer} per reply, gold as answer), so
    `fdd check-data OUT_DIR/check.jsonl` shows how often the teacher's programs are right.
    """
    from fdd_core.generation import problems_file, generate_solutions
    from fdd_core.store import read_jsonl, write_jsonl

    cfg = _config(config, set_)
    source = problems_file(problems, out_dir, cfg, limit=limit)
    result = generate_solutions(cfg, source, out_dir)
    rows = [{"question": c["question"], "program": c["program"], "answer": c["gold"]}
            for c in read_jsonl(result.outputs["candidates"])]
    write_jsonl(out_dir / "check.jsonl", rows)
    t = result.teacher
    typer.echo(f"{result.counts['candidates']} candidates, {result.counts['accepted']} accepted")
    for reason, count in result.counts["dropped"].items():
        if count:
            typer.echo(f"  dropped {reason}: {count}")
    cost = "unknown" if t.cost_usd is None else f"${t.cost_usd:.4f}"
    typer.echo(f"teacher: {t.requests} requests, {t.cached} cached, {t.failed} failed, cost {cost}")
    typer.echo(f"check file: {out_dir / 'check.jsonl'}")


def _stored_replies(path: Path) -> int:
    """Replies in the teacher's response store (0 before it exists)."""
    from fdd_core.teacher.response_store import ResponseStore

    if not path.exists():
        return 0
    with ResponseStore(path) as store:
        return len(store)


@app.command("run")
@user_errors
def run(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Run FDD end to end (the `fdd` Prefect flow). With no option: the embedded default.

    The embedded default needs no GPU, API key or network: the synthetic domain, the offline
    teacher through litellm, a tiny student built from config and trained on the CPU, Prefect's
    local backend. Re-running the same config resumes: finished stages and paid replies are reused.
    """
    cfg = _config(config or "demo", set_)
    # SIGTERM (kill, docker stop, a scheduler's timeout) would end the process without Python's exit handlers,
    # leaving Prefect's temporary server running; as SystemExit the flow is marked crashed and the server stops.
    # One that lands in a garbage collection would be dropped by Python: the hook sends it again.
    signal.signal(signal.SIGTERM, exit_on_signal)
    redeliver_swallowed_interrupts()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from fdd_core.report import text_table
    from flows.fdd_flow import fdd

    store = Path(cfg.teacher.cache_path).expanduser()
    stored_before = _stored_replies(store)
    result = fdd(cfg)
    typer.echo(text_table(result["rounds"]))
    # The table counts what each round's data cost, stages reused from an earlier invocation included; say what
    # this invocation bought (new replies in the store; another run sharing the store at once adds to it).
    typer.echo(f"this invocation: {_stored_replies(store) - stored_before} new teacher replies bought "
               f"(the table's requests include stages reused from earlier invocations)")
    typer.echo(f"report: {result['report']}")
