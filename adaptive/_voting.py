"""Voting over answers: majority and weighted votes with deterministic tie-breaking.

Input is one entry per sample, in sample order: an answer (a normalized string, see
`adaptive._normalize`) or None when the sample gave no answer, and optionally a weight (a
verifier score, `logprob_weight(mean_logprob)`, ...). These functions do no extraction or
normalization themselves: equal strings are the same answer, nothing else is.

Rules:

- **Abstentions** (None) are counted in `Tally.abstentions` and never vote; their weights
  are ignored. The empty string is an ordinary answer.
- **Weights** must be finite and >= 0 (a weight of 0 still counts as a vote in the count).
  Each answer's weight is summed with `math.fsum`, so it does not depend on sample order.
- **Ranking and ties** are deterministic:

  - `majority_vote` (`by="count"`): more votes first; on equal votes, more total weight;
    then the answer seen first (the smallest sample index).
  - `weighted_vote` (`by="weight"`): more total weight first; on equal weight, more votes;
    then the answer seen first.

  Ties compare exactly (no tolerance), which is why weights are summed exactly.
- **No votes**: with no entries, or only abstentions, the winner is None.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from ._exceptions import ConfigError

__all__ = ["Tally", "Vote", "logprob_weight", "majority_vote", "top_two_counts", "weighted_vote"]

RankBy = Literal["count", "weight"]


def top_two_counts(votes: Mapping[str, int] | Iterable[int]) -> tuple[int, int]:
    """Return the two largest vote counts, the leader's then the runner-up's (0 where missing).

    Example:
        >>> top_two_counts({"a": 1, "b": 5, "c": 2})
        (5, 2)
    """
    counts = sorted(votes.values() if isinstance(votes, Mapping) else votes, reverse=True)
    v1 = counts[0] if counts else 0
    v2 = counts[1] if len(counts) > 1 else 0
    return v1, v2


def _check_weight(weight: object, index: int) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise ConfigError(f"weight #{index} is {type(weight).__name__}; weights must be numbers")
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"weight #{index} is {value}; weights must be finite and >= 0 "
            "(turn log-probabilities into weights with logprob_weight)"
        )
    return value


@dataclass(frozen=True)
class Tally:
    """Votes per answer, built with `Tally.build` (or `from_entries`).

    Attributes:
        answers: The distinct answers in first-seen order.
        counts: Votes per answer.
        weights: Total weight per answer (1.0 per vote when no weights were given).
        first_seen: The sample index where each answer first appeared.
        abstentions: Entries that gave no answer (None).
        by: What ranks answers first: "count" (majority) or "weight" (weighted vote).
    """

    answers: tuple[str, ...]
    counts: Mapping[str, int]
    weights: Mapping[str, float]
    first_seen: Mapping[str, int]
    abstentions: int
    by: RankBy = "count"

    @classmethod
    def build(
        cls,
        answers: Iterable[str | None],
        weights: Iterable[float] | None = None,
        *,
        by: RankBy = "count",
    ) -> Tally:
        """Count answers (None = abstain), with an optional weight per entry.

        Raises:
            ConfigError: An answer is neither a str nor None; the weights are not as many as
                the answers, or one is negative, NaN or infinite; `by` is unknown.
        """
        if by not in ("count", "weight"):
            raise ConfigError(f"by must be 'count' or 'weight', got {by!r}")
        answer_list = list(answers)
        if weights is None:
            weight_list = [1.0] * len(answer_list)
        else:
            weight_list = list(weights)
            if len(weight_list) != len(answer_list):
                raise ConfigError(
                    f"got {len(answer_list)} answers but {len(weight_list)} weights; "
                    "give one weight per answer"
                )
        parts: dict[str, list[float]] = {}
        first_seen: dict[str, int] = {}
        abstentions = 0
        for index, (answer, weight) in enumerate(zip(answer_list, weight_list, strict=True)):
            value = _check_weight(weight, index)
            if answer is None:
                abstentions += 1
                continue
            if not isinstance(answer, str):
                raise ConfigError(
                    f"answer #{index} is {type(answer).__name__}; answers must be str (or None to abstain)"
                )
            if answer not in parts:
                parts[answer] = []
                first_seen[answer] = index
            parts[answer].append(value)
        return cls(
            answers=tuple(parts),
            counts=MappingProxyType({a: len(ws) for a, ws in parts.items()}),
            weights=MappingProxyType({a: math.fsum(ws) for a, ws in parts.items()}),
            first_seen=MappingProxyType(first_seen),
            abstentions=abstentions,
            by=by,
        )

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str | None, float]], *, by: RankBy = "count") -> Tally:
        """Build from `(answer | None, weight)` pairs."""
        pairs = list(entries)
        return cls.build([a for a, _ in pairs], [w for _, w in pairs], by=by)

    def _key(self, answer: str) -> tuple[float, float, int]:
        # Sorted ascending, so larger is negated; the first-seen index breaks the last tie.
        count, weight = self.counts[answer], self.weights[answer]
        if self.by == "count":
            return (-count, -weight, self.first_seen[answer])
        return (-weight, -count, self.first_seen[answer])

    @property
    def ranking(self) -> tuple[str, ...]:
        """All answers, best first, by the rules in the module docstring."""
        return tuple(sorted(self.answers, key=self._key))

    @property
    def leader(self) -> str | None:
        """The best answer, or None when nothing voted."""
        ranking = self.ranking
        return ranking[0] if ranking else None

    @property
    def runner_up(self) -> str | None:
        """The second-best answer, or None when fewer than two answers got votes."""
        ranking = self.ranking
        return ranking[1] if len(ranking) > 1 else None

    @property
    def leaders(self) -> tuple[str | None, str | None]:
        """The two leading answers, `(leader, runner_up)`."""
        return self.leader, self.runner_up

    def score(self, answer: str) -> float:
        """Return the answer's votes (`by="count"`) or total weight (`by="weight"`); 0 if unseen."""
        if self.by == "count":
            return float(self.counts.get(answer, 0))
        return self.weights.get(answer, 0.0)

    @property
    def margin(self) -> float:
        """Leader's score minus the runner-up's (in votes or weight, per `by`).

        With one answer this is the leader's score; with none it is 0.
        """
        leader, runner_up = self.leaders
        if leader is None:
            return 0.0
        return self.score(leader) - (self.score(runner_up) if runner_up is not None else 0.0)

    @property
    def total_votes(self) -> int:
        """Entries that gave an answer (abstentions excluded)."""
        return sum(self.counts.values())

    @property
    def total_weight(self) -> float:
        """Total weight of all entries that gave an answer."""
        return math.fsum(self.weights.values())

    def share(self, answer: str) -> float:
        """Return the answer's share of the votes (`by="count"`) or of the weight (`by="weight"`).

        Abstentions are not in the denominator. 0.0 for an unseen answer or an empty total.
        """
        total = float(self.total_votes) if self.by == "count" else self.total_weight
        return self.score(answer) / total if total > 0 else 0.0


