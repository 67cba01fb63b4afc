"""What a run can spend on the teacher, worked out from its config before any request is sent (`fdd run --dry-run`).

forecast(cfg) walks the teacher stages of a run in the order the flow runs them (round 0's generate_solutions,
then generate_variants of rounds 0..run.rounds-1, each as its variant requests and their votes) and gives, per
part, the most requests, prompt tokens and completion tokens the config can buy, and their price from litellm's
price map (None, shown "unknown", when the model is not priced; 0.0 for the offline teacher). Beside each
bound stands an "expected" figure: the same request counts at typical lengths. It starts nothing and sends
nothing; the only data it reads are the synthetic seed problems, which it draws as the run would.

The upper bound (every step holds whatever the teacher and the student do):
- requests: generate_solutions asks data.n_seed x teacher.k_solutions. The pool of round 0 holds at most
  data.n_seed problems; each pool problem asks at most max(harder_per_easy, similar_per_hard) variants, so
  candidates <= pool x that; each candidate gets at most curation.votes solve requests (only those that pass the
  free checks are voted on); the next pool <= pool + candidates (accepted variants join the set).
- completion tokens: teacher.max_tokens per request.
- prompt tokens: the prompt template (system, few-shot turns, instruction) plus the question. A seed question
  is at most the longest seed (measured on the synthetic seeds; for GSM8K train, the longest of its 7,473
  questions, a stated constant, so nothing is loaded). A generated question was written inside one reply, so it
  is at most teacher.max_tokens tokens.
Tokens are counted with litellm.token_counter where litellm's tokenizer for the model ships with litellm
(tiktoken), else as characters / 4 (litellm would download a Hugging Face tokenizer): either way an estimate of
the provider's own count. The bound ignores the response store: a reply bought before is free, so a re-run or a
run sharing the store spends less.

Expected (not a bound): the same request counts (how many problems the student finds easy, and how many
candidates pass, is unknown before the run), each reply twice as long as the longest few-shot reply of its
prompt (the replies imitate them; twice leaves room for longer problems), seed questions of the seeds' mean
length and generated questions of twice that.

The budget (budget.max_requests, budget.max_usd) holds for the whole run: the forecast says whether the most
the run can buy reaches it, and in which part of which round at the earliest (the actual spend is below the
bound, so the cap is reached there or later, or never); for max_usd also where the expected spend reaches it.
Teacher spending stops in that part; the run trains and evaluates that round, then ends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fdd_core.config import FDDConfig
from fdd_core.teacher.costs import FREE_PROVIDERS, token_cost
from fdd_core.teacher.prompts import RequestKind, load_prompt

# GSM8K train (openai/gsm8k main, 7,473 questions), measured once with litellm.token_counter (tiktoken
# cl100k_base and o200k_base, the larger of the two) and len(): a GSM8K-train run's seeds are a subset, so its
# longest is a bound on theirs. Stated rather than read, so that a dry run needs neither the file nor the Hub.
GSM8K_TRAIN_QUESTIONS = 7473
GSM8K_TRAIN_LONGEST_TOKENS = 209
GSM8K_TRAIN_MEAN_TOKENS = 57.3
GSM8K_TRAIN_LONGEST_CHARS = 985
GSM8K_TRAIN_MEAN_CHARS = 234.5
CHARS_PER_TOKEN = 4  # the estimate where litellm's tokenizer for the model is not local
EXPECTED_REPLY_FACTOR = 2  # an expected reply: this times the longest few-shot reply of its prompt
EXPECTED_GENERATED_FACTOR = 2  # an expected generated question: this times the seeds' mean question

Part = Literal["solutions", "variants", "votes"]
Stage = Literal["generate_solutions", "generate_variants"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ForecastRow(_Model):
    """One part of one teacher stage of one round: its upper bound and its expected tokens and cost."""

    stage: Stage
    round: int = Field(description="The flow's round (rounds/rN): 0 for generate_solutions.")
    part: Part = Field(description="solutions: solve requests of seeds; variants: harder/similar; votes: solve "
                                   "requests of generated questions.")
    prompts: str = Field(description="The prompt kind(s) the part asks: solve, or harder|similar.")
    max_problems: int = Field(description="Most problems asked about: seeds, pool problems, or candidates.")
    max_requests: int
    max_prompt_tokens: int
    max_completion_tokens: int
    max_cost_usd: float | None = Field(description="Price of the bound; None when the model is not priced.")
    expected_prompt_tokens: int = Field(description="The same requests at typical prompt lengths.")
    expected_completion_tokens: int = Field(description="The same requests at typical reply lengths.")
    expected_cost_usd: float | None

    @property
    def where(self) -> str:
        return f"round {self.round} {self.stage} ({self.part})"


class ForecastTotal(_Model):
    max_requests: int = 0
    max_prompt_tokens: int = 0
    max_completion_tokens: int = 0
    max_cost_usd: float | None = 0.0
    expected_prompt_tokens: int = 0
    expected_completion_tokens: int = 0
    expected_cost_usd: float | None = 0.0


class BudgetCheck(_Model):
    """One budget cap against the forecast: whether the run's most spend reaches it, and where first."""

    limit: Literal["max_requests", "max_usd"]
    value: float
    enforceable: bool = Field(True, description="False: max_usd with an unpriced model (the run refuses it).")
    reached: bool = Field(False, description="The most the run can buy reaches the cap: it may stop the run.")
    round: int | None = Field(None, description="Where the bound reaches it: the earliest the cap can stop spending.")
    stage: Stage | None = None
    part: Part | None = None
    expected_reached: bool | None = Field(None, description="max_usd: whether the expected spend reaches it.")
    expected_round: int | None = None
    expected_stage: Stage | None = None
    expected_part: Part | None = None


