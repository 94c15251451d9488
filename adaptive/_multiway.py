"""Confidence and marginal gain that count third and later answers and abstentions.

`ConsistencyPrior` models a question as a contest between the two leading answers only: a
4-1-1 split reads as 4-1, and a sample that abstains is assumed to be a vote. The
"multiway" posterior (`ControllerConfig(posterior="multiway")`, the default) reaches both the
confidence and the marginal gain (the default stop rule fires on either), built from the
learned two-answer prior so that nothing new is fitted:

- The leader A is played against every rival j separately. The learned prior gives each
  pairwise posterior c_j = P(A beats j | v_A, v_j), exactly as today. A is the answer
  unlimited voting gives when it beats every rival, so by Boole's inequality

      P(A beats all) >= 1 - sum_j (1 - c_j),

  which holds whatever the dependence between the contests and is tight where stopping is
  decided: the terms left out are the chances that two rivals *both* beat A, products of
  small numbers when the confidence is near its threshold. (Far from it the bound is loose,
  down to 0 at a three-way tie; no stop rule fires there.)
- The gain is the same first-order expansion: the error is about sum_j (1 - c_j), so the
  expected fall in it from more samples is the sum of the pairwise gains, each scaled by
  the share of samples so far that landed in that contest, (v_A + v_j) / samples. An
  abstention, or a vote for a third answer, resolves nothing in the A-j contest: it spends
  a sample without a vote there.

With two answers and no abstentions it equals the two-answer model exactly (one rival,
every sample in its contest). Each value is a sum over the distinct rival counts of the
prior's cached pairwise values; the pairwise gain is computed for every batch size up to
the horizon in one array expression (`contest_gain_per_vote`), so a horizon of a whole
call's samples costs about what the default 8 does.

Why Boole's bound and not a Dirichlet over all answers plus an "unseen" bucket: the learned
prior is over the dominance between two answers, and its pairwise posteriors are exact
under it; a Dirichlet would need a concentration the logs do not give, and its probability
of being the largest has no closed form (AC's Dirichlet rule draws Monte Carlo samples).
An unseen answer is already the two-answer model's rival at 0 votes when one answer alone
has been seen.

Also tried, and dropped: the leader against all the rest pooled into one rival (it must
hold a majority). Measured by `benchmarks/replay.py` (20 shuffles), it lost to the
two-answer default everywhere: -0.28 pt on the full GSM8K file, -3.7 pt on its 100 hardest
questions in adversarial order, at more samples.

Measured (replay, 20 shuffles; README's "Benchmarks" has the table): on the shared files
"multiway" is within one question-run of the two-answer default everywhere and a little
above it on the last-letters runs. With `gain_horizon=40` the 100 hardest last-letters
questions in adversarial order are 0.20 pt under AC-Beta-0.95 instead of 1.35, but at 25%
more samples, and on the full files that lies on the default's own `min_gain` sweep.

It became the default together with the budget gain target (`adaptive._budget_gain`): the two
together hold the accuracy target (within 0.2 pt of AC-Beta-0.95 and SC@40) on every run
above, where the two-answer model with the unlimited target missed it on five of eight. It
is also the safer reading: a lower bound on the confidence, never above the exact answer.
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
    "Posterior",
    "contest_gain_per_vote",
    "multiway_confidence",
    "multiway_gain_per_sample",
]

#: The controller's choices (`ControllerConfig.posterior`); "two-answer" is `ConsistencyPrior` alone.
Posterior = Literal["two-answer", "multiway"]
POSTERIORS: tuple[Posterior, ...] = ("two-answer", "multiway")


def _check(counts: Sequence[int], abstentions: int) -> None:
    if abstentions < 0:
        raise ConfigError(f"abstentions must be >= 0 (got {abstentions})")
    if any(c < 0 for c in counts) or any(a < b for a, b in itertools.pairwise(counts)):
        raise ConfigError(f"vote counts must be >= 0 and ordered leader first (got {list(counts)})")


def _rivals(counts: Sequence[int]) -> Counter[int]:
    """Rival vote count -> how many rivals have it (one rival at 0 votes when there is none)."""
    return Counter([c for c in counts[1:] if c > 0] or [0])


def multiway_confidence(prior: ConsistencyPrior, counts: Sequence[int]) -> float:
    """P(the leader is the answer unlimited voting gives), counting every rival.

    Args:
        prior: The learned two-answer prior (its pairwise confidences are the parts).
        counts: Vote counts, leader first, in non-increasing order.

    Returns:
        The confidence, in [0, 1]; with one rival it is `prior.confidence(v1, v2)`.

    Raises:
        ConfigError: No votes, or counts not ordered leader first.
    """
    _check(counts, 0)
    if not counts or counts[0] <= 0:
        raise ConfigError("the confidence needs at least one vote")
    v1 = counts[0]
    miss = sum(n * (1.0 - prior.confidence(v1, v)) for v, n in _rivals(counts).items())
    return max(0.0, 1.0 - miss)


def multiway_gain_per_sample(
    prior: ConsistencyPrior,
    counts: Sequence[int],
    abstentions: int = 0,
    *,
    horizon: int = 8,
) -> float:
    """Expected fall in P(our pick is wrong) per extra sample, counting every rival.

    Each contest's gain per vote in it (`contest_gain_per_vote`) is scaled by the share
    of samples so far that voted in it: with abstentions or third answers, a sample is less
    likely to move any one contest.

    Args:
        prior: The learned two-answer prior.
        counts: Vote counts, leader first, in non-increasing order.
        abstentions: Samples so far with no answer.
        horizon: The largest batch considered per contest.

    Raises:
        ConfigError: Counts not ordered leader first, or abstentions < 0.
    """
    _check(counts, abstentions)
    if not counts or counts[0] <= 0:
        return 0.0
    v1 = counts[0]
    samples = sum(counts) + abstentions
    return sum(
        n * (v1 + v) / samples * contest_gain_per_vote(prior, v1, v, horizon)
        for v, n in _rivals(counts).items()
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
