"""The FDD flows: `fdd` (initialise, then rounds until done) and `fdd-round` (one round, a subflow).

Flows only compose tasks. A stage whose output folder no longer matches its manifest is redone
(refresh_cache), so a resumed run trusts only what is on disk and intact.
"""

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Failed

from fdd_core.config import FDDConfig
from fdd_core.interrupts import redeliver_swallowed_interrupts
from fdd_core.config_files import ConfigError, config_to_yaml
from fdd_core.report import markdown, png_data_uri, round_line, table, write_report
from fdd_core.results import BaselineRow, RoundRow, RoundSummary, RunResult, RunTotals, TeacherUsage
from fdd_core.run_data import check_run_values
from fdd_core.store import atomic_write_text
from flows.stage_flows import check_stage_deployments, run_stage
from tasks.stages import (
    base_checkpoint_task,
    evaluate_task,
    feedback_task,
    generate_solutions_task,
    generate_variants_task,
    grow_training_set_task,
    pool_task,
    prepare_data_task,
    train_task,
)
from tasks.tags import local


def _run(task, out_dir: Path, *args, **kwargs):
    """Call a cached task, refreshing its cache when its outputs are missing or damaged; a GPU stage on
    run.gpu_work_pool when the run names one (flows/stage_flows.py)."""
    return run_stage(task, out_dir, *args, **kwargs)


@flow(name="fdd-round", log_prints=True)
def fdd_round(cfg: FDDConfig, round_index: int, run_dir: str, train: str, benchmarks: dict[str, str], base: str,
              last: bool, best: float | None = None, previous_model: str | None = None,
              spent: TeacherUsage | None = None) -> RoundSummary:
    """Train from the base on this round's set, evaluate; then, unless this round ends the run (the last
    one, or held-out accuracy gained less than run.min_gain over `best`), feedback and new problems.
    `spent` is what the run's teacher stages spent before this round: the budget holds for the whole run."""
    rdir = Path(run_dir) / "rounds" / f"r{round_index}"
    trained = _run(train_task, rdir / "student", cfg, train, str(rdir / "student"), base, previous_model)
    model = trained.outputs["model"]
    evaluated = _run(evaluate_task, rdir / "eval", cfg, model, benchmarks, str(rdir / "eval"))
    summary = RoundSummary(model=model, accuracy=evaluated.counts.accuracy, train_size=trained.counts.examples,
                           seconds=trained.seconds + evaluated.seconds, stop="last round" if last else None)
    primary = cfg.data.benchmarks[0]
    gain = summary.accuracy.get(primary, 0.0) - best if best is not None else None
    if gain is not None and cfg.run.min_gain is not None and gain < cfg.run.min_gain:
        summary.stop = f"{primary} accuracy gained {gain:+.3f}, less than run.min_gain"
    if summary.stop is None:
        pool = _run(pool_task, rdir / "pool", train, str(rdir / "pool"))
        fb = _run(feedback_task, rdir / "feedback", cfg, model, pool.outputs["pool"], str(rdir / "feedback"),
                  round_index)
        tests = list(benchmarks.values())
        gen = _run(generate_variants_task, rdir / "variants", cfg, fb.outputs["attempts"], str(rdir / "variants"),
                   round_index + 1, train, tests, spent, run_dir)
        empty = gen.counts.nothing_usable()  # no new row: the next round would retrain on the same set
        nxt = None if empty else _run(grow_training_set_task, rdir.parent / f"r{round_index + 1}" / "training_set",
                                      train, [gen.outputs["accepted"]],
                                      str(rdir.parent / f"r{round_index + 1}" / "training_set"))
        summary = summary.model_copy(update=dict(
            next_train=nxt.outputs["train"] if nxt else None, easy=fb.counts.easy, hard=fb.counts.hard,
            candidates=gen.counts.candidates, accepted=gen.counts.accepted, teacher=gen.teacher,
            stop="the teacher budget ran out" if gen.teacher.skipped_budget else empty,
            seconds=summary.seconds + fb.seconds + gen.seconds))
    return summary