class QuestionLengths(_Model):
    source: str = Field(description="Where the seed lengths come from: the synthetic seeds, or a stated constant.")
    count: int
    longest_tokens: int
    mean_tokens: float


class Forecast(_Model):
    """The teacher spend of a run, before it starts: rows in run order, their total, the budget caps."""

    model: str
    free: bool = Field(description="The offline teacher: every request costs a known 0.0.")
    priced: bool = Field(description="litellm's price map knows the model (or it is free).")
    usd_per_million_prompt: float | None
    usd_per_million_completion: float | None
    tokenizer: str = Field(description="How tokens were counted.")
    seed_questions: QuestionLengths
    max_generated_question_tokens: int
    expected_generated_question_tokens: int
    max_reply_tokens: int
    expected_reply_tokens: dict[str, int]
    prompt_template_tokens: dict[str, int] = Field(description="Each prompt with an empty question.")
    rows: list[ForecastRow]
    total: ForecastTotal
    budget: list[BudgetCheck]
    assumptions: list[str]


# ----------------------------------------------------------------------------------------------- tokens
class _Tokens:
    """litellm.token_counter where its tokenizer for the model ships with litellm, else characters / 4."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.local = _local_tokenizer(model)
        if self.local:
            try:  # tiktoken's file is bundled with litellm; any failure falls back to the estimate
                self._count(text="probe")
            except Exception:
                self.local = False
        self.name = (f"litellm.token_counter ({_encoding_name(model)})" if self.local
                     else f"characters / {CHARS_PER_TOKEN} (litellm's tokenizer for this model is not local)")

    def _count(self, **kwargs) -> int:
        import litellm

        return int(litellm.token_counter(model=self.model, **kwargs))

    def text(self, text: str) -> int:
        if self.local:
            return self._count(text=text)
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def messages(self, messages: list[dict[str, str]]) -> int:
        if self.local:
            return self._count(messages=messages)
        # about what tiktoken counting adds: 3 per message, 3 to prime the reply
        return sum(math.ceil(len(m["content"]) / CHARS_PER_TOKEN) + 3 for m in messages) + 3


def _local_tokenizer(model: str) -> bool:
    """Whether litellm counts this model's tokens with its bundled tiktoken (not a Hugging Face download)."""
    import litellm.utils

    kind = getattr(litellm.utils, "huggingface_tokenizer_kind", None)
    if kind is None:  # another litellm: we cannot tell whether it would download, so do not ask it
        return False
    try:
        return kind(model) is None
    except Exception:
        return False


def _encoding_name(model: str) -> str:
    try:
        from litellm.litellm_core_utils.token_counter import openai_tokenizer_encoding_name

        return f"tiktoken {openai_tokenizer_encoding_name(model)}"
    except Exception:
        return "tiktoken"


def _seed_lengths(cfg: FDDConfig, tokens: _Tokens, seed_questions: Sequence[str] | None) -> QuestionLengths:
    if seed_questions is None and cfg.data.seed_set == "synthetic":
        from fdd_core.run_data import synthetic_splits

        seed_questions = [p.question for p in synthetic_splits(cfg)[0]]
        source = f"the run's {len(seed_questions)} synthetic seeds"
    elif seed_questions is None and cfg.data.seed_set != "gsm8k-train":  # the user's file or Hub dataset
        from fdd_core.run_data import seed_problems

        seed_questions = [p.question for p in seed_problems(cfg)]
        source = f"the run's {len(seed_questions)} seeds from {cfg.data.seed_set}"
    elif seed_questions is None:  # gsm8k-train: the stated constants (the seeds are its first n_seed)
        count = min(cfg.data.n_seed, GSM8K_TRAIN_QUESTIONS)
        if tokens.local:
            longest, mean = GSM8K_TRAIN_LONGEST_TOKENS, GSM8K_TRAIN_MEAN_TOKENS
        else:
            longest = math.ceil(GSM8K_TRAIN_LONGEST_CHARS / CHARS_PER_TOKEN)
            mean = GSM8K_TRAIN_MEAN_CHARS / CHARS_PER_TOKEN
        return QuestionLengths(source=f"stated: GSM8K train's longest and mean question over all "
                                      f"{GSM8K_TRAIN_QUESTIONS:,} (not loaded)",
                               count=count, longest_tokens=longest, mean_tokens=round(mean, 1))
    else:
        source = f"{len(seed_questions)} given seed questions"
    lengths = [tokens.text(q.strip()) for q in seed_questions] or [0]
    return QuestionLengths(source=source, count=len(seed_questions), longest_tokens=max(lengths),
                           mean_tokens=round(sum(lengths) / len(lengths), 1))


