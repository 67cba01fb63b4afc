"""Curation: turn teacher candidates into verified training rows, recording one reason for every drop.

Every candidate ends as exactly one Decision (accepted, or dropped by the first filter that rejects it),
so the counts add up to the number of candidates. Programs run in the sandbox the caller passes in.
Generated problems are curated in two steps: screen_variants applies every free filter, decide_variants
buys (through the caller) only the votes that a survivor's decision needs.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from fdd_core.answers import answer_text, answers_match, as_number
from fdd_core.config import CurationConfig
from fdd_core.records import Candidate, Decision, Example
from fdd_core.results import CurationCounts
from fdd_core.similarity import ContaminationIndex, NearDuplicateIndex, normalize_text

__all__ = [
    "BUDGET_PARSE_ERROR", "REASONS", "Ballots", "ContaminationIndex", "CurationResult", "Screening",
    "curate_solutions", "curate_variants", "decide_variants", "program_key", "screen_variants",
]

ERROR_REASONS = ("syntax", "runtime", "timeout", "memory", "forbidden", "no_answer")  # = programs.ErrorKind values
# Every reason a candidate can be dropped for, in the order of curate_variants' filters; budget last: a request,
# or a vote that a decision needed, that was not sent because the run's teacher budget ran out.
REASONS = (
    "parse_error", "contaminated", "duplicate", "near_duplicate", *ERROR_REASONS, "wrong_answer", "disagreement",
    "budget",
)
# Candidate.parse_error of a reply the budget kept from being sent (teacher/stages.py writes it): dropped as budget.
BUDGET_PARSE_ERROR = "request_budget"
GENERATED_SOURCE = "generated"


class _ProgramResult(Protocol):
    answer: object
    error: object  # an ErrorKind (a str enum) or None
    message: str


class ProgramRunner(Protocol):
    """What curation needs of fdd_core.sandbox.Sandbox: results in input order."""

    def run(self, programs: Sequence[str]) -> Sequence[_ProgramResult]: ...


@dataclass
class CurationResult:
    decisions: list[Decision]  # one per candidate, in input order
    examples: list[Example]  # the accepted candidates as training rows, in input order

    @property
    def counts(self) -> CurationCounts:
        """Candidates, accepted, and dropped per reason (every reason, zeros included)."""
        dropped = Counter(d.reason for d in self.decisions if not d.accepted)
        return CurationCounts(candidates=len(self.decisions), accepted=sum(d.accepted for d in self.decisions),
                              dropped={reason: dropped.get(reason, 0) for reason in REASONS})


# ---------------------------------------------------------------------------------------------- seed solutions
def curate_solutions(
    candidates: Sequence[Candidate], sandbox: ProgramRunner, *, sources: Mapping[str, str] | None = None
) -> CurationResult:
    """Keep the teacher's programs for known problems that run and reproduce the gold answer.

    Filters, in order: parse_error (budget: the request was not sent), the program's error kind,
    wrong_answer (answers_match with the gold answer), duplicate (the same program, up to comments,
    docstrings and layout, already kept for the same problem: several reasoning paths per problem are
    wanted, copies of one are not).
    `sources` maps parent_id -> the parent's source, written on each row; without it rows say 'seed'.
    """
    _require(candidates, {"solve"})
    missing_gold = [c.id for c in candidates if c.gold is None]
    if missing_gold:
        raise ValueError(f"solve candidates need the parent's gold answer; none on {', '.join(missing_gold[:5])}")
    if sources is not None:
        unknown = sorted({c.parent_id for c in candidates} - set(sources))
        if unknown:
            raise ValueError(f"no source given for parent(s) {', '.join(unknown[:5])}")
    decisions: list[Decision | None] = [None] * len(candidates)
    answers = _execute(candidates, _drop_unparsed(candidates, decisions), sandbox, decisions)
    kept: dict[tuple[str, str], str] = {}  # (parent_id, program_key) -> id of the kept candidate
    for i, answer in answers.items():
        c, text = candidates[i], _answer_text(answer)
        key = (c.parent_id, program_key(c.program))
        if not answers_match(answer, c.gold):
            decisions[i] = _drop(c, "wrong_answer", answer=text, detail=f"gold answer is {c.gold}")
        elif key in kept:
            decisions[i] = _drop(c, "duplicate", answer=text, detail=f"same program as {kept[key]}")
        else:
            kept[key] = c.id
            decisions[i] = Decision(candidate_id=c.id, accepted=True, answer=text)
    return _result(candidates, decisions, lambda c: sources[c.parent_id] if sources is not None else "seed")


# ------------------------------------------------------------------------------------------- generated problems
# What decide_variants asks for: the votes to buy now, as (candidate, sample index) pairs; per pair the vote's
# program ('' when its reply had none, or failed), or None when it was not bought because the budget ran out.
Ballots = Callable[[Sequence[tuple[Candidate, int]]], Sequence[str | None]]


@dataclass
class Screening:
    """What the free filters of curate_variants leave: every drop so far, and the survivors' answers."""

    candidates: list[Candidate]
    decisions: list[Decision | None]  # one per candidate: a free filter's drop, or None for a survivor
    answers: dict[int, object]  # survivor's index -> its program's answer (a finite number), in input order

    @property
    def survivors(self) -> list[Candidate]:
        """The candidates that go to the vote, in input order."""
        return [self.candidates[i] for i in self.answers]


