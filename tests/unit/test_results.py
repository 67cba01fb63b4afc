"""Typed stage results: one way to add teacher usage, and a round's report row built from its summary."""

import pytest
from pydantic import ValidationError

from fdd_core.results import CurationCounts, GenerationResult, RoundSummary, TeacherUsage


def test_usage_adds_up_and_an_unknown_cost_stays_unknown():
    a = TeacherUsage(requests=3, cached=1, prompt_tokens=10, completion_tokens=5, cost_usd=0.5, saved_usd=0.1)
    b = TeacherUsage(requests=2, failed=1, skipped_budget=4, prompt_tokens=1, completion_tokens=1, cost_usd=0.25)
    total = a + b
    assert (total.requests, total.cached, total.failed, total.skipped_budget, total.tokens) == (5, 1, 1, 4, 17)
    assert total.cost_usd == 0.75 and total.saved_usd == pytest.approx(0.1)
    assert (a + TeacherUsage(cost_usd=None)).cost_usd is None  # never reported as $0


def test_round_zero_row_includes_the_seed_solutions():
    summary = RoundSummary(model="m", train_size=90, accuracy={"synthetic-test": 0.5}, seconds=10.04,
                           teacher=TeacherUsage(requests=7, cost_usd=None))
    seeds = TeacherUsage(requests=100, cached=2, prompt_tokens=30, completion_tokens=20, cost_usd=1.0)
    row = summary.row(0, extra=seeds, extra_seconds=5.0, extra_rows=50)
    assert (row.round, row.train_size, row.seconds) == (0, 90, 15.0)
    assert row.teacher.model_dump() == {"requests": 107, "cached": 2, "tokens": 50, "cost_usd": None, "saved_usd": 0.0}
    assert row.paid_per_row == 107 / 50  # the seed solutions' rows count for round 0
    assert summary.row(1).teacher.requests == 7 and summary.row(1).seconds == 10.0
    assert summary.row(1).paid_per_row is None  # no row accepted


def test_stage_results_refuse_a_misspelt_count():
    counts = CurationCounts(candidates=3, accepted=1, dropped={"duplicate": 2})
    result = GenerationResult(stage="generate_variants", counts=counts, teacher=TeacherUsage())
    assert result.counts.accepted == 1
    with pytest.raises(ValidationError):
        CurationCounts(candidates=3, accepted=1, dropped={}, acepted=1)