# ---------------------------------------------------------------------------------------------- forecast
class _Group:
    """Requests of one per-request size: count, prompt and completion tokens each (bound and expected)."""

    def __init__(self, count: int, prompt: int, completion: int, exp_prompt: int, exp_completion: int) -> None:
        self.count, self.prompt, self.completion = count, prompt, completion
        self.exp_prompt, self.exp_completion = exp_prompt, exp_completion


def _cost(model: str, groups: Sequence[_Group], expected: bool) -> float | None:
    """Priced per request (some price maps depend on a request's prompt length), times the count."""
    total = 0.0
    for g in groups:
        if g.count == 0:
            continue
        one = token_cost(model, g.exp_prompt if expected else g.prompt, g.exp_completion if expected else g.completion)
        if one is None:
            return None
        total += one * g.count
    return total


def _row(model: str, stage: Stage, round_index: int, part: Part, prompts: str, problems: int,
         groups: Sequence[_Group]) -> ForecastRow:
    return ForecastRow(
        stage=stage, round=round_index, part=part, prompts=prompts, max_problems=problems,
        max_requests=sum(g.count for g in groups),
        max_prompt_tokens=sum(g.count * g.prompt for g in groups),
        max_completion_tokens=sum(g.count * g.completion for g in groups),
        max_cost_usd=_cost(model, groups, expected=False),
        expected_prompt_tokens=sum(g.count * g.exp_prompt for g in groups),
        expected_completion_tokens=sum(g.count * g.exp_completion for g in groups),
        expected_cost_usd=_cost(model, groups, expected=True),
    )


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def forecast(cfg: FDDConfig, seed_questions: Sequence[str] | None = None) -> Forecast:
    """The most (and the expected) teacher requests, tokens and cost of a run of `cfg`, per stage and round.

    seed_questions: the seed problems' questions, when the caller has them; by default the synthetic seeds are
    drawn as the run draws them and GSM8K train's lengths are stated constants (see the module docstring)."""
    t, fb = cfg.teacher, cfg.feedback
    model = t.model
    tokens = _Tokens(model)
    seeds = _seed_lengths(cfg, tokens, seed_questions)

    kinds: tuple[RequestKind, ...] = ("solve", "harder", "similar")
    prompts = {kind: load_prompt(kind) for kind in kinds}
    template = {kind: tokens.messages(prompts[kind].messages("")) for kind in kinds}
    reply = {kind: min(t.max_tokens, EXPECTED_REPLY_FACTOR * max(tokens.text(r) for _, r in prompts[kind].examples))
             for kind in kinds}
    q_seed_max, q_seed_exp = seeds.longest_tokens, math.ceil(seeds.mean_tokens)
    q_gen_max = t.max_tokens  # a generated question is part of one reply
    q_gen_exp = min(t.max_tokens, math.ceil(EXPECTED_GENERATED_FACTOR * seeds.mean_tokens))

    # what a pool problem asks: harder_per_easy harder requests if easy, similar_per_hard similar ones if hard
    variant_kinds = [k for k, n in (("harder", fb.harder_per_easy), ("similar", fb.similar_per_hard)) if n > 0]
    per_problem = max(fb.harder_per_easy, fb.similar_per_hard)
    variant_template = max((template[k] for k in variant_kinds), default=0)
    variant_reply = max((reply[k] for k in variant_kinds), default=0)

    rows: list[ForecastRow] = []
    n_seed = cfg.data.n_seed
    rows.append(_row(model, "generate_solutions", 0, "solutions", "solve", n_seed, [
        _Group(n_seed * t.k_solutions, template["solve"] + q_seed_max, t.max_tokens,
               template["solve"] + q_seed_exp, reply["solve"])]))
    pool_seeds, pool_generated = n_seed, 0  # the pool of round 0 <= the seed problems
    for r in range(cfg.run.rounds):
        from_seeds, from_generated = pool_seeds * per_problem, pool_generated * per_problem
        candidates = from_seeds + from_generated
        rows.append(_row(model, "generate_variants", r, "variants", "|".join(variant_kinds) or "-",
                         pool_seeds + pool_generated, [
            _Group(from_seeds, variant_template + q_seed_max, t.max_tokens,
                   variant_template + q_seed_exp, variant_reply),
            _Group(from_generated, variant_template + q_gen_max, t.max_tokens,
                   variant_template + q_gen_exp, variant_reply)]))
        rows.append(_row(model, "generate_variants", r, "votes", "solve", candidates, [
            _Group(candidates * cfg.curation.votes, template["solve"] + q_gen_max, t.max_tokens,
                   template["solve"] + q_gen_exp, reply["solve"])]))
        pool_generated += candidates  # the next pool <= this pool + its candidates

    total = ForecastTotal()
    for row in rows:
        total = ForecastTotal(
            max_requests=total.max_requests + row.max_requests,
            max_prompt_tokens=total.max_prompt_tokens + row.max_prompt_tokens,
            max_completion_tokens=total.max_completion_tokens + row.max_completion_tokens,
            max_cost_usd=_add(total.max_cost_usd, row.max_cost_usd),
            expected_prompt_tokens=total.expected_prompt_tokens + row.expected_prompt_tokens,
            expected_completion_tokens=total.expected_completion_tokens + row.expected_completion_tokens,
            expected_cost_usd=_add(total.expected_cost_usd, row.expected_cost_usd),
        )

    free = model.startswith(FREE_PROVIDERS)
    per_m_prompt, per_m_completion = token_cost(model, 1_000_000, 0), token_cost(model, 0, 1_000_000)
    assumptions = [
        f"upper bound: every pool problem asks max(harder_per_easy, similar_per_hard) = {per_problem} variants, "
        f"every candidate passes the free checks and gets curation.votes = {cfg.curation.votes} votes and joins "
        f"the next pool, every reply is teacher.max_tokens = {t.max_tokens} tokens, a generated question is as "
        f"long as a whole reply, seed questions are as long as the longest seed ({q_seed_max} tokens)",
        f"expected (not a bound): the same request counts; replies of {EXPECTED_REPLY_FACTOR}x the longest "
        f"few-shot reply of their prompt ({', '.join(f'{k} {reply[k]}' for k in kinds)} tokens), seed questions "
        f"of the seeds' mean length ({q_seed_exp} tokens), generated questions of {EXPECTED_GENERATED_FACTOR}x "
        f"that ({q_gen_exp} tokens)",
        "both count every request as paid: replies already in the response store (teacher.cache_path) are free",
    ]
    return Forecast(
        model=model, free=free, priced=per_m_prompt is not None,
        usd_per_million_prompt=per_m_prompt, usd_per_million_completion=per_m_completion,
        tokenizer=tokens.name, seed_questions=seeds, max_generated_question_tokens=q_gen_max,
        expected_generated_question_tokens=q_gen_exp, max_reply_tokens=t.max_tokens,
        expected_reply_tokens=reply, prompt_template_tokens=template, rows=rows, total=total,
        budget=_budget(cfg, rows, per_m_prompt is not None), assumptions=assumptions,
    )


