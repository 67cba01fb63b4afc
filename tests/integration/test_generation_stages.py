"""The teacher's stages end to end: `fdd teacher serve`, litellm over real HTTP, the response store,
the sandbox and curation, as a user's run uses them."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from fdd_core import synthetic
from fdd_core.curation import screen_variants
from fdd_core.teacher.stages import _teacher, _vote, generate_solutions, generate_variants
from fdd_core.config_files import load_config
from fdd_core.records import Attempt, AttemptRow, Candidate, load_problems
from fdd_core.sandbox import Sandbox
from fdd_core.similarity import ContaminationIndex
from fdd_core.store import read_jsonl, write_jsonl
from tests.unit.test_curation import all_votes_rule

from .conftest import REPO, read_log


def make_cfg(tmp_path, api_base, *overrides):
    return load_config(None, [
        "teacher.model=openai/fdd-offline", f"teacher.api_base={api_base}",
        f"teacher.cache_path={tmp_path / 'teacher.sqlite'}", "teacher.k_solutions=4", "teacher.timeout_s=2",
        "teacher.concurrency=8", *overrides,
    ])


@pytest.fixture
def seeds(tmp_path):
    seed_problems, test_problems = synthetic.make_splits(n_seed=200, n_test=40, seed=0)
    return write_jsonl(tmp_path / "seed.jsonl", seed_problems), write_jsonl(tmp_path / "test.jsonl", test_problems)


def write_pool(tmp_path, seeds):
    """tmp_path/attempts.jsonl: the first 40 seed problems, alternately hard and easy, as feedback writes them."""
    pool = []
    for i, row in enumerate(read_jsonl(seeds[0])[:40]):
        easy = bool(i % 2)
        attempt = Attempt(program="ans = 0", predicted=0, ok=easy, error=None if easy else "wrong_answer")
        pool.append(AttemptRow(**row, split="easy" if easy else "hard", round=0, correct=int(easy), attempts=[attempt])
                    .model_dump(mode="json"))
    write_jsonl(tmp_path / "attempts.jsonl", pool)
    return pool


def served(log):
    """(messages hash, seed) of every request the server answered with a reply."""
    return [(line["messages_sha256"], line["seed"]) for line in read_log(log) if line["status"] == 200]


def assert_accounted(result, out_dir):
    """Every candidate ends accepted or dropped with a reason, and the counts add up."""
    candidates = read_jsonl(out_dir / "candidates.jsonl")
    decisions = read_jsonl(out_dir / "decisions.jsonl")
    assert [d["candidate_id"] for d in decisions] == [c["id"] for c in candidates]
    assert all(d["accepted"] != bool(d["reason"]) for d in decisions)
    counts = result.counts
    assert counts.candidates == len(candidates)
    assert counts.accepted + sum(counts.dropped.values()) == counts.candidates
    assert counts.accepted == len(read_jsonl(out_dir / "accepted.jsonl"))
    assert Counter(d["reason"] for d in decisions if d["reason"]) == +Counter(counts.dropped)


def test_k4_solutions_for_200_seeds_over_http_and_a_second_run_sends_nothing(tmp_path, seeds, teacher_server):
    api_base, log = teacher_server("--error-rate", "0.1")
    cfg = make_cfg(tmp_path, api_base)
    first = generate_solutions(cfg, seeds[0], tmp_path / "run1")
    assert first.counts.candidates == 800
    assert len(served(log)) == 800 and first.teacher.requests == 800 and first.teacher.cost_usd is None
    # the 10% damaged replies are curation's work: wrong programs and malformed replies are dropped
    dropped = first.counts.dropped
    assert dropped["wrong_answer"] > 10 and dropped["parse_error"] > 10
    # k samples are k reasoning paths; identical programs for one problem are kept once
    assert dropped["duplicate"] > 100 and 400 < first.counts.accepted < 700
    assert_accounted(first, tmp_path / "run1")
    row = read_jsonl(tmp_path / "run1" / "accepted.jsonl")[0]
    assert row["parent_id"].startswith("synthetic-seed-") and row["round"] == 0 and row["split"] == "seed"
    assert row["teacher_model"] == "openai/fdd-offline" and row["prompt"] == "solve.v1"

    second = generate_solutions(cfg, seeds[0], tmp_path / "run2")
    assert len(served(log)) == 800, "the identical second run sent requests"
    assert len(read_log(log)) == 800
    assert second.teacher.requests == 0 and second.teacher.cached == 800
    assert (tmp_path / "run2" / "accepted.jsonl").read_text() == (tmp_path / "run1" / "accepted.jsonl").read_text()


@pytest.mark.robustness
def test_stage_finishes_through_20pct_faults_and_10pct_malformed_replies(tmp_path, seeds, teacher_server):
    api_base, log = teacher_server("--error-rate", "0.2", "--fail-429", "0.07", "--fail-500", "0.07",
                                   "--fail-timeout", "0.06", "--slow-s", "4")
    problems = read_jsonl(seeds[0])[:50]
    write_jsonl(tmp_path / "fifty.jsonl", problems)
    cfg = make_cfg(tmp_path, api_base, "teacher.timeout_s=1", "teacher.max_retries=8")
    result = generate_solutions(cfg, tmp_path / "fifty.jsonl", tmp_path / "out")
    outcomes = Counter(line["outcome"] for line in read_log(log))
    assert outcomes["429"] and outcomes["500"] and outcomes["timeout"], outcomes
    assert result.counts.candidates == 200
    assert_accounted(result, tmp_path / "out")
    assert result.counts.dropped["parse_error"] >= 5  # the malformed replies, kept as rows with a reason
    assert result.counts.accepted + result.counts.dropped["duplicate"] >= 120


KILLED_STAGE = """
import sys
from pathlib import Path
from fdd_core.teacher.stages import generate_solutions
from fdd_core.config_files import load_config
from fdd_core.records import Attempt, AttemptRow
cfg = load_config(None, sys.argv[4:])
generate_solutions(cfg, Path(sys.argv[1]), Path(sys.argv[2]))
"""


@pytest.mark.robustness
def test_killed_stage_restarts_without_repaying_a_request(tmp_path, seeds, teacher_server):
    api_base, log = teacher_server("--latency-ms", "40", "--fail-429", "0.1")
    cfg_args = [f"teacher.model=openai/fdd-offline", f"teacher.api_base={api_base}",
                f"teacher.cache_path={tmp_path / 'teacher.sqlite'}", "teacher.k_solutions=4", "teacher.concurrency=4"]
    child = subprocess.Popen([sys.executable, "-c", KILLED_STAGE, str(seeds[0]), str(tmp_path / "out"), "-", *cfg_args],
                             cwd=REPO, env={**os.environ})
    deadline = time.monotonic() + 120
    while len(served(log)) < 150 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    before = served(log)
    assert 150 <= len(before) < 800, "the stage was not killed midway"
    assert not (tmp_path / "out" / "accepted.jsonl").exists()

    result = generate_solutions(load_config(None, cfg_args), seeds[0], tmp_path / "out")
    after = served(log)[len(before):]
    # Replies in flight at the kill (at most the concurrency) were never received, so may be re-bought.
    repaid = set(before) & set(after)
    assert len(repaid) <= 4, f"{len(repaid)} requests that had succeeded were sent again"
    assert result.teacher.cached >= len(before) - 4
    assert len(set(before) | set(after)) == 800 and result.counts.candidates == 800


@pytest.mark.robustness
def test_budget_stops_the_stage_within_one_batch_and_keeps_what_was_bought(tmp_path, seeds, teacher_server):
    api_base, log = teacher_server("--error-rate", "0")
    cfg = make_cfg(tmp_path, api_base, "budget.max_requests=100")
    result = generate_solutions(cfg, seeds[0], tmp_path / "out")
    assert result.teacher.requests == 100 == len(served(log))
    assert result.teacher.skipped_budget == 700
    assert result.counts.candidates == 800
    assert result.counts.dropped["budget"] == 700  # requests not sent: rows not lost, not bought, their own reason
    assert result.counts.dropped["parse_error"] == 0
    # what was bought is kept: with error rate 0 every reply is right (some paths are duplicates)
    assert result.counts.accepted + result.counts.dropped["duplicate"] == 100
    assert result.counts.accepted >= 50
    assert_accounted(result, tmp_path / "out")


@pytest.mark.robustness
def test_variants_stage_finishes_through_20pct_faults_and_accounts_for_every_candidate(tmp_path, seeds, teacher_server):
    api_base, log = teacher_server("--error-rate", "0.2", "--fail-429", "0.07", "--fail-500", "0.07",
                                   "--fail-timeout", "0.06", "--slow-s", "4")
    cfg = make_cfg(tmp_path, api_base, "teacher.timeout_s=1", "teacher.max_retries=8",
                   "curation.votes=3", "curation.min_agree=2")
    write_pool(tmp_path, seeds)
    result = generate_variants(cfg, tmp_path / "attempts.jsonl", tmp_path / "out", round_index=1,
                               train_path=seeds[0], test_paths=[seeds[1]])
    outcomes = Counter(line["outcome"] for line in read_log(log))
    assert outcomes["429"] and outcomes["500"] and outcomes["timeout"], outcomes
    assert result.counts.candidates == 20 * 1 + 20 * 2
    assert_accounted(result, tmp_path / "out")
    dropped = result.counts.dropped
    assert dropped["parse_error"] + dropped["disagreement"] >= 3  # the malformed and wrong replies, with reasons
    assert result.counts.accepted >= 25


def test_variants_are_voted_on_decontaminated_and_carry_lineage(tmp_path, seeds, teacher_server):
    api_base, log = teacher_server("--error-rate", "0.1")
    cfg = make_cfg(tmp_path, api_base, "curation.votes=3", "curation.min_agree=2")
    pool = write_pool(tmp_path, seeds)
    # a held-out test problem planted in the pool's training set must not come back as a variant
    result = generate_variants(cfg, tmp_path / "attempts.jsonl", tmp_path / "out", round_index=1,
                               train_path=seeds[0], test_paths=[seeds[1]])
    assert result.counts.candidates == 20 * 1 + 20 * 2
    assert_accounted(result, tmp_path / "out")
    accepted = read_jsonl(tmp_path / "out" / "accepted.jsonl")
    assert len(accepted) >= 30
    kinds = {row["prompt"] for row in accepted}
    assert kinds <= {"harder.v1", "similar.v1"} and len(kinds) == 2
    for row in accepted:
        assert row["round"] == 1 and row["split"] in ("easy", "hard") and row["source"] == "generated"
        parent = next(p for p in pool if p["id"] == row["parent_id"])
        assert (row["split"] == "easy") == (row["prompt"] == "harder.v1") and parent["split"] == row["split"]
    # 60 generation requests, and votes only as many as decisions need
    assert result.teacher.requests == len(served(log)) > 60


def served_kinds(log) -> Counter:
    return Counter(line["kind"] for line in read_log(log) if line["status"] == 200)


def test_variants_buy_only_the_votes_decisions_need_and_decide_as_all_votes_would(tmp_path, seeds, teacher_server):
    api_base, log = teacher_server("--error-rate", "0.1")
    cfg = make_cfg(tmp_path, api_base, "curation.votes=3", "curation.min_agree=2")
    write_pool(tmp_path, seeds)
    result = generate_variants(cfg, tmp_path / "attempts.jsonl", tmp_path / "out", round_index=1,
                               train_path=seeds[0], test_paths=[seeds[1]])
    assert_accounted(result, tmp_path / "out")
    kinds = served_kinds(log)
    assert kinds["harder"] + kinds["similar"] == 60
    candidates = [Candidate.model_validate(row) for row in read_jsonl(tmp_path / "out" / "candidates.jsonl")]
    decisions = {row["candidate_id"]: row for row in read_jsonl(tmp_path / "out" / "decisions.jsonl")}
    free_drops = {"parse_error", "contaminated", "no_answer", "syntax", "runtime", "timeout", "memory", "forbidden"}
    voted = [c for c in candidates if decisions[c.id]["reason"] not in free_drops]
    parsed = [c for c in candidates if not c.parse_error]
    # before: 3 votes for every parsed candidate; now none for free drops, and 2 where 2 agree
    assert 0 < kinds["solve"] < 3 * len(voted) <= 3 * len(parsed)
    assert kinds["solve"] == result.teacher.requests - 60

    # The reference: buy every vote of every survivor (the stage's are served by the store), count them all.
    with Sandbox.from_config(cfg.sandbox) as sandbox:
        index = ContaminationIndex.from_problems(load_problems(seeds[1]), n=cfg.curation.decontamination_ngram)
        screening = screen_variants(candidates, sandbox, cfg=cfg.curation,
                                    known_questions=[row["question"] for row in read_jsonl(seeds[0])],
                                    contamination=index)
        asks = [(c, sample) for c in screening.survivors for sample in range(cfg.curation.votes)]
        with _teacher(cfg, None, None) as client:
            programs = _vote(cfg, client, asks)
            assert client.stats.cached >= kinds["solve"]  # the stage's votes are among these requests
        votes: dict[str, list[str]] = {}
        for (c, _), program in zip(asks, programs):
            votes.setdefault(c.id, []).append(program)
        reference = all_votes_rule(screening, votes, sandbox, cfg.curation)
    assert {cid: d["accepted"] for cid, d in decisions.items()} == {cid: r[0] for cid, r in reference.items()}
    for cid, d in decisions.items():
        if not (reference[cid][1] == "disagreement" and d["reason"] in ("duplicate", "near_duplicate")):
            assert d["reason"] == reference[cid][1], (cid, d, reference[cid])
    assert kinds["solve"] < len(asks)
    assert result.counts.accepted >= 30


@pytest.mark.robustness
def test_variants_budget_drops_what_it_could_not_buy_as_budget(tmp_path, seeds, teacher_server):
    api_base, log = teacher_server("--error-rate", "0")
    cfg = make_cfg(tmp_path, api_base, "curation.votes=3", "curation.min_agree=2", "budget.max_requests=75")
    write_pool(tmp_path, seeds)
    result = generate_variants(cfg, tmp_path / "attempts.jsonl", tmp_path / "out", round_index=1,
                               train_path=seeds[0], test_paths=[seeds[1]])
    assert result.teacher.requests == 75 == len(served(log))
    kinds = served_kinds(log)
    assert kinds["harder"] + kinds["similar"] == 60 and kinds["solve"] == 15
    assert_accounted(result, tmp_path / "out")
    dropped = result.counts.dropped
    # 15 votes decide at most 7 candidates; the others' votes were not bought: budget, not disagreement
    assert result.counts.accepted <= 7 and dropped["budget"] >= 20 and dropped["disagreement"] <= 7
    assert result.teacher.skipped_budget > 0