def screen_variants(
    candidates: Sequence[Candidate],
    sandbox: ProgramRunner,
    *,
    cfg: CurationConfig,
    known_questions: Sequence[str] = (),
    contamination: ContaminationIndex,
) -> Screening:
    """curate_variants' free filters (steps 1-4 there, nothing bought): each candidate either dropped by the
    first that rejects it, or a survivor with its program's answer."""
    _require(candidates, {"harder", "similar"})
    if contamination.n != cfg.decontamination_ngram:
        raise ValueError(
            f"contamination index uses {contamination.n}-grams but curation.decontamination_ngram is "
            f"{cfg.decontamination_ngram}: build it with n=cfg.decontamination_ngram"
        )
    decisions: list[Decision | None] = [None] * len(candidates)
    live = _drop_unparsed(candidates, decisions)

    matches = contamination.check_many(
        [candidates[i].question for i in live], embedding_threshold=cfg.embedding_threshold
    )
    for i, match in zip(live, matches):
        if match is not None:
            detail = f"{match.test_id} ({match.method} score {match.score:.2f})"
            decisions[i] = _drop(candidates[i], "contaminated", detail=detail)
    live = _pending(decisions, live)

    dedup = _Dedup(cfg.near_duplicate_threshold, [*known_questions, *(candidates[i].question for i in live)])
    for k, question in enumerate(known_questions):
        dedup.add(f"known question #{k}", question)
    for i in live:
        found = dedup.find(candidates[i].question)
        if found:
            decisions[i] = _drop(candidates[i], found[0], detail=found[1])
    live = _pending(decisions, live)

    answers = _execute(candidates, live, sandbox, decisions)
    for i in list(answers):
        if as_number(answers[i]) is None:  # 'nan', '[1, 2]', 'forty': no usable answer for a math problem
            text = _answer_text(answers.pop(i))
            decisions[i] = _drop(candidates[i], "no_answer", answer=text, detail=f"answer is not a number: {text[:60]}")
    return Screening(candidates=list(candidates), decisions=decisions, answers=answers)


