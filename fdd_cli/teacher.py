"""`fdd teacher`: serve the offline teacher over HTTP, or ask the configured teacher to solve problems."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fdd_cli.errors import fail, user_errors
from fdd_cli.options import ConfigOpt, SetOpt, load

teacher_app = typer.Typer(help="The teacher: the offline teacher's OpenAI-compatible server.", no_args_is_help=True)


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
    fail_status: Annotated[
        Optional[int], typer.Option(help="Answer every request with this HTTP status (401 bad key, 403, 404 model).")
    ] = None,
    log: Annotated[Optional[Path], typer.Option(help="JSONL file with one line per request served.")] = None,
    reference: Annotated[
        Optional[Path], typer.Option(help="GSM8K train.jsonl the offline teacher solves from (default: FDD_DATA_DIR's).")
    ] = None,
) -> None:
    """Serve the offline teacher at http://HOST:PORT/v1 (reach it with litellm model openai/fdd-offline and api_base)."""
    from pydantic import ValidationError

    from fdd_core.teacher.server import FaultPlan, serve

    try:
        faults = FaultPlan(fail_429=fail_429, fail_500=fail_500, fail_timeout=fail_timeout, slow_s=slow_s,
                           latency_s=latency_ms / 1000, seed=seed, fail_status=fail_status)
    except ValidationError as e:  # a share outside [0, 1], a negative duration
        option = {"latency_s": "latency-ms"}
        fail("; ".join(f"--{option.get(str(err['loc'][0]), str(err['loc'][0]).replace('_', '-'))}: {err['msg']}"
                       for err in e.errors()))
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
    from fdd_core.teacher.stages import problems_file, generate_solutions
    from fdd_core.store import read_jsonl, write_jsonl

    cfg = load(config, set_)
    source = problems_file(problems, out_dir, cfg, limit=limit)
    result = generate_solutions(cfg, source, out_dir)
    rows = [{"question": c["question"], "program": c["program"], "answer": c["gold"]}
            for c in read_jsonl(result.outputs["candidates"])]
    write_jsonl(out_dir / "check.jsonl", rows)
    t = result.teacher
    typer.echo(f"{result.counts.candidates} candidates, {result.counts.accepted} accepted")
    for reason, count in result.counts.dropped.items():
        if count:
            typer.echo(f"  dropped {reason}: {count}")
    cost = "unknown" if t.cost_usd is None else f"${t.cost_usd:.4f}"
    typer.echo(f"teacher: {t.requests} requests, {t.cached} cached, {t.failed} failed, cost {cost}")
    typer.echo(f"check file: {out_dir / 'check.jsonl'}")
