"""Curation with a real sandbox (worker processes): every filter drops with its reason, counts add up, votes,
dedup and decontamination against GSM8K test from the shared data folder."""

from __future__ import annotations

import pytest

from fdd_core.config import CurationConfig
from fdd_core.curation import BUDGET_PARSE_ERROR, REASONS, CurationResult, curate_solutions, curate_variants
from fdd_core.records import Candidate
from fdd_core.sandbox import Sandbox
from fdd_core.similarity import ContaminationIndex
from tests.unit.test_curation import FakeEmbedder

CFG = CurationConfig()  # votes=3, min_agree=2, near_duplicate_threshold=0.9, decontamination_ngram=8


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout_s=0.5, memory_mb=128) as box:
        yield box


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
    assert counts.candidates == len(candidates)
    assert counts.accepted + sum(counts.dropped.values()) == len(candidates)
    assert set(counts.dropped) == set(REASONS)
    assert counts.accepted == len(result.examples) == sum(d.accepted for d in result.decisions)
    for d in result.decisions:
        assert d.accepted == (d.reason is None)


# --------------------------------------------------------------------------------------------------- seed solutions
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
    dropped = result.counts.dropped
    for reason in ("parse_error", "syntax", "runtime", "timeout", "memory", "forbidden", "no_answer", "wrong_answer"):
        assert dropped[reason] == 1, reason
    assert dropped["duplicate"] == 2
    assert result.counts.accepted == 6


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
    assert curate_solutions([], sandbox).counts.candidates == 0


def test_requests_the_budget_kept_back_drop_as_budget(sandbox, gsm8k_index):
    not_sent = solve("b", "", parse_error=BUDGET_PARSE_ERROR)
    result = curate_solutions([solve("a", "ans = 6"), not_sent], sandbox)
    assert [d.reason for d in result.decisions] == [None, "budget"]
    assert result.counts.dropped["budget"] == 1 and result.counts.dropped["parse_error"] == 0
    result = curate_variants([variant("v", "", "", parse_error=BUDGET_PARSE_ERROR)], {}, sandbox, cfg=CFG,
                             contamination=gsm8k_index)
    assert result.decisions[0].reason == "budget" and result.decisions[0].detail.startswith("request not sent")


# ----------------------------------------------------------------------------------------------- generated problems
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
    assert result.counts.dropped["disagreement"] == 3
    decisions = by_id(result)
    # votes are counted until they decide: 2 agreeing of 3 settle it; a missing vote does not agree
    assert decisions["ok"].detail == "2/2 votes agree"
    assert decisions["votes-1of3"].detail == "1/3 votes agree" and decisions["votes-1of3"].answer == "7"
    assert decisions["votes-failing"].detail == "1/3 votes agree"
    assert decisions["no-votes"].detail == "0/2 votes agree"
    assert decisions["contaminated"].detail.startswith("gsm8k-test-5 ")
    assert decisions["known-exact"].detail == "same question as known question #0"
    assert decisions["reworded-parent"].detail.startswith("similar to known question #0 (jaccard 0.9")
    assert decisions["batch-copy"].detail == "same question as ok"
    row = next(e for e in result.examples if e.id == "ok")
    assert (row.question, row.program, row.answer, row.source) == (Q["ok"], "ans = 7", "7", "generated")
    assert (row.parent_id, row.round, row.split, row.teacher_model, row.prompt) == (
        "parent-of-ok", 2, "easy", "gpt-4o-mini", "harder.v1")
    assert next(e for e in result.examples if e.id == "maya-similar").split == "hard"


class CountingSandbox:
    """The real sandbox, remembering every program it was given."""

    def __init__(self, box: Sandbox) -> None:
        self.box, self.programs = box, []

    def run(self, programs):
        self.programs += programs
        return self.box.run(programs)


@pytest.mark.parametrize(
    ("ballots", "accepted", "detail"),
    [  # detail: agreeing votes / votes counted; votes after the deciding one are not run
        (["ans = 7", "ans = 7.0", "ans = 8"], True, "2/2"),
        (["ans = 7", "ans = 8", "ans = 7"], True, "2/3"),
        (["ans = 7", "ans = 7", "ans = 7"], True, "2/2"),
        (["def solution():\n    return 14 / 2", "ans = 7.0000001", "ans = 'seven'"], True, "2/2"),
        (["ans = 7", "ans = 8", "ans = 9"], False, "1/3"),
        (["ans = 8", "ans = 9", "ans = 7"], False, "0/2"),  # 2 of 3 is out of reach after two misses
        (["ans = 7", "ans = 1 / 0", "while True:\n    pass"], False, "1/3"),  # failing votes do not agree
        (["ans = 7", "", "x = 7"], False, "1/3"),  # an unparsed vote (no program) does not either
        ([], False, "0/2"),  # nor missing ones
    ],
)
def test_self_consistency_votes(sandbox, gsm8k_index, ballots, accepted, detail):
    candidate = variant("v", Q["ok"])
    counting = CountingSandbox(sandbox)
    result = curate_variants([candidate], {"v": ballots}, counting, cfg=CFG, contamination=gsm8k_index)
    decision = result.decisions[0]
    assert decision.accepted is accepted
    assert decision.reason == (None if accepted else "disagreement")
    assert decision.detail == f"{detail} votes agree"
    counted = int(detail.split("/")[1])
    assert counting.programs == ["ans = 7", *[p for p in ballots[:counted] if p]]  # the candidate's, then votes


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


# ------------------------------------------------------------------------------------------------------------ dedup
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


def test_curate_variants_uses_embedding_threshold(sandbox):
    index = ContaminationIndex([("t1", "abc abc abc")], n=8, embedder=FakeEmbedder())
    candidate = variant("v", "Cab bca acb?")
    result = curate_variants([candidate], {"v": ["ans = 7"] * 3}, sandbox,
                             cfg=CurationConfig(embedding_threshold=0.95), contamination=index)
    assert result.decisions[0].reason == "contaminated" and "embedding" in result.decisions[0].detail
    result = curate_variants([candidate], {"v": ["ans = 7"] * 3}, sandbox, cfg=CFG, contamination=index)
    assert result.decisions[0].accepted