def decide_variants(
    screening: Screening, ballots: Ballots, sandbox: ProgramRunner, *, cfg: CurationConfig
) -> CurationResult:
    """Decide the survivors of screen_variants from their votes, buying only the votes a decision needs.

    Vote samples 0..cfg.votes-1 of a question are asked for in order, a round at a time (one `ballots` call
    and one sandbox batch per round), and a candidate stops being voted on once it is decided:
    - accepted when cfg.min_agree votes agree with its answer, dropped as disagreement when so many have
      not that cfg.min_agree is out of reach; either is what counting all cfg.votes votes would decide;
    - dropped as duplicate / near_duplicate, before any vote of its own, once a candidate earlier in input
      order that it copies is accepted (while such a candidate is undecided it waits; while none is accepted
      it is voted on). So every candidate is accepted exactly when the all-votes rule would accept it;
      a copy whose own votes would also fail now says duplicate where it said disagreement;
    - dropped as budget when a vote it needs is not bought (the budget ran out): it cannot be decided.
    Votes that fail to run, or have no program, do not agree.
    """
    candidates, answers = screening.candidates, screening.answers
    decisions = list(screening.decisions)
    tallies = {i: _Tally() for i in answers}
    copies = _copies(candidates, answers, cfg)
    while True:
        verdicts = _walk(candidates, answers, tallies, copies, cfg)
        asks = [i for i, (verdict, _) in verdicts.items() if verdict == _VOTING]
        if not asks:
            break
        programs = list(ballots([(candidates[i], tallies[i].cast) for i in asks]))
        if len(programs) != len(asks):
            raise ValueError(f"ballots gave {len(programs)} votes for {len(asks)} requests")
        runnable = [(i, program) for i, program in zip(asks, programs) if program]
        results = sandbox.run([program for _, program in runnable]) if runnable else []
        agrees = {i: result.error is None and answers_match(result.answer, answers[i])
                  for (i, _), result in zip(runnable, results)}
        for i, program in zip(asks, programs):
            tallies[i].count(program is not None, agrees.get(i, False))
    for i, (verdict, found) in verdicts.items():
        c, text, tally = candidates[i], _answer_text(answers[i]), tallies[i]
        votes = f"{tally.agree}/{tally.cast} votes agree"
        if verdict == _DUPLICATE:
            decisions[i] = _drop(c, found[0], answer=text, detail=found[1])
        elif verdict == _ACCEPTED:
            decisions[i] = Decision(candidate_id=c.id, accepted=True, answer=text, detail=votes)
        elif verdict == "budget":
            decisions[i] = _drop(c, "budget", answer=text, detail=f"the budget ran out before its votes: {votes}")
        else:
            decisions[i] = _drop(c, verdict, answer=text, detail=votes)
    return _result(candidates, decisions, lambda c: GENERATED_SOURCE)


def curate_variants(
    candidates: Sequence[Candidate],
    votes: Mapping[str, Sequence[str]],
    sandbox: ProgramRunner,
    *,
    cfg: CurationConfig,
    known_questions: Sequence[str] = (),
    contamination: ContaminationIndex,
) -> CurationResult:
    """Keep new (harder/similar) problems whose program runs, is confirmed by votes, and is new and clean.

    screen_variants, then decide_variants with votes already bought: votes[candidate.id] holds the
    question's cfg.votes vote programs (independent teacher solutions of the new question) in sample order;
    a missing one counts as a vote that does not agree, and only those a decision needs are run.
    Filters, in order, each candidate dropped by the first that rejects it:
    1. parse_error: no question or program in the reply (budget: the request was not sent).
    2. contaminated: copies a benchmark test item (see ContaminationIndex). Before dedup, so that leakage is
       what gets reported when a question is both; cheap and independent of the other candidates.
    3. duplicate / near_duplicate of a known question (e.g. the training pool): cheap, and spares the
       sandbox runs of a question that cannot be kept anyway.
    4. the proposed program's error kind (syntax, runtime, ...), or no_answer when its answer is not a
       finite number: before votes, which cost cfg.votes teacher requests and runs.
    5. duplicate / near_duplicate of a candidate accepted earlier in this batch (input order): judged only
       against accepted ones, so a copy that fails verification never pushes out a valid one; and before
       its own votes, which it then does not need.
    6. disagreement: fewer than cfg.min_agree of the question's votes give the proposed answer; votes that
       fail to run do not agree (budget: votes it needed were not bought).
    Exact duplicates compare normalised text (case, whitespace, punctuation ignored); near duplicates the
    word-bag Jaccard similarity (>= cfg.near_duplicate_threshold) of the whole question, so a harder
    variant that adds a step to its parent is not merged with it.
    """
    screening = screen_variants(candidates, sandbox, cfg=cfg, known_questions=known_questions,
                                contamination=contamination)

    def ballots(asks: Sequence[tuple[Candidate, int]]) -> list[str]:
        return [_nth(votes.get(c.id, ()), sample) for c, sample in asks]

    return decide_variants(screening, ballots, sandbox, cfg=cfg)


