"""The one state object that stop rules read: votes, scores, spend, time and round."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from ._voting import top_two_counts

__all__ = ["State"]


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    """A snapshot of one call, taken by the controller before each decision.

    Attributes:
        round: Rounds (batches) completed so far.
        samples: Completions generated so far (abstentions included).
        votes: Votes per normalized answer, leader first (ties broken by first appearance).
        abstentions: Samples with no extractable answer.
        history: Answers in arrival order (None = abstained); ESC reads its window here.
        weights: Summed weight per answer (verifier score or logprob weighting), if any.
        scores: Verifier scores of the candidates scored so far.
        best_score: The highest verifier score so far.
        spent_usd: Dollars recorded so far (verifier calls included).
        spent_tokens: Tokens recorded so far.
        elapsed: Seconds since the call started.
        remaining_usd / remaining_tokens / remaining_samples / remaining_seconds: What is left
            of each budget limit (None where no limit is set).
        draws_left: The most samples the call may still draw: the least of what the
            strategy may still ask for (`Plan.remaining`), `ControllerConfig.max_samples`
            and the samples budget (None where none of them is set).
        next_batch: Samples the controller would request next.
        next_cost_usd: Worst-case dollars of that batch (None without a price).
        next_tokens: Worst-case tokens of that batch.
        expected_cost_usd: Expected dollars of that batch: its prompt at the worst case, its
            completions at this call's mean observed sample length (the worst case before
            the first sample); None without a price. See `adaptive._value`.
        confidence: P(the leader is what unlimited voting would pick), from the controller's
            prior (AC's Beta rule when uncalibrated); None without votes.
        marginal_gain: Expected rise in that probability per extra sample; the controller
            may give it as a function, computed only when a rule asks (`gain()`).
        finished: True when the strategy has nothing more it could ask for.
    """

    round: int = 0
    samples: int = 0
    votes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    abstentions: int = 0
    history: tuple[str | None, ...] = ()
    weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    scores: tuple[float, ...] = ()
    best_score: float | None = None
    spent_usd: float = 0.0
    spent_tokens: int = 0
    elapsed: float = 0.0
    remaining_usd: float | None = None
    remaining_tokens: int | None = None
    remaining_samples: int | None = None
    remaining_seconds: float | None = None
    draws_left: int | None = None
    next_batch: int = 1
    next_cost_usd: float | None = None
    next_tokens: int = 0
    expected_cost_usd: float | None = None
    confidence: float | None = None
    marginal_gain: float | Callable[[], float | None] | None = None
    finished: bool = False

    def gain(self) -> float | None:
        """The marginal gain per extra sample (computed on first use when lazy)."""
        g = self.marginal_gain
        return g() if callable(g) else g

    @property
    def leader(self) -> str | None:
        """The answer with the most votes, or None."""
        return next(iter(self.votes), None)

    @property
    def top_two_counts(self) -> tuple[int, int]:
        """Vote counts of the leader and the runner-up (0 where missing)."""
        return top_two_counts(self.votes)

    def replace(self, **changes: object) -> State:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
