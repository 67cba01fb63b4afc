"""The teacher spend forecast of `fdd run --dry-run` (fdd_core.teacher.forecast): pure, nothing sent or started."""

import pytest

from fdd_core.config import FDDConfig
from fdd_core.teacher import forecast as fc_module
from fdd_core.teacher.costs import format_usd, token_cost
from fdd_core.teacher.forecast import GSM8K_TRAIN_LONGEST_TOKENS, forecast

PRICED = "openai/gpt-4o-mini"
UNPRICED = "hosted_vllm/fdd-test-unpriced-model"


def cfg(**sections) -> FDDConfig:
    base = {"run": {"rounds": 3}, "data": {"n_seed": 20, "n_synthetic_test": 0}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return FDDConfig.model_validate(base)


def rows_by(fc):
    return {(r.round, r.part): r for r in fc.rows}


def test_rows_follow_the_flow_solutions_then_variants_and_votes_per_round():
    fc = forecast(cfg())
    assert [(r.stage, r.round, r.part) for r in fc.rows] == [
        ("generate_solutions", 0, "solutions"),
        *[("generate_variants", r, part) for r in range(3) for part in ("variants", "votes")],
    ]
    assert [r.part for r in forecast(cfg(run={"rounds": 0})).rows] == ["solutions"]


def test_request_bounds_grow_as_the_pool_can():
    c = cfg(teacher={"k_solutions": 4}, feedback={"harder_per_easy": 1, "similar_per_hard": 3}, curation={"votes": 5})
    rows = rows_by(forecast(c))
    assert rows[0, "solutions"].max_requests == 20 * 4
    pool = 20  # the pool of round 0 holds at most the seed problems
    for r in range(3):
        variants, votes = rows[r, "variants"], rows[r, "votes"]
        assert variants.max_problems == pool
        assert variants.max_requests == pool * 3  # max(harder_per_easy, similar_per_hard)
        assert votes.max_problems == variants.max_requests  # every candidate may pass the free checks
        assert votes.max_requests == variants.max_requests * 5
        pool += variants.max_requests  # the next pool <= this pool + its candidates
    # a zero per-kind count asks nothing of that kind
    none = rows_by(forecast(cfg(feedback={"harder_per_easy": 0, "similar_per_hard": 0})))
    assert none[1, "variants"].max_requests == none[1, "votes"].max_requests == 0


def test_token_bounds_are_per_request_caps_and_the_expected_figures_lie_below():
    c = cfg(teacher={"max_tokens": 500})
    fc = forecast(c)
    seeds = fc.seed_questions
    assert seeds.count == 20 and 0 < seeds.mean_tokens <= seeds.longest_tokens
    assert fc.max_generated_question_tokens == 500  # written inside one reply of at most max_tokens
    for row in fc.rows:
        assert row.max_completion_tokens == row.max_requests * 500
        assert row.expected_completion_tokens <= row.max_completion_tokens
        assert row.expected_prompt_tokens <= row.max_prompt_tokens
    solve = rows_by(fc)[0, "solutions"]
    per_request = fc.prompt_template_tokens["solve"] + seeds.longest_tokens
    assert solve.max_prompt_tokens == solve.max_requests * per_request
    votes = rows_by(fc)[0, "votes"]
    assert votes.max_prompt_tokens == votes.max_requests * (fc.prompt_template_tokens["solve"] + 500)
    total = fc.total
    assert total.max_requests == sum(r.max_requests for r in fc.rows)
    assert total.max_completion_tokens == sum(r.max_completion_tokens for r in fc.rows)
    # larger caps, more rounds or more solutions never lower the bound
    assert forecast(cfg(teacher={"max_tokens": 1000})).total.max_completion_tokens > total.max_completion_tokens
    assert forecast(cfg(run={"rounds": 4})).total.max_requests > total.max_requests
    assert forecast(cfg(teacher={"k_solutions": 8})).total.max_requests > total.max_requests


def test_the_bound_covers_the_prompt_of_every_seed():
    c = cfg()
    fc = forecast(c)
    from fdd_core.run_data import synthetic_splits
    from fdd_core.teacher.prompts import load_prompt

    import litellm

    per_request = fc.rows[0].max_prompt_tokens // fc.rows[0].max_requests
    longest_prompt = max(litellm.token_counter(model=c.teacher.model, messages=load_prompt("solve").messages(p.question))
                         for p in synthetic_splits(c)[0])
    assert longest_prompt <= per_request


def test_offline_teacher_costs_a_known_zero():
    fc = forecast(cfg())
    assert fc.free and fc.priced
    assert all(r.max_cost_usd == 0.0 and r.expected_cost_usd == 0.0 for r in fc.rows)
    assert fc.total.max_cost_usd == 0.0 and fc.total.expected_cost_usd == 0.0
    assert format_usd(fc.total.max_cost_usd) == "$0.0000"


def test_unpriced_model_cost_is_unknown_never_zero():
    assert token_cost(UNPRICED, 1000, 1000) is None
    fc = forecast(cfg(teacher={"model": UNPRICED}))
    assert not fc.priced and not fc.free and fc.usd_per_million_prompt is None
    assert all(r.max_cost_usd is None and r.expected_cost_usd is None for r in fc.rows)
    assert fc.total.max_cost_usd is None and format_usd(fc.total.max_cost_usd) == "unknown"
    assert fc.total.max_requests > 0  # requests and tokens are still counted


def test_priced_model_costs_its_tokens_per_request():
    fc = forecast(cfg(teacher={"model": PRICED}))
    solve = fc.rows[0]
    per_request = solve.max_prompt_tokens // solve.max_requests
    assert solve.max_cost_usd == pytest.approx(solve.max_requests * token_cost(PRICED, per_request, 768))
    assert 0 < solve.expected_cost_usd < solve.max_cost_usd
    assert fc.total.max_cost_usd == pytest.approx(sum(r.max_cost_usd for r in fc.rows))


def test_no_budget_no_check():
    assert forecast(cfg()).budget == []


@pytest.mark.parametrize("cap, where", [
    (79, (0, "generate_solutions", "solutions")),  # 80 solve requests: the 80th is skipped
    (80, (0, "generate_variants", "variants")),  # exactly the solutions: the first variant request is skipped
    (80 + 40, (0, "generate_variants", "votes")),
    (80 + 40 + 120, (1, "generate_variants", "variants")),
])
def test_request_cap_is_reported_where_the_bound_first_passes_it(cap, where):
    fc = forecast(cfg(budget={"max_requests": cap}))
    (check,) = fc.budget
    assert check.limit == "max_requests" and check.reached
    assert (check.round, check.stage, check.part) == where


def test_request_cap_above_the_bound_cannot_stop_the_run():
    total = forecast(cfg()).total.max_requests
    (check,) = forecast(cfg(budget={"max_requests": total})).budget
    assert not check.reached and check.round is None


def test_usd_cap_is_reported_where_the_bound_and_the_expected_spend_reach_it():
    rows = forecast(cfg(teacher={"model": PRICED})).rows
    solutions_max, variants_max = rows[0].max_cost_usd, rows[1].max_cost_usd
    # above the solutions' bound: reached in round 0's variants at the earliest
    (check,) = forecast(cfg(teacher={"model": PRICED}, budget={"max_usd": solutions_max + variants_max / 2})).budget
    assert check.enforceable and check.reached
    assert (check.round, check.stage, check.part) == (0, "generate_variants", "variants")
    # the expected spend is lower, so it reaches the same cap later, or never
    order = [(r.round, r.part) for r in rows]
    assert check.expected_reached is False or order.index((check.expected_round, check.expected_part)) >= 1
    tiny = forecast(cfg(teacher={"model": PRICED}, budget={"max_usd": 0.01})).budget[0]
    assert (tiny.round, tiny.part, tiny.expected_round, tiny.expected_part) == (0, "solutions", 0, "solutions")
    huge = forecast(cfg(teacher={"model": PRICED}, budget={"max_usd": 1e6})).budget[0]
    assert not huge.reached and huge.expected_reached is False


def test_usd_cap_on_the_free_teacher_stops_only_at_zero():
    assert not forecast(cfg(budget={"max_usd": 0.01})).budget[0].reached
    zero = forecast(cfg(budget={"max_usd": 0})).budget[0]  # the ledger sends nothing once spent >= max_usd
    assert zero.reached and zero.part == "solutions"


def test_usd_cap_with_an_unpriced_model_is_not_enforceable():
    checks = forecast(cfg(teacher={"model": UNPRICED}, budget={"max_usd": 1, "max_requests": 10})).budget
    by = {c.limit: c for c in checks}
    assert by["max_usd"].enforceable is False and by["max_usd"].reached is False
    assert by["max_requests"].reached and by["max_requests"].part == "solutions"


def test_gsm8k_seeds_use_the_stated_bound_without_loading_data():
    fc = forecast(cfg(data={"seed_set": "gsm8k-train", "n_seed": 7473, "benchmarks": ["gsm8k"]}))
    assert fc.seed_questions.longest_tokens == GSM8K_TRAIN_LONGEST_TOKENS
    assert "stated" in fc.seed_questions.source and fc.seed_questions.count == 7473
    assert fc.rows[0].max_requests == 7473 * 4


def test_given_seed_questions_set_the_seed_lengths():
    fc = forecast(cfg(), seed_questions=["one two three " * 50, "short?"])
    assert fc.seed_questions.count == 2 and fc.seed_questions.longest_tokens >= 150


def test_a_model_whose_tokenizer_would_download_is_counted_as_characters(monkeypatch):
    import litellm

    def no_counting(*args, **kwargs):
        raise AssertionError("litellm.token_counter would fetch a Hugging Face tokenizer for this model")

    monkeypatch.setattr(litellm, "token_counter", no_counting)
    fc = forecast(cfg(teacher={"model": "ollama/llama-3-8b"}))
    assert fc.tokenizer.startswith("characters / 4")
    assert fc.total.max_requests > 0 and fc.seed_questions.longest_tokens > 0


def test_the_forecast_is_typed_and_serialisable():
    fc = forecast(cfg(teacher={"model": PRICED}, budget={"max_usd": 0.01}))
    again = fc_module.Forecast.model_validate_json(fc.model_dump_json())
    assert again == fc
