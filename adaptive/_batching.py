"""Batch sizing: how many samples to ask for next, given the plan, the state and the budget.

The size is the fewest samples that could let the stop rules stop (were they all to agree
with the leader), or the cap while no batch up to it could: larger while stopping is far off.
The cap is the smallest of the controller's `max_batch`, what is left of `max_samples`, the
plan's `max_batch` and the budget's samples; the result then shrinks to the largest batch
whose worst case the ledger can still hold.

`assess`, `hypothetical` and `next_batch` are pure functions of their arguments (the
controller exposes them as methods); `Batching` applies them to one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from ._latency import RoundClock, batch_for, rounds_that_fit, singles_for
from ._ledger import Ledger
from ._models import Request
from ._multiway import Posterior, multiway_confidence, multiway_gain_per_sample
from ._posterior import ConsistencyPrior
from ._prices import Price
from ._state import State
from ._stop import StopRule
from ._strategy import Plan
from ._value import expected_gain_per_sample, expected_sample_cost_usd

if TYPE_CHECKING:  # the controller imports this module
    from ._controller import ControllerConfig

# The controller's own machinery: nothing here is public API (see `Controller`).
__all__: list[str] = []

# (confidence, marginal gain per sample as a function: it costs more and few rules read it)
Assessment = tuple[float | None, Callable[[], float | None] | None]


def ordered(votes: Mapping[str, int]) -> dict[str, int]:
    """Votes leader first; ties keep first-seen order (dicts keep insertion order, sort is stable)."""
    return dict(sorted(votes.items(), key=lambda kv: -kv[1]))


def assess(
    prior: ConsistencyPrior,
    votes: Mapping[str, int],
    *,
    horizon: int,
    abstentions: int = 0,
    posterior: Posterior = "two-answer",
) -> Assessment:
    """(confidence, marginal gain per sample) for votes ordered leader first.

    The gain is the best expected rise in confidence per extra sample over batches of up to
    `horizon` (one extra vote alone often cannot change the leader). With `posterior`
    "two-answer" only the top two counts are read; "multiway" also counts the third and
    later answers and the `abstentions` (see `adaptive._multiway`).
    """
    if posterior == "multiway":
        counts = list(votes.values())
        if not counts or counts[0] == 0:
            return None, None

        def multi_gain() -> float:
            return multiway_gain_per_sample(prior, counts, abstentions, horizon=horizon)

        return multiway_confidence(prior, counts), multi_gain
    it = iter(votes.values())
    v1, v2 = next(it, 0), next(it, 0)
    if v1 == 0:
        return None, None

    def gain() -> float:
        return expected_gain_per_sample(prior, v1, v2, horizon=horizon)

    return prior.confidence(v1, v2), gain


def hypothetical(state: State, k: int, assessor: Callable[[dict[str, int]], Assessment]) -> State:
    """The state if the next k samples all went to the leader (assessed by `assessor`)."""
    leader = state.leader if state.leader is not None else "\x00next"
    votes = dict(state.votes)
    votes[leader] = votes.get(leader, 0) + k
    votes = ordered(votes)
    conf, g = assessor(votes)
    return state.replace(
        votes=votes,
        samples=state.samples + k,
        history=(*state.history, *([leader] * k)),
        confidence=conf,
        marginal_gain=g,
    )


def split_hypothetical(state: State, k: int, assessor: Callable[[dict[str, int]], Assessment]) -> State:
    """The state if the next k samples split like the votes so far (the expected case).

    The k votes are shared out in proportion to the votes (largest remainders, leader first on
    ties); with no votes yet they all go to the leader, as in `hypothetical`.
    """
    total = sum(state.votes.values())
    if total == 0 or k <= 0:
        return hypothetical(state, k, assessor)
    exact = {a: k * v / total for a, v in state.votes.items()}
    extra = {a: int(x) for a, x in exact.items()}
    left = k - sum(extra.values())
    for a in sorted(exact, key=lambda a: -(exact[a] - extra[a]))[:left]:  # stable: leader first
        extra[a] += 1
    votes = ordered({a: v + extra[a] for a, v in state.votes.items()})
    conf, g = assessor(votes)
    added = tuple(a for a, n in extra.items() for _ in range(n))
    return state.replace(
        votes=votes,
        samples=state.samples + k,
        history=(*state.history, *added),
        confidence=conf,
        marginal_gain=g,
    )


def next_batch(
    state: State,
    rule: StopRule | None,
    what_if: Callable[[State, int], State],
    *,
    cap: int,
    min_batch: int = 1,
    first_batch: int | None = None,
) -> int:
    """How many samples to ask for next: a pure function of the state.

    Args:
        state: The state now.
        rule: The stop rules that may end the call (None: as many as the cap allows).
        what_if: The state after k more samples that agree with the leader.
        cap: The most samples allowed.
        min_batch: The fewest samples the plan accepts.
        first_batch: A fixed size for this batch (the controller's `first_batch`, in the
            first round only).
    """
    if cap < 1:
        return 0
    if first_batch is not None:
        return max(min_batch, min(first_batch, cap))
    if rule is None:
        return max(min_batch, cap)
    for k in range(max(1, min_batch), cap + 1):
        if rule(what_if(state, k)):
            return k
    return max(min_batch, cap)


class Sizer(Protocol):
    """`Controller.next_batch`: the batch size the stop rules ask for, before the budget."""

    def __call__(
        self, state: State, rule: StopRule | None, *, cap: int, min_batch: int = 1, first: bool = False
    ) -> int: ...


class Batching:
    """The batch sizing of one call: its caps, and what its budget can still hold.

    Args:
        config: The controller's settings (sizes, `batch_as_n`, `shrink_max_tokens`).
        sizer: The controller's `next_batch` (bound to its prior).
        ledger: The call's ledger (read only: nothing is reserved here).
        supports_n: Whether the task's endpoint does `n` in one request.
        price: The price the task's endpoint is charged at in this call.
        endpoint: The task's endpoint name (its learned reservation bound applies).
    """

    def __init__(
        self,
        config: ControllerConfig,
        sizer: Sizer,
        ledger: Ledger,
        *,
        supports_n: bool,
        price: Price | None,
        endpoint: str = "",
        expected: Sizer | None = None,
        clock: RoundClock | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.expected = expected
        self.clock = clock
        self.cfg = config
        self.sizer = sizer
        self.ledger = ledger
        self.as_n = config.batch_as_n and supports_n
        self.price = price

    def size(self, plan: Plan, state: State, rule: StopRule | None, *, generated: int, first: bool) -> int:
        """The samples to ask for under `plan`: sized by the rules, capped, then fitted to the budget."""
        cap = self.cfg.max_batch
        if self.cfg.max_samples is not None:
            cap = min(cap, self.cfg.max_samples - generated)
        if plan.max_batch is not None:
            cap = min(cap, plan.max_batch)
        if state.remaining_samples is not None:
            cap = min(cap, state.remaining_samples)
        k = self.sizer(
            state, rule if plan.stoppable else None, cap=cap, min_batch=plan.min_batch, first=first
        )
        if plan.stoppable and rule is not None:
            k = self.for_latency(plan, state, rule, least=k, cap=cap, first=first)
        return self.affordable(plan, k, singles=self.singles(plan, first=first))

    @staticmethod
    def singles(plan: Plan, *, first: bool) -> bool:
        """Whether the plan's batch goes out as single requests (the plan's, or its latency's, call)."""
        return plan.singles or (plan.stoppable and singles_for(plan.latency, first=first))

    def for_latency(
        self, plan: Plan, state: State, rule: StopRule, *, least: int, cap: int, first: bool
    ) -> int:
        """The batch `plan.latency` and the deadline ask for, from the rules' fewest (`least`)."""
        per_round = self.clock.per_round(self.endpoint) if self.clock is not None else None
        rounds_left = rounds_that_fit(state.remaining_seconds, per_round)
        if (plan.latency is None or plan.latency == "cheap") and rounds_left is None:
            return least
        expected = least
        if not first and plan.latency in ("balanced", "fast") and self.expected is not None:
            expected = self.expected(state, rule, cap=cap, min_batch=plan.min_batch)
        return batch_for(
            plan.latency, least=least, expected=expected, cap=cap, first=first, rounds_left=rounds_left
        )

    def shape(self, sample: Request, k: int, *, singles: bool = False) -> tuple[Request, int]:
        """A batch of k samples as the request whose worst case bounds it, and its prompt copies.

        `singles`: the batch goes out as k single requests even where `n` is supported.
        """
        request = sample.model_copy(update={"n": k})
        return (request, 1) if self.as_n and not singles else (request, k)  # k prompts billed

    def affordable(self, plan: Plan, k: int, *, singles: bool = False) -> int:
        """The largest batch up to k whose worst case fits in the budget (0: none fits)."""
        assert plan.sample is not None
        if self.cfg.shrink_max_tokens:
            return k  # reserving lowers max_tokens to fit instead
        while k >= max(1, plan.min_batch):
            request, copies = self.shape(plan.sample, k, singles=singles)
            if self.ledger.fits(request, self.price, prompt_copies=copies, endpoint=self.endpoint):
                return k
            k -= 1
        return 0

    def with_next(self, state: State, sample: Request, k: int, sample_tokens: float | None = None) -> State:
        """`state` with the next batch's size, worst-case and expected cost filled in.

        `sample_tokens` is the expected completion tokens per sample (this call's mean so
        far); None before the first sample, when the expected cost is the worst case.
        """
        if k < 1:
            return state.replace(next_batch=0, next_cost_usd=None, next_tokens=0, expected_cost_usd=None)
        request, copies = self.shape(sample, k)
        pico, tokens = self.ledger.worst_case(
            request, self.price, prompt_copies=copies, endpoint=self.endpoint
        )
        cost = pico / 1e12 if self.price is not None else None
        expected = cost
        if self.price is not None and sample_tokens is not None:
            expected = expected_sample_cost_usd(
                self.price,
                prompt_tokens=self.ledger.prompt_tokens(request, self.endpoint),
                sample_tokens=min(sample_tokens, float(request.max_tokens)),
                k=k,
                prompt_copies=copies,
            )
        return state.replace(next_batch=k, next_cost_usd=cost, next_tokens=tokens, expected_cost_usd=expected)