def _budget(cfg: FDDConfig, rows: Sequence[ForecastRow], priced: bool) -> list[BudgetCheck]:
    """Where each cap is first reached, as the client's ledger counts (see costs.BudgetLedger).

    max_requests: a request is skipped once max_requests replies are paid, so the cap stops the part whose
    cumulative requests pass it. max_usd: a request is sent while the spend is under the cap, so the cap stops
    the first part with requests whose cumulative cost reaches it (a cap of 0 stops the first one, even free)."""
    b = cfg.budget
    checks = []
    if b.max_requests is not None:
        check = BudgetCheck(limit="max_requests", value=b.max_requests)
        done = 0
        for row in rows:
            done += row.max_requests
            if done > b.max_requests:
                check = check.model_copy(update=dict(reached=True, round=row.round, stage=row.stage, part=row.part))
                break
        checks.append(check)
    if b.max_usd is not None:
        if not priced:
            checks.append(BudgetCheck(limit="max_usd", value=b.max_usd, enforceable=False))
        else:
            check = BudgetCheck(limit="max_usd", value=b.max_usd, expected_reached=False)
            spent = {"max": 0.0, "expected": 0.0}
            for row in rows:
                spent["max"] += row.max_cost_usd or 0.0
                spent["expected"] += row.expected_cost_usd or 0.0
                if row.max_requests == 0:
                    continue
                if not check.reached and spent["max"] >= b.max_usd:
                    check = check.model_copy(update=dict(reached=True, round=row.round, stage=row.stage,
                                                         part=row.part))
                if not check.expected_reached and spent["expected"] >= b.max_usd:
                    check = check.model_copy(update=dict(expected_reached=True, expected_round=row.round,
                                                         expected_stage=row.stage, expected_part=row.part))
            checks.append(check)
    return checks