@flow(name="fdd", log_prints=True)
def fdd(cfg: FDDConfig = FDDConfig()) -> RunResult:
    """Feedback-Driven Distillation: teacher solutions for the seeds, then train, evaluate, feedback and
    generate, round after round, until `run.rounds`, a gain below `run.min_gain`, or the teacher budget."""
    redeliver_swallowed_interrupts()  # a deployment's cancel (SIGTERM) landing in a garbage collection still stops it
    try:
        check_run_values(cfg)
        check_stage_deployments(cfg)
    except ConfigError as e:  # the line itself is the run's state message (UI, `prefect flow-run inspect`)
        get_run_logger().error(str(e))
        return Failed(message=str(e), data=e)
    # Absolute: stage cache keys hold their paths, so the same config run from another folder is another run
    run_dir = Path(cfg.run.runs_dir).expanduser().resolve() / cfg.run.name
    atomic_write_text(run_dir / "config.yaml", config_to_yaml(cfg))  # saved first: the run is reproducible
    logger = get_run_logger()
    logger.info(f"run directory: {run_dir}")
    data = prepare_data_task(cfg, str(run_dir / "data"))
    benchmarks = {name: data.outputs[name] for name in cfg.data.benchmarks}
    r0 = run_dir / "rounds" / "r0"
    init = _run(generate_solutions_task, r0 / "solutions", cfg, data.outputs["seed"], str(r0 / "solutions"),
                TeacherUsage(), str(run_dir))
    spent = init.teacher  # the run's teacher spend so far, handed to each teacher stage (one budget per run)
    train = _run(grow_training_set_task, r0 / "training_set", None, [init.outputs["accepted"]],
                 str(r0 / "training_set")).outputs["train"]
    base = local(base_checkpoint_task)(cfg, str(run_dir), train)
    baseline = None
    pretrained = cfg.student.model != "from_config"
    if cfg.run.baseline or (cfg.run.baseline is None and pretrained):  # the report's "base" row, cached like a stage
        before = _run(evaluate_task, run_dir / "baseline", cfg, str(base), benchmarks, str(run_dir / "baseline"))
        baseline = BaselineRow(model=str(base), accuracy=before.counts.accuracy, seconds=before.seconds)
    rows: list[RoundRow] = []
    previous_model, best = None, None
    primary = cfg.data.benchmarks[0]
    for r in range(cfg.run.rounds + 1):
        summary = fdd_round.with_options(flow_run_name=f"round-{r}")(
            cfg, r, str(run_dir), train, benchmarks, base, r == cfg.run.rounds, best, previous_model, spent)
        spent = spent + summary.teacher
        # round 0's teacher work and time include the initial solutions of the seed problems
        row = summary.row(r, extra=init.teacher if r == 0 else None, extra_seconds=init.seconds if r == 0 else 0.0,
                          extra_rows=init.counts.accepted if r == 0 else 0)
        rows.append(row)
        logger.info(round_line(row))
        header, cells = table([row])
        create_table_artifact([dict(zip(header, cells[0]))], key=f"round-{r}", description=f"FDD round {r}")
        accuracy = summary.accuracy.get(primary, 0.0)
        best = accuracy if best is None else max(best, accuracy)
        if summary.stop or summary.next_train is None:
            print(f"stopping after round {r}: {summary.stop}")
            break
        train, previous_model = summary.next_train, summary.model
    paths = write_report(run_dir, rows, cfg.model_dump(mode="json"), baseline)
    # The UI reaches no file of the run: the chart travels inside the artifact
    create_markdown_artifact(markdown(run_dir, rows, baseline, image=png_data_uri(paths["plot"])), key="fdd-report",
                             description="FDD run report")
    return RunResult(run_dir=str(run_dir), report=paths["json"], rounds=rows, totals=RunTotals.of(rows),
                     baseline=baseline, stop=summary.stop)