def _nth(programs: Sequence[str], sample: int) -> str:
    return programs[sample] if sample < len(programs) else ""


_ACCEPTED, _DUPLICATE, _VOTING, _WAITING = "accepted", "duplicate", "voting", "waiting"


@dataclass
class _Tally:
    """One candidate's votes so far."""

    agree: int = 0
    cast: int = 0
    unbought: bool = False  # a vote it asked for was not bought

    def count(self, bought: bool, agrees: bool) -> None:
        if bought:
            self.cast += 1
            self.agree += int(agrees)
        else:
            self.unbought = True

    def outcome(self, cfg: CurationConfig) -> str | None:
        """accepted, disagreement, budget, or None while more votes can change the outcome."""
        if self.agree >= cfg.min_agree:
            return _ACCEPTED
        if self.agree + max(cfg.votes - self.cast, 0) < cfg.min_agree:
            return "disagreement"
        return "budget" if self.unbought else None


def _copies(candidates: Sequence[Candidate], answers: Mapping[int, object], cfg: CurationConfig) -> set[int]:
    """The survivors that copy (duplicate or near-duplicate) some earlier survivor: the only ones that can wait."""
    seen = _Dedup(cfg.near_duplicate_threshold, [candidates[i].question for i in answers])
    copies = set()
    for i in answers:
        if seen.find(candidates[i].question):
            copies.add(i)
        seen.add(candidates[i].id, candidates[i].question)
    return copies


def _walk(
    candidates: Sequence[Candidate], answers: Mapping[int, object], tallies: Mapping[int, _Tally],
    copies: Collection[int], cfg: CurationConfig,
) -> dict[int, tuple[str, tuple[str, str] | None]]:
    """Each survivor's verdict on the votes so far, judged in input order as the all-votes rule judges them:
    duplicate (of an accepted earlier one, with its (reason, detail)), waiting (it copies an undecided earlier
    one), voting (it needs its next vote), or its vote outcome (accepted, disagreement, budget).
    Known questions are left out: a survivor copies none of them (screen_variants dropped those); and only
    `copies` (see _copies) are looked up, the others can match no earlier survivor."""
    vocabulary = [candidates[i].question for i in answers] if copies else []
    accepted = _Dedup(cfg.near_duplicate_threshold, vocabulary)
    undecided = _Dedup(cfg.near_duplicate_threshold, vocabulary)
    last_copy = max(copies, default=-1)
    verdicts: dict[int, tuple[str, tuple[str, str] | None]] = {}
    for i in answers:
        c = candidates[i]
        if i in copies and (found := accepted.find(c.question)):
            verdicts[i] = (_DUPLICATE, found)
            continue
        waiting = i in copies and undecided.find(c.question) is not None
        verdict = _WAITING if waiting else tallies[i].outcome(cfg) or _VOTING
        verdicts[i] = (verdict, None)
        if i >= last_copy:
            continue  # no copy comes later to look this one up
        if verdict == _ACCEPTED:
            accepted.add(c.id, c.question)
        elif verdict in (_WAITING, _VOTING):
            undecided.add(c.id, c.question)
    return verdicts


