"""The teacher's two stages: generate_solutions (seed problems -> verified programs) and
generate_variants (easy/hard problems -> new verified problems).

Each reads problems from files, asks the teacher through the response store (a reply already
bought is never bought again, even after a crash), turns every reply into a candidate row with
its lineage, curates, and writes candidates, decisions and accepted rows to `out_dir`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from fdd_core.config import FDDConfig
from fdd_core.curation import (
    BUDGET_PARSE_ERROR, ContaminationIndex, curate_solutions, decide_variants, screen_variants,
)
from fdd_core.progress import Tracker, track
from fdd_core.sandbox import Sandbox
from fdd_core.records import AttemptRow, Candidate, Problem, load_problems
from fdd_core.results import GenerationResult, TeacherUsage
from fdd_core.store import finish_stage, iter_jsonl, read_jsonl, write_jsonl
from fdd_core.teacher.client import BUDGET, TeacherClient, TeacherReply, TeacherRequest
from fdd_core.teacher.parsing import parse_reply
from fdd_core.teacher.prompts import load_prompt
from fdd_core.teacher.response_store import ResponseStore


def generate_solutions(cfg: FDDConfig, problems_path: Path, out_dir: Path, *, round_index: int = 0,
                       spent: TeacherUsage | None = None, run: str | None = None) -> GenerationResult:
    """k program-of-thought solutions per problem, kept when the program runs and matches the gold answer.

    spent: what the run's finished stages already spent (the budget holds for the whole run); run: the run
    directory, recorded as the buyer of each reply (see TeacherClient)."""
    started = time.monotonic()
    problems = load_problems(problems_path)
    prompt = load_prompt("solve")
    requests = [
        TeacherRequest.for_prompt(prompt, p.question, sample, request_id=f"{p.id}#{sample}")
        for p in problems
        for sample in range(cfg.teacher.k_solutions)
    ]
    with _teacher(cfg, spent, run, f"generate_solutions/r{round_index}") as client:
        with track("generate-solutions", "teacher requests", len(requests)) as tracker:
            replies = client.generate(requests, on_progress=_spend(tracker, client))
        usage = _usage(client)
    by_id = {p.id: p for p in problems}
    candidates = []
    for reply in replies:
        problem = by_id[reply.request.request_id.rsplit("#", 1)[0]]
        candidates.append(
            _candidate(cfg, reply, "solve", problem, round=round_index, split="seed",
                       id=f"r{round_index}-solve-{reply.request.request_id}", gold=problem.answer)
        )
    with _sandbox(cfg) as sandbox:
        result = curate_solutions(candidates, sandbox, sources={p.id: p.source for p in problems})
    return _write(out_dir, "generate_solutions", candidates, result, usage, started, {"problems": problems_path})


def generate_variants(
    cfg: FDDConfig,
    attempts_path: Path,
    out_dir: Path,
    *,
    round_index: int,
    train_path: Path | None = None,
    test_paths: Sequence[Path] = (),
    spent: TeacherUsage | None = None,
    run: str | None = None,
) -> GenerationResult:
    """Harder variants of easy problems and similar problems for hard ones, verified by independent votes.

    Votes are bought only for candidates that pass every free check (parsed, not contaminated, not a
    duplicate, their program runs), and only as many as their decision needs (see decide_variants).

    attempts_path holds the feedback stage's attempts (AttemptRow: a problem and its easy/hard split);
    train_path the current distillation set (new questions must not duplicate it); test_paths
    the benchmark test sets to decontaminate against, as Problem JSONL. spent and run: as generate_solutions.
    """
    started = time.monotonic()
    # an attempt row is its problem (AttemptRow extends Problem) plus the student's split
    pool = [(row, row.split) for row in (AttemptRow.model_validate(r) for _, r in iter_jsonl(attempts_path))]
    requests, parents = [], {}
    for problem, split in pool:
        kind = "harder" if split == "easy" else "similar"
        prompt = load_prompt(kind)
        count = cfg.feedback.harder_per_easy if split == "easy" else cfg.feedback.similar_per_hard
        for i in range(count):
            # A problem stays in the pool round after round: each round asks for new samples of it,
            # where the same sample index would only fetch last round's variant from the store.
            sample = round_index * count + i
            request_id = f"{kind}-{problem.id}#{sample}"
            parents[request_id] = (problem, split, kind)
            requests.append(TeacherRequest.for_prompt(prompt, problem.question, sample, request_id))
    with _teacher(cfg, spent, run, f"generate_variants/r{round_index}") as client:
        with track("generate-variants", "teacher requests", len(requests)) as tracker:
            replies = client.generate(requests, on_progress=_spend(tracker, client))
        candidates = []
        for reply in replies:
            problem, split, kind = parents[reply.request.request_id]
            candidates.append(
                _candidate(cfg, reply, kind, problem, round=round_index, split=split,
                           id=f"r{round_index}-{reply.request.request_id}")
            )
        known = [row["question"] for row in read_jsonl(train_path)] if train_path else []
        index = ContaminationIndex.from_problems(
            [p for path in test_paths for p in load_problems(path)], n=cfg.curation.decontamination_ngram
        )
        with _sandbox(cfg) as sandbox:
            screening = screen_variants(candidates, sandbox, cfg=cfg.curation, known_questions=known,
                                        contamination=index)
            with track("variant-votes", "teacher requests (asked so far)") as votes:
                result = decide_variants(screening, lambda asks: _vote(cfg, client, asks, votes), sandbox,
                                         cfg=cfg.curation)
        usage = _usage(client)
    inputs = {"attempts": attempts_path} | ({"train": train_path} if train_path else {})
    return _write(out_dir, "generate_variants", candidates, result, usage, started, inputs)


def problems_file(source: str, out_dir: Path, cfg: FDDConfig, *, limit: int | None = None) -> Path:
    """A Problem JSONL for `source`: a file as it is (cut to `limit`), or a benchmark written to out_dir."""
    from fdd_core.benchmarks import BENCHMARKS, load_benchmark

    path = Path(source)
    if source not in BENCHMARKS and path.is_file():
        if limit is None:
            return path
        problems = load_problems(path)[:limit]
    else:
        problems = load_benchmark(source, source=cfg.data.source, data_dir=cfg.data.data_dir, limit=limit).problems
    return write_jsonl(Path(out_dir) / "problems.jsonl", problems)


def _vote(cfg: FDDConfig, client: TeacherClient, asks: Sequence[tuple[Candidate, int]],
          tracker: Tracker | None = None) -> list[str | None]:
    """Vote `sample` on each candidate's question, an independent teacher solution (the self-consistency
    check's ballot), in one batch: its program ('' when the reply has none or failed), or None when the
    budget kept it from being sent. (candidate, sample) is the request it always was, so stored ones are reused.
    The tracker counts the votes of every batch so far (how many batches there will be is not known)."""
    prompt = load_prompt("solve")
    requests = [TeacherRequest.for_prompt(prompt, c.question, sample, request_id=c.id) for c, sample in asks]
    on_progress = None
    if tracker is not None:
        before, report = tracker.last.done, _spend(tracker, client)

        def on_progress(done: int, total: int) -> None:
            report(before + done, before + total)

    return [None if reply.error == BUDGET else parse_reply(reply.text, "solve").program
            for reply in client.generate(requests, on_progress=on_progress)]


def _spend(tracker: Tracker, client: TeacherClient) -> Callable[[int, int], None]:
    """The client's progress(done, total) to the stage's tracker, with what the stage paid and the run spent."""
    def report(done: int, total: int) -> None:
        s, ledger = client.stats, client.ledger
        tracker(done, total, bought=s.requests, stored=s.cached + s.bought_earlier, cost_usd=s.cost_usd,
                run_cost_usd=None if ledger.unknown else ledger.spent)

    return report


@contextlib.contextmanager
def _teacher(cfg: FDDConfig, spent: TeacherUsage | None, run: str | None,
             stage: str | None = None) -> Iterator[TeacherClient]:
    """One client for the whole stage, its ledger starting at what the run spent before it. A stage whose
    requests failed more often than teacher.max_failed_share raises TeacherFailures: it is not kept as done."""
    spent = spent or TeacherUsage()
    with ResponseStore(Path(cfg.teacher.cache_path).expanduser()) as store:
        client = TeacherClient(cfg.teacher, cfg.budget, store, seed=cfg.run.seed, spent_requests=spent.requests,
                               spent_usd=spent.cost_usd or 0.0, run=run, stage=stage)
        yield client
        client.check_failures(cfg.teacher.max_failed_share)


def _usage(client: TeacherClient) -> TeacherUsage:
    """The stage's usage: replies this run paid for (now or in an interrupted earlier invocation), free ones.

    Within a run, what was paid is read from the response store (every reply it recorded as bought by this stage
    of this run): the report then adds up to the store, whether the stage ran once, was resumed after a kill, or
    was redone on other requests after a repair."""
    s = client.stats
    usage = TeacherUsage(requests=s.requests + s.bought_earlier, cached=s.cached, failed=s.failures,
                         skipped_budget=s.skipped, prompt_tokens=s.prompt_tokens,
                         completion_tokens=s.completion_tokens, cost_usd=s.cost_usd, saved_usd=s.saved_usd)
    if client.run is None:
        return usage
    bought = client.store.bought_by(client.run, client.stage)
    costs = [reply.cost_usd for reply in bought]
    return usage.model_copy(update=dict(
        requests=len(bought), prompt_tokens=sum(reply.prompt_tokens for reply in bought),
        completion_tokens=sum(reply.completion_tokens for reply in bought),
        cost_usd=None if None in costs else sum(costs)))


def _candidate(cfg: FDDConfig, reply: TeacherReply, kind: str, parent: Problem, **fields) -> Candidate:
    if reply.text is None:  # failed after retries, or not sent because of the budget
        question, program, error = "", "", BUDGET_PARSE_ERROR if reply.error == BUDGET else "request_failed"
    else:
        parsed = parse_reply(reply.text, kind)
        question, program, error = parsed.question, parsed.program, parsed.reason
    return Candidate(
        kind=kind, question=parent.question if kind == "solve" else question, program=program,
        raw=reply.text or "", parse_error=error, parent_id=parent.id, teacher_model=cfg.teacher.model,
        prompt=reply.request.prompt, sample_index=reply.request.sample_index, **fields,
    )


def _sandbox(cfg: FDDConfig) -> Sandbox:
    return Sandbox.from_config(cfg.sandbox)


def _write(out_dir: Path, stage: str, candidates, result, usage: TeacherUsage, started: float,
           inputs: dict[str, Path]) -> GenerationResult:
    out_dir = Path(out_dir)
    outputs = {
        "candidates": str(write_jsonl(out_dir / "candidates.jsonl", candidates)),
        "decisions": str(write_jsonl(out_dir / "decisions.jsonl", result.decisions)),
        "accepted": str(write_jsonl(out_dir / "accepted.jsonl", result.examples)),
    }
    done = GenerationResult(stage=stage, outputs=outputs, counts=result.counts, teacher=usage,
                            seconds=round(time.monotonic() - started, 3))
    return finish_stage(out_dir, inputs, done)