@dataclass(frozen=True)
class Vote:
    """The outcome of a vote.

    Attributes:
        winner: The leading answer, or None when no entry gave an answer.
        tally: The full tally behind it.
    """

    winner: str | None
    tally: Tally

    @property
    def share(self) -> float:
        """The winner's share of the votes or weight (0.0 without a winner)."""
        return 0.0 if self.winner is None else self.tally.share(self.winner)

    @property
    def margin(self) -> float:
        """The winner's lead over the runner-up (see `Tally.margin`)."""
        return self.tally.margin


def majority_vote(answers: Iterable[str | None], weights: Iterable[float] | None = None) -> Vote:
    """Pick the most frequent answer; ties go to more total weight, then to the first seen.

    Args:
        answers: One answer per sample, None for a sample without an answer.
        weights: Optional weights, used only to break ties in the count.

    Raises:
        ConfigError: See `Tally.build`.

    Example:
        >>> majority_vote(["18", None, "17", "18"]).winner
        '18'
    """
    tally = Tally.build(answers, weights, by="count")
    return Vote(winner=tally.leader, tally=tally)


def weighted_vote(answers: Iterable[str | None], weights: Sequence[float]) -> Vote:
    """Pick the answer with the most total weight; ties go to more votes, then to the first seen.

    Args:
        answers: One answer per sample, None for a sample without an answer.
        weights: One weight per sample (finite, >= 0), e.g. verifier scores or
            `logprob_weight(completion.mean_logprob())`.

    Raises:
        ConfigError: See `Tally.build`.

    Example:
        >>> weighted_vote(["18", "17", "17"], [0.9, 0.2, 0.3]).winner
        '18'
    """
    tally = Tally.build(answers, weights, by="weight")
    return Vote(winner=tally.leader, tally=tally)


def logprob_weight(mean_logprob: float) -> float:
    """Turn a mean token log-probability into a weight: `exp(mean_logprob)`, in [0, 1].

    `-inf` gives 0.0. Values a rounding error above 0 are treated as 0 (weight 1.0).

    Raises:
        ConfigError: The value is NaN or clearly positive (not a log-probability).
    """
    value = float(mean_logprob)
    if math.isnan(value) or value > 1e-6:
        raise ConfigError(f"mean_logprob must be a log-probability (<= 0), got {mean_logprob!r}")
    return math.exp(min(value, 0.0))
