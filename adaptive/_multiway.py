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
  more cautious still; its gain is the pooled contest's (whichever side leads it), scaled
  by the share of samples that vote at all.

With two answers and no abstentions both equal the two-answer model exactly (one rival,
every sample in its contest). Every value is a sum of the prior's cached pairwise values
over the distinct rival counts, so an assessment costs a few cache lookups more than the
two-answer one.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ._exceptions import ConfigError
from ._posterior import ConsistencyPrior

__all__ = [
    "POSTERIORS",
    "Model",
    "Posterior",
    "contest_gain_per_vote",
    "multiway_confidence",
    "multiway_gain_per_sample",
]

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
    miss = sum(n * (1.0 - _beats(prior, v1, v)) for v, n in _rivals(counts, model).items())
    return max(0.0, 1.0 - miss)


def _beats(prior: ConsistencyPrior, v1: int, v: int) -> float:
    """P(v1's side beats v's), either way round (a pooled rest can outnumber the leader)."""
    return prior.confidence(v1, v) if v1 >= v else 1.0 - prior.confidence(v, v1)


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
        n * (v1 + v) / samples * contest_gain_per_vote(prior, max(v1, v), min(v1, v), horizon)
        for v, n in _rivals(counts, model).items()
    )


# Per prior: (the weights the cached values were computed under, (v1, v2, horizon) -> gain).
# A refit replaces the prior's weights array, which empties the cache.
_GAINS: weakref.WeakKeyDictionary[
    ConsistencyPrior, tuple[NDArray[np.float64], dict[tuple[int, int, int], float]]
]
_GAINS = weakref.WeakKeyDictionary()
_BINOM: NDArray[np.float64] = np.zeros((1, 1))


def _binomials(size: int) -> NDArray[np.float64]:
    """C(k, i) for k, i < size (0 where i > k), grown on demand."""
    global _BINOM
    if _BINOM.shape[0] < size:
        n = max(size, 2 * _BINOM.shape[0])
        _BINOM = np.array([[math.comb(k, i) for i in range(n)] for k in range(n)], dtype=np.float64)
    return _BINOM


def contest_gain_per_vote(prior: ConsistencyPrior, v1: int, v2: int, horizon: int) -> float:
    """`expected_gain_per_sample(prior, v1, v2, horizon=horizon)`, every batch size at once.

    The same quantity (the best expected rise in P(right) per vote over batches of 1..horizon
    votes in the v1-v2 contest), computed for all batch sizes in one array expression from
    the prior's moment table and cached until the prior is refitted: a horizon of a whole
    call's samples costs about what one batch size does.
    """
    if horizon < 1:
        raise ConfigError(f"horizon must be at least 1 (got {horizon})")
    if v1 <= 0:
        return 0.0
    hit = _GAINS.get(prior)
    if hit is None or hit[0] is not prior.weights:
        hit = (prior.weights, {})
        _GAINS[prior] = hit
    cache = hit[1]
    key = (v1, v2, horizon)
    value = cache.get(key)
    if value is not None:
        return value
    m = prior._moments(v1 + v2 + horizon + 1)
    z = float(m[v1, v2] + m[v2, v1])
    value = 0.0
    if z > 0:
        k = np.arange(1, horizon + 1)[:, None]  # batch sizes, rows
        i = np.arange(horizon + 1)[None, :]  # votes for the leader among them, columns
        valid = i <= k
        b = np.where(valid, k - i, 0)  # votes for the runner-up (0 where i > k: masked)
        a = np.broadcast_to(i, b.shape)
        best = np.maximum(m[v1 + a, v2 + b], m[v2 + b, v1 + a])
        after = (np.where(valid, _binomials(horizon + 1)[1 : horizon + 1, : horizon + 1] * best, 0.0)).sum(
            axis=1
        ) / z
        gains = np.maximum(0.0, after - prior.confidence(v1, v2)) / k[:, 0]
        value = float(gains.max())
    cache[key] = value
    return value
