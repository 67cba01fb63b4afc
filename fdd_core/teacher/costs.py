"""What teacher tokens cost: litellm's price map by model name; unknown is None, never $0.

The offline teacher (model "fdd-offline/...") is free: a known 0.0, not an unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

import litellm  # noqa: E402

from fdd_core.config import BudgetConfig  # noqa: E402
from fdd_core.results import format_usd  # noqa: E402

# Otherwise litellm prints banners to stdout: a provider list for each unmapped model priced, a
# "Give Feedback" notice for each failed call (every 429 the client retries).
litellm.suppress_debug_info = True

# Providers whose tokens cost nothing by construction (our own offline teacher).
FREE_PROVIDERS = ("fdd-offline/",)


def token_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for these tokens of `model`, or None when the price map does not know the model."""
    if model.startswith(FREE_PROVIDERS):
        return 0.0
    try:
        prompt_usd, completion_usd = litellm.cost_per_token(
            model=model, prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens)
        )
    except Exception:  # ModelNotMappedError, BadRequestError (no provider), ...: all mean "unknown"
        return None
    return float(prompt_usd) + float(completion_usd)


def is_priced(model: str) -> bool:
    """Whether token_cost can price `model` (checked before a run that has a dollar budget)."""
    return token_cost(model, 1000, 1000) is not None


@dataclass
class TeacherStats:
    requests: int = 0  # paid calls that succeeded (what budget.max_requests counts)
    attempts: int = 0  # calls sent to the provider, retries included
    retries: int = 0  # attempts after the first of a request
    failures: int = 0  # requests that ended in an error (budget skips not counted)
    skipped: int = 0  # requests not sent because the budget was reached
    cached: int = 0  # requests served without paying (store hits bought by another run, duplicates in a batch)
    bought_earlier: int = 0  # store hits this run bought in an earlier invocation (on its budget and in tokens, cost)
    prompt_tokens: int = 0  # of the replies this run paid for (requests + bought_earlier)
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None once any paid reply's cost is unknown
    saved_usd: float | None = 0.0  # stored cost of the cached replies; None if one is unknown
    budget_exhausted: bool = False

    def summary(self) -> str:
        return (
            f"{self.requests} paid requests ({self.retries} retries, {self.failures} failed, "
            f"{self.skipped} skipped by budget), {self.cached} cached, "
            f"{self.prompt_tokens}+{self.completion_tokens} tokens, cost {format_usd(self.cost_usd)}, "
            f"saved {format_usd(self.saved_usd)}" + (", budget exhausted" if self.budget_exhausted else "")
        )


class BudgetLedger:
    """A run's spend against its budget, and whether one more request may go out.

    max_requests is exact: requests in flight hold a reservation, so the cap is never passed.
    max_usd cannot be known before a reply arrives: requests in flight are projected at the
    average cost per reply so far, and a request is sent while the known spend is under the cap,
    so the cap is passed by at most about one reply's cost.
    """

    def __init__(self, budget: BudgetConfig, spent_requests: int = 0, spent_usd: float = 0.0) -> None:
        self.budget = budget
        self.paid = spent_requests
        self.spent = spent_usd
        self.unknown = False  # a paid reply of unknown cost: max_usd can no longer be checked
        self.in_flight = 0

    def exhausted(self) -> bool:
        """No further request may be sent."""
        b = self.budget
        if b.max_requests is not None and self.paid >= b.max_requests:
            return True
        return b.max_usd is not None and (self.unknown or self.spent >= b.max_usd)

    def must_wait(self) -> bool:
        """The requests in flight, if they succeed, would use up what is left: wait for them rather
        than send (they may fail and give their share back)."""
        if self.in_flight == 0:
            return False
        b = self.budget
        if b.max_requests is not None and self.paid + self.in_flight >= b.max_requests:
            return True
        if b.max_usd is not None and self.paid:
            return self.spent + (self.in_flight + 1) * (self.spent / self.paid) > b.max_usd
        return False

    def record(self, cost_usd: float | None) -> None:
        """One paid reply."""
        self.paid += 1
        if cost_usd is None:
            self.unknown = True
        else:
            self.spent += cost_usd
