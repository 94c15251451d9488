"""Confidence and marginal gain that count third and later answers and abstentions.

`ConsistencyPrior` models a question as a contest between the two leading answers only: a
4-1-1 split reads as 4-1, and a sample that abstains is assumed to be a vote. Two options
here reach both the confidence and the marginal gain (the default stop rule fires on
either), each built from the learned two-answer prior so that nothing new is fitted:

- ``"multiway"``: the leader A against every rival j separately. The learned prior gives
  each pairwise posterior c_j = P(A beats j | v_A, v_j), exactly as today. A is the answer
  unlimited voting gives when it beats every rival, so by Boole's inequality

      P(A beats all) >= 1 - sum_j (1 - c_j),

  which holds whatever the dependence between the contests and is tight where stopping is
  decided: the terms left out are the chances that two rivals *both* beat A, products of
  small numbers when the confidence is near its threshold. (Far from it the bound is loose,
  down to 0 at a three-way tie; no stop rule fires there.) The gain is the same first-order
  expansion: the error is about sum_j (1 - c_j), so the expected fall in it from more
  samples is the sum of the pairwise gains, each scaled by the share of samples that land
  in that contest, (v_A + v_j) / samples. An abstention, or a vote for a third answer,
  resolves nothing in the A-j contest: it spends a sample without a vote there.
- ``"pooled"``: the leader against all the rest pooled into one rival, c(v_A, sum_j v_j):
  the leader must hold a majority of the votes. A sufficient condition for winning, so
  more cautious still; its gain is the pooled contest's, scaled by the share of samples
  that vote at all.

With two answers and no abstentions both equal the two-answer model exactly (one rival,
every sample in its contest). Every value is a sum of the prior's cached pairwise values
over the distinct rival counts, so an assessment costs a few cache lookups more than the
two-answer one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Literal

from ._exceptions import ConfigError
from ._posterior import ConsistencyPrior
from ._value import expected_gain_per_sample

__all__ = ["POSTERIORS", "Model", "Posterior", "multiway_confidence", "multiway_gain_per_sample"]

#: The controller's choices (`ControllerConfig.posterior`); "two-answer" is `ConsistencyPrior` alone.
Posterior = Literal["two-answer", "multiway", "pooled"]
POSTERIORS: tuple[Posterior, ...] = ("two-answer", "multiway", "pooled")
#: The models this module computes.
Model = Literal["multiway", "pooled"]


def _check(counts: Sequence[int], abstentions: int) -> None:
    if abstentions < 0:
        raise ConfigError(f"abstentions must be >= 0 (got {abstentions})")
    if any(c < 0 for c in counts) or any(a < b for a, b in itertools.pairwise(counts)):
        raise ConfigError(f"vote counts must be >= 0 and ordered leader first (got {list(counts)})")


def _rivals(counts: Sequence[int], model: Model) -> Counter[int]:
    """Rival vote count -> how many rivals have it (one rival at 0 votes when there is none)."""
    if model not in ("multiway", "pooled"):
        raise ConfigError(f"model must be 'multiway' or 'pooled' (got {model!r})")
    rest = [c for c in counts[1:] if c > 0]
    if model == "pooled":
        return Counter([sum(rest)])
    return Counter(rest or [0])


def multiway_confidence(
    prior: ConsistencyPrior, counts: Sequence[int], *, model: Model = "multiway"
) -> float:
    """P(the leader is the answer unlimited voting gives), counting every rival.

    Args:
        prior: The learned two-answer prior (its pairwise confidences are the parts).
        counts: Vote counts, leader first, in non-increasing order.
        model: "multiway" (Boole's bound over the pairwise contests) or "pooled" (the
            leader against all the rest pooled).

    Returns:
        The confidence, in [0, 1]; with one rival it is `prior.confidence(v1, v2)`.

    Raises:
        ConfigError: No votes, or counts not ordered leader first.
    """
    _check(counts, 0)
    if not counts or counts[0] <= 0:
        raise ConfigError("the confidence needs at least one vote")
    v1 = counts[0]
    miss = sum(n * (1.0 - prior.confidence(v1, v)) for v, n in _rivals(counts, model).items())
    return max(0.0, 1.0 - miss)


def multiway_gain_per_sample(
    prior: ConsistencyPrior,
    counts: Sequence[int],
    abstentions: int = 0,
    *,
    horizon: int = 8,
    model: Model = "multiway",
) -> float:
    """Expected fall in P(our pick is wrong) per extra sample, counting every rival.

    Each contest's gain per vote in it (`expected_gain_per_sample`) is scaled by the share
    of samples so far that voted in it: with abstentions or third answers, a sample is less
    likely to move any one contest.

    Args:
        prior: The learned two-answer prior.
        counts: Vote counts, leader first, in non-increasing order.
        abstentions: Samples so far with no answer.
        horizon: The largest batch considered per contest.
        model: As in `multiway_confidence`.

    Raises:
        ConfigError: Counts not ordered leader first, or abstentions < 0.
    """
    _check(counts, abstentions)
    if not counts or counts[0] <= 0:
        return 0.0
    v1 = counts[0]
    samples = sum(counts) + abstentions
    return sum(
        n * (v1 + v) / samples * expected_gain_per_sample(prior, v1, v, horizon=horizon)
        for v, n in _rivals(counts, model).items()
    )