class _Dedup:
    """Exact (normalised text) and near (word-bag Jaccard) duplicates among the questions added so far."""

    def __init__(self, threshold: float, vocabulary: Sequence[str]) -> None:
        self._exact: dict[str, str] = {}
        self._near = NearDuplicateIndex(threshold, vocabulary)

    def add(self, label: str, question: str) -> None:
        self._exact.setdefault(normalize_text(question), label)
        self._near.add(label, question)

    def find(self, question: str) -> tuple[str, str] | None:
        """(reason, detail) when the question duplicates one added, else None."""
        label = self._exact.get(normalize_text(question))
        if label is not None:
            return "duplicate", f"same question as {label}"
        match = self._near.find(question)
        if match is not None:
            return "near_duplicate", f"similar to {match.key} (jaccard {match.score:.2f})"
        return None


# ------------------------------------------------------------------------------------------------- shared steps
def program_key(program: str) -> str:
    """A program up to comments, docstrings and layout: equal keys mean the same reasoning path."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return " ".join(program.split())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and body and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)  # without line numbers: layout does not count


def _require(candidates: Sequence[Candidate], kinds: Collection[str]) -> None:
    wrong = [c.id for c in candidates if c.kind not in kinds]
    if wrong:
        raise ValueError(f"expected {'/'.join(sorted(kinds))} candidates; other kinds: {', '.join(wrong[:5])}")
    ids = Counter(c.id for c in candidates)
    repeated = [i for i, n in ids.items() if n > 1]
    if repeated:
        raise ValueError(f"candidate ids must be unique; repeated: {', '.join(repeated[:5])}")


def _drop(c: Candidate, reason: str, *, answer: str | None = None, detail: str = "") -> Decision:
    return Decision(candidate_id=c.id, accepted=False, reason=reason, answer=answer, detail=" ".join(detail.split()))


def _drop_unparsed(candidates: Sequence[Candidate], decisions: list[Decision | None]) -> list[int]:
    """Drop requests the budget kept back, replies the parser gave up on (or, for new problems, without a
    question); the rest's indices."""
    for i, c in enumerate(candidates):
        if c.parse_error == BUDGET_PARSE_ERROR:
            decisions[i] = _drop(c, "budget", detail="request not sent: the teacher budget ran out")
        elif c.parse_error is not None:
            decisions[i] = _drop(c, "parse_error", detail=c.parse_error)
        elif c.kind != "solve" and not c.question.strip():
            decisions[i] = _drop(c, "parse_error", detail="empty question")
    return _pending(decisions, range(len(candidates)))


def _pending(decisions: Sequence[Decision | None], indices: Sequence[int]) -> list[int]:
    return [i for i in indices if decisions[i] is None]


def _execute(
    candidates: Sequence[Candidate], live: Sequence[int], sandbox: ProgramRunner, decisions: list[Decision | None]
) -> dict[int, object]:
    """Run the live candidates' programs in one batch; drop failures by error kind; index -> answer."""
    results = sandbox.run([candidates[i].program for i in live]) if live else []
    answers: dict[int, object] = {}
    for i, result in zip(live, results):
        if result.error is None:
            answers[i] = result.answer
        else:
            kind = getattr(result.error, "value", result.error)
            decisions[i] = _drop(candidates[i], str(kind), detail=result.message[:300])
    return answers


def _answer_text(value: object) -> str:
    """72.0 -> '72', 2.5 -> '2.5', text stripped: how the answer is written on the row."""
    try:
        return answer_text(value)
    except TypeError:  # e.g. a bool
        return str(value)


def _result(candidates: Sequence[Candidate], decisions: list[Decision | None], source) -> CurationResult:
    undecided = [candidates[i].id for i, d in enumerate(decisions) if d is None]
    assert not undecided, f"curation left candidates without a decision: {undecided[:5]}"
    examples = [
        Example(
            id=c.id, question=c.question, program=c.program, answer=d.answer or "", source=source(c),
            parent_id=c.parent_id, round=c.round, split=c.split, teacher_model=c.teacher_model, prompt=c.prompt,
        )
        for c, d in zip(candidates, decisions)
        if d is not None and d.accepted
    ]
    return CurationResult(decisions=list(decisions), examples=examples)  # type: ignore[arg-type]
