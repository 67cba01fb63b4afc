"""Benchmarks load from the shared local files (FDD_DATA_DIR) with the README's counts and score 100% against
themselves."""

import pytest

from fdd_core import benchmarks as bm
from fdd_core.answers import answers_match, as_number, extract_strict, normalize_answer
from fdd_core.user_problems import question_id
from tests.unit.test_benchmarks import ROWS, fake_hub  # noqa: F401  (fake_hub: a fixture used here)

# ASDiv full: answers that are not one number (names, times, ratios such as "2:3", multi-part answers).
# The 2,215-row variant drops the 90 multi-part ones and keeps the other 122.
ASDIV_NON_NUMERIC = {"asdiv": 212, "asdiv-2215": 122}


@pytest.fixture(scope="module")
def loaded(data_dir):
    return {name: bm.load_benchmark(name, source="local", data_dir=data_dir) for name in ROWS}


@pytest.mark.parametrize("name", list(ROWS))
def test_loads_every_row_with_unique_ids_and_questions(loaded, name, data_dir):
    b = loaded[name]
    assert (b.name, b.source, len(b.problems)) == (name, "local", ROWS[name])
    assert b.origin == str(data_dir / bm.BENCHMARKS[name].local_path)
    assert len({p.id for p in b.problems}) == len(b.problems)
    assert all(p.question.strip() == p.question and p.question for p in b.problems)
    assert all(p.source == name and p.answer for p in b.problems)


@pytest.mark.parametrize("name", list(ROWS))
def test_gold_answers_score_100_percent_against_themselves(loaded, name):
    problems = loaded[name].problems
    assert all(answers_match(p.answer, p.answer) for p in problems)
    non_numeric = [p.answer for p in problems if as_number(p.answer) is None]
    if name in ASDIV_NON_NUMERIC:
        assert len(non_numeric) == ASDIV_NON_NUMERIC[name], non_numeric[:20]
    else:
        assert non_numeric == []


def test_asdiv_non_numeric_answers_still_normalise(loaded):
    kinds = {type(normalize_answer(p.answer)).__name__ for p in loaded["asdiv"].problems}
    assert kinds == {"float", "str", "tuple"}


@pytest.mark.parametrize("name", ["gsm8k-train", "gsm8k"])
def test_gsm8k_gold_is_what_strict_extraction_reads_from_the_solution(loaded, name):
    for p in loaded[name].problems:
        assert extract_strict(p.solution).replace(",", "") == p.answer, p.id


def test_first_records_of_each_benchmark(loaded):
    first = {name: b.problems[0] for name, b in loaded.items()}
    assert (first["gsm8k-train"].id, first["gsm8k-train"].answer) == ("gsm8k-train-0", "72")
    assert first["gsm8k-train"].solution.endswith("#### 72")
    assert (first["gsm8k"].id, first["gsm8k"].answer) == ("gsm8k-test-0", "18")
    assert first["svamp"].id == "svamp-chal-1" and first["svamp"].answer == "51"
    assert first["svamp"].question == ("Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars "
                                       "on each pack. How much do you have to pay to buy each pack?")
    assert (first["asdiv"].id, first["asdiv"].answer) == ("asdiv-nluds-0001", "9 (apples)")
    assert first["asdiv"].question == ("Seven red apples and two green apples are in the basket. "
                                       "How many apples are in the basket?")
    assert (first["asdiv-pal"].id, first["asdiv-pal"].answer) == ("asdiv-pal-0", "9")
    assert (first["multiarith"].id, first["multiarith"].answer) == (question_id("multiarith", first["multiarith"].question),
                                                                    "39")
    assert first["gsm-hard"].answer == "-9867630" and "def solution" in first["gsm-hard"].solution
    assert first["asdiv"].solution is first["svamp"].solution is None
    assert loaded["asdiv"].problems[-1].id == "asdiv-nluds-2305"


def test_gsm_hard_keeps_non_integer_targets_exactly(loaded):
    answers = {p.answer for p in loaded["gsm-hard"].problems}
    assert "3244047.0999999996" in answers and "6277334000" in answers


def test_limit_takes_the_first_rows_with_the_same_ids(data_dir, loaded):
    b = bm.load_benchmark("svamp", data_dir=data_dir, limit=3)
    assert b.problems == loaded["svamp"].problems[:3]
    assert bm.load_benchmark("gsm8k", data_dir=data_dir, limit=0).problems == []


def test_auto_reads_fdd_data_dir(monkeypatch, data_dir):
    monkeypatch.setenv("FDD_DATA_DIR", str(data_dir))
    b = bm.load_benchmark("multiarith", limit=2)
    assert (b.source, len(b.problems)) == ("local", 2)


def test_local_only_benchmark_has_no_hub_fallback(monkeypatch, data_dir):
    monkeypatch.delenv("FDD_DATA_DIR", raising=False)
    with pytest.raises(bm.BenchmarkError, match="only as a local file.*no data folder given.*FDD_DATA_DIR"):
        bm.load_benchmark("asdiv-pal")
    with pytest.raises(bm.BenchmarkError, match="only as a local file.*source='hub' was asked for"):
        bm.load_benchmark("asdiv-pal", source="hub", data_dir=data_dir)


def test_hub_and_local_records_agree_where_the_rows_agree(fake_hub, loaded):
    local = loaded["asdiv"].problems[0]
    assert bm.load_benchmark("asdiv", source="hub", limit=1).problems == [local]


# ------------------------------------------------------------------- issue 18: read as the papers read them
def test_svamp_body_and_question_join_as_pal_and_qwen_math_do(data_dir, loaded):
    """A body without a final period gets one before the question (358 of the 1,000); the others are joined by a
    space as before."""
    import json

    rows = json.loads((data_dir / "svamp" / "SVAMP.json").read_text())
    by_id = {p.id: p.question for p in loaded["svamp"].problems}
    added = 0
    for row in rows:
        body, question = row["Body"].strip(), row["Question"].strip()
        expected = f"{body} {question}" if body.endswith(".") else f"{body}. {question}"
        added += not body.endswith(".")
        assert by_id[f"svamp-{row['ID']}"] == expected
    assert added == 358


def test_multiarith_ids_are_the_same_from_the_hub_and_the_local_file(monkeypatch, loaded):
    """ChilleD/MultiArith holds the same 600 problems split train/test in another order, with other field names
    and stray spaces: each problem gets the id it has from PAL's file (positions gave other problems the same id)."""
    import random

    datasets = pytest.importorskip("datasets")
    local = loaded["multiarith"].problems
    shuffled = local[:]
    random.Random(0).shuffle(shuffled)
    hub_rows = [{"question": f" {p.question} ", "final_ans": p.answer} for p in shuffled]
    splits = {"train": hub_rows[:420], "test": hub_rows[420:]}
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, *, split: datasets.Dataset.from_list(
        splits[split]))
    hub = bm.load_benchmark("multiarith", source="hub").problems
    assert len(hub) == len(local) == 600
    assert {(p.id, p.question, p.answer) for p in hub} == {(p.id, p.question, p.answer) for p in local}
    assert sum(p.id.endswith("-2") for p in local) == 20  # the questions MultiArith holds twice


def test_asdiv_2215_is_asdiv_without_its_multi_answer_rows(loaded):
    full, variant = loaded["asdiv"].problems, loaded["asdiv-2215"].problems
    assert len(variant) == 2215 and not any(";" in p.answer for p in variant)
    # the same ids (nluds numbering), texts and answers
    assert [(p.id, p.question, p.answer) for p in variant] == [(p.id, p.question, p.answer) for p in full
                                                                 if ";" not in p.answer]
