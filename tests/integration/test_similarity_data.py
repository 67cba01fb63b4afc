"""Dedup and decontamination indexes on the shared benchmark files: speed on ~10k questions, every GSM8K test
item caught under other names and numbers, the false-positive rate on GSM8K train, a pickle read by another process."""

from __future__ import annotations

import random
import re
import sys

import pytest

from fdd_core.benchmarks import load_benchmark
from fdd_core.similarity import NUMBER_WORDS, ContaminationIndex, NearDuplicateIndex
from tests.integration.test_curation_sandbox import MAYA, Q


def test_near_duplicate_index_is_fast_on_10k_questions(data_dir):
    import time

    questions = [p.question for p in load_benchmark("gsm8k-train", source="local", data_dir=data_dir).problems]
    questions += [q.replace(" the ", " a ", 1) for q in questions[:2500]]  # ~10k, a quarter of them near copies
    started = time.perf_counter()
    index, hits = NearDuplicateIndex(0.9, questions), 0
    for i, question in enumerate(questions):
        hits += index.find(question) is not None
        index.add(str(i), question)
    assert time.perf_counter() - started < 15  # ~1-2 s here; all pairs in pure Python would take minutes
    assert hits >= 2400


# -------------------------------------------------------------------------------------------------- decontamination
NAME_POOL = ["Priya", "Olumide", "Mr. Okafor", "Anna Maria", "Zoe", "Bartholomew"]


def rename_and_renumber(question: str, ordinary_words: set[str], rng: random.Random) -> str:
    """Another teacher's 'new' problem that is the test item with other names and numbers."""
    names: dict[str, str] = {}

    def rename(m: re.Match) -> str:
        word = m.group(0)
        return word if word.lower() in ordinary_words else names.setdefault(word, rng.choice(NAME_POOL))

    question = re.sub(r"\b[A-Z][a-z]+\b", rename, question)
    question = re.sub(r"\d+(?:\.\d+)?", lambda m: str(rng.randint(2, 999)), question)
    return re.sub(rf"\b({'|'.join(NUMBER_WORDS)})\b", lambda m: str(rng.randint(2, 99)), question)


JANET_PLANTED = (
    "Priya's hens lay 23 eggs per day. She eats 2 for breakfast every morning and bakes muffins for her friends "
    "every day with 6. She sells the remainder at the farmers' market daily for $3 per fresh duck egg. How much "
    "in dollars does she make every day at the farmers' market?"
)


def test_planted_test_question_is_caught_verbatim_and_with_other_names_and_numbers(gsm8k_test, gsm8k_index):
    janet = gsm8k_test[0]
    assert janet.question.startswith("Janet")
    assert gsm8k_index.check(janet.question) == (janet.id, 1.0, "ngram")
    match = gsm8k_index.check(JANET_PLANTED)
    assert match is not None and match.test_id == janet.id and match.score > 0.8
    # ... and as a 'harder variant' of the test item: a sentence added does not hide it
    assert gsm8k_index.check(JANET_PLANTED + " She also spends $5 a day on feed.").test_id == janet.id


def test_every_gsm8k_test_question_is_caught_with_other_names_and_numbers(gsm8k_test, gsm8k_index, data_dir):
    train = load_benchmark("gsm8k-train", source="local", data_dir=data_dir).problems
    ordinary = {w.lower() for p in gsm8k_test + train for w in re.findall(r"[^\W\d_]+", p.question) if w.islower()}
    rng = random.Random(0)
    planted = [rename_and_renumber(p.question, ordinary, rng) for p in gsm8k_test]
    assert sum(a != b.question for a, b in zip(planted, gsm8k_test)) > 1300  # they really changed
    caught = [gsm8k_index.check(q) for q in planted]
    assert sum(m is not None and m.test_id == p.id for m, p in zip(caught, gsm8k_test)) >= 0.99 * len(gsm8k_test)


@pytest.mark.parametrize(
    "question",
    [
        "Sara has 25 apples. She gives 7 apples to her friend. How many apples does she have left?",
        "Ben buys 3 notebooks for $4 each and a pen for $2. How much money does he spend in total?",
        "A car travels at a speed of 60 miles per hour for 3 hours. How far does it travel?",
        "Lily earns $12 per hour and works 5 hours a day. How much money will she have left after "
        "spending $40 on groceries?",
        "Mark is 4 years older than his sister. If his sister is 10 years old, what will be the sum of their ages "
        "in 5 years?",
        Q["ok"], Q["votes-1of3"], MAYA,
    ],
)
def test_template_phrases_are_not_contamination(gsm8k_index, question):
    assert gsm8k_index.check(question) is None


def test_false_positive_rate_on_gsm8k_train(gsm8k_index, data_dir):
    """GSM8K train questions are not test items, so what the index flags there is (mostly) a false positive.

    Measured: 7 of 7,473 (0.09%). Four of the seven are train items that re-use a test item's template
    almost word for word (train-1314/5162 vs test-602, train-20 vs test-632, train-2600 vs test-709): real
    overlap, which the issue expects; three are short age puzzles ('X is 5 years older than Y. If Y is 20,
    how old is X?') whose test item is mostly names and numbers. The bound, 0.5%, leaves room for data
    changes yet fails the naive rules: any shared raw 8-gram flags 0.8%, any shared abstracted one 4.8%.
    """
    train = load_benchmark("gsm8k-train", source="local", data_dir=data_dir).problems
    flagged = [p.id for p in train if gsm8k_index.check(p.question) is not None]
    rate = len(flagged) / len(train)
    print(f"\ndecontamination false-positive rate on GSM8K train vs GSM8K test: {len(flagged)}/{len(train)} "
          f"= {rate:.3%}: {flagged}")
    assert len(train) > 7000
    assert rate < 0.005


def test_index_survives_pickling_into_another_process(gsm8k_index, tmp_path):
    # n-gram keys are hash() values, randomised per process: the pickle must rebuild rather than carry them
    import pickle
    import subprocess

    path = tmp_path / "index.pkl"
    path.write_bytes(pickle.dumps(gsm8k_index))
    code = (f"import pickle; index = pickle.load(open({str(path)!r}, 'rb')); "
            f"print(index.check({JANET_PLANTED!r}).test_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == "gsm8k-test-0"


def test_index_from_all_test_benchmarks(data_dir):
    index = ContaminationIndex.from_benchmarks(data_dir=data_dir, source="local")
    ids = set(index.ids)
    assert {"gsm8k-test-0", "gsm-hard-0", "asdiv-pal-0"} <= ids and any(i.startswith("multiarith-") for i in ids)
    assert not any(i.startswith("gsm8k-train") for i in ids)
    assert index.check(JANET_PLANTED).test_id in {"gsm8k-test-0", "gsm-hard-0"}
