"""How sure we are that the current leader is the answer unlimited sampling would give.

The model behind the controller's confidence is the one Adaptive-Consistency uses, made
learnable. Between the two leading answers A (the leader, v1 votes) and B (v2 votes), each new
vote goes to A with an unknown probability q. Whichever of the two is more likely (q > 1/2 or
q < 1/2) is the answer that voting over unlimited samples converges to. With a uniform prior on
q this is exactly AC's Beta rule: P(q > 1/2 | v1, v2) = P(Binomial(v1 + v2 + 1, 1/2) <= v1).

Real models are not uniform: on most questions they are very consistent, on a few they are
split. `ConsistencyPrior` holds a symmetric prior over the *dominance* d = max(q, 1 - q) on a
grid, fitted by EM (nonparametric maximum likelihood) from logged vote counts: a user's own logs,
or the calls a client has already made. Early stopping is ignorable for this likelihood (the
decision to stop depends only on votes already seen), so logs of early-stopped calls are fine
to fit on. With no data the prior is uniform and the confidence is AC's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import NDArray

from ._exceptions import ConfigError

__all__ = ["ConsistencyPrior", "beta_confidence", "top_two"]


def top_two(votes: Mapping[str, int] | Iterable[int]) -> tuple[int, int]:
    """The two largest vote counts (0 where missing)."""
    counts = sorted(votes.values() if isinstance(votes, Mapping) else votes, reverse=True)
    v1 = counts[0] if counts else 0
    v2 = counts[1] if len(counts) > 1 else 0
    return v1, v2


def beta_confidence(v1: int, v2: int) -> float:
    """AC's Beta rule: P(q > 1/2) under Beta(v1 + 1, v2 + 1), computed exactly.

    Equals P(Binomial(v1 + v2 + 1, 1/2) <= v1).
    """
    n = v1 + v2 + 1
    return float(sum(math.comb(n, k) for k in range(v1 + 1)) / 2**n)


class ConsistencyPrior:
    """A learnable prior over how strongly a model agrees with itself.

    Args:
        grid: Number of grid points for the dominance d in (1/2, 1).
        pseudo_count: Weight, in questions, of the uniform prior mixed into every fit; keeps
            a prior fitted on few logs from being overconfident.

    Example:
        >>> prior = ConsistencyPrior()
        >>> round(prior.confidence(4, 0), 3)  # uniform: AC's Beta rule
        0.969
        >>> prior.fit([(10, 0)] * 50 + [(6, 4)] * 5)
        >>> prior.confidence(2, 0) > 0.95
        True
    """

    def __init__(self, grid: int = 96, pseudo_count: float = 8.0) -> None:
        if grid < 8:
            raise ConfigError(f"grid must be at least 8 points (got {grid})")
        if not pseudo_count > 0:
            raise ConfigError(f"pseudo_count must be a positive number (got {pseudo_count})")
        # Midpoints of (1/2, 1); the last point sits close to, but never at, 1.
        self.d: NDArray[np.float64] = 0.5 + (np.arange(grid) + 0.5) / (2 * grid)
        self._log_d = np.log(self.d)
        self._log_1md = np.log1p(-self.d)
        self.pseudo_count = pseudo_count
        self.weights: NDArray[np.float64] = np.full(grid, 1.0 / grid)
        self.counts: Counter[tuple[int, int]] = Counter()
        self._cache: dict[tuple[int, int], float] = {}
        self._gain_cache: dict[tuple[int, int, int], float] = {}
        self._table: NDArray[np.float64] | None = None
        self._binoms: dict[int, NDArray[np.float64]] = {}

    # -- inference -----------------------------------------------------------------------
    # Every quantity below is a ratio of moments M[a, b] = sum_j w_j d_j^a (1 - d_j)^b: the
    # prior mass of "A dominant" after a votes for A and b for B is M[a, b], of "B dominant"
    # M[b, a]. The table is built once per fit with one matrix product.
    def _moments(self, size: int) -> NDArray[np.float64]:
        table = self._table
        if table is None or table.shape[0] < size:
            n = max(size, 2 * (table.shape[0] if table is not None else 64))
            a = np.arange(n, dtype=np.float64)[:, None]
            powers_d = np.exp(a * self._log_d)  # (n, grid)
            powers_1md = np.exp(a * self._log_1md)
            # einsum, not `@`: a product this small is slowed down many times over by BLAS
            # threads on a loaded machine.
            table = np.einsum("ig,jg->ij", powers_d * self.weights, powers_1md)
            self._table = table
        return table

    def confidence(self, v1: int, v2: int) -> float:
        """P(the leader with v1 votes, not the runner-up with v2, wins unlimited voting)."""
        if v1 < v2:
            raise ConfigError(f"v1 must be the leader's count (v1 >= v2); got v1={v1}, v2={v2}")
        key = (v1, v2)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        m = self._moments(v1 + 1)
        pa, pb = float(m[v1, v2]), float(m[v2, v1])
        if pa + pb > 0:
            value = pa / (pa + pb)
        else:  # underflow far out in the tails: fall back to log space
            la, lb = self._side_likelihoods(v1, v2)
            pa, pb = float(self.weights @ la), float(self.weights @ lb)
            value = pa / (pa + pb)
        self._cache[key] = value
        return value

    def _side_likelihoods(self, v1: int, v2: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        a = v1 * self._log_d + v2 * self._log_1md  # A dominant
        b = v2 * self._log_d + v1 * self._log_1md  # B dominant
        shift = max(a.max(), b.max())
        return np.exp(a - shift), np.exp(b - shift)

    def predictive(self, v1: int, v2: int, k: int) -> NDArray[np.float64]:
        """P(i of the next k two-way votes go to the leader), i = 0..k."""
        m = self._moments(v1 + v2 + k + 1)
        i = np.arange(k + 1)
        joint = self._binom(k) * (m[v1 + i, v2 + k - i] + m[v2 + k - i, v1 + i])
        z = m[v1, v2] + m[v2, v1]
        return np.asarray(joint / z, dtype=np.float64)

    def expected_gain(self, v1: int, v2: int, k: int) -> float:
        """Expected rise in P(our pick wins unlimited voting) from k more two-way votes.

        Picking the leader now is right with probability c = confidence(v1, v2); after k more
        votes we pick whichever side then leads. The difference is the value of sampling more.
        """
        if k <= 0:
            return 0.0
        key = (v1, v2, k)
        hit = self._gain_cache.get(key)
        if hit is not None:
            return hit
        m = self._moments(v1 + v2 + k + 1)
        z = float(m[v1, v2] + m[v2, v1])
        if not z > 0:
            return 0.0
        i = np.arange(k + 1)
        binom = self._binom(k)
        # P(outcome i) * P(right | outcome i) = C(k, i) * max(mass A, mass B) after it, / z
        after = float(binom @ np.maximum(m[v1 + i, v2 + k - i], m[v2 + k - i, v1 + i])) / z
        value = max(0.0, after - self.confidence(v1, v2))
        self._gain_cache[key] = value
        return value

    def _binom(self, k: int) -> NDArray[np.float64]:
        row = self._binoms.get(k)
        if row is None:
            row = np.array([math.comb(k, j) for j in range(k + 1)], dtype=np.float64)
            self._binoms[k] = row
        return row

    # -- learning ------------------------------------------------------------------------
    def observe(self, v1: int, v2: int) -> None:
        """Log one finished question's top-two vote counts (refit with `refit`)."""
        v1, v2 = max(v1, v2), min(v1, v2)
        if v1 + v2 >= 2:  # fewer votes carry no information about consistency
            self.counts[(v1, v2)] += 1

    def fit(self, logs: Iterable[tuple[int, int] | Mapping[str, int]], iterations: int = 200) -> None:
        """Fit the prior on logged vote counts: (v1, v2) pairs or per-question vote maps."""
        for item in logs:
            v1, v2 = top_two(item) if isinstance(item, Mapping) else item
            self.observe(v1, v2)
        self.refit(iterations)

    def refit(self, iterations: int = 50) -> None:
        """Re-run EM from the current weights over everything observed so far."""
        if not self.counts:
            return
        keys = list(self.counts)
        n = np.array([self.counts[k] for k in keys], dtype=np.float64)
        v1 = np.array([k[0] for k in keys], dtype=np.float64)[:, None]
        v2 = np.array([k[1] for k in keys], dtype=np.float64)[:, None]
        lik = np.exp(v1 * self._log_d + v2 * self._log_1md) + np.exp(v2 * self._log_d + v1 * self._log_1md)
        uniform = np.full_like(self.weights, 1.0 / len(self.weights))
        w = self.weights
        total = n.sum() + self.pseudo_count
        for _ in range(iterations):
            joint = lik * w
            resp = joint / joint.sum(axis=1, keepdims=True)
            w = (n @ resp + self.pseudo_count * uniform) / total
        self.weights = w
        self._invalidate()

    def _invalidate(self) -> None:
        self._cache.clear()
        self._gain_cache.clear()
        self._table = None

    def copy(self) -> ConsistencyPrior:
        """An independent copy (same grid, weights and logs)."""
        other = ConsistencyPrior(len(self.d), self.pseudo_count)
        other.weights = self.weights.copy()
        other._invalidate()
        other.counts = Counter(self.counts)
        return other

    def __repr__(self) -> str:
        mean_d = float(self.weights @ self.d)
        return f"ConsistencyPrior(questions={sum(self.counts.values())}, mean_dominance={mean_d:.3f})"
