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

A fitted prior is saved with `ConsistencyPrior.save` (JSON: grid, weights and the logged vote
counts) and read back with `ConsistencyPrior.load`, so it is fitted once (for instance by
`python -m adaptive calibrate`) and a loaded prior keeps learning from where it stopped.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._exceptions import ConfigError
from ._voting import top_two_counts

__all__ = ["ConsistencyPrior", "beta_confidence"]

_FORMAT = "adaptive.consistency_prior"
#: Calls after which an observed question's weight halves, by default (None: no decay).
#: Measured by `benchmarks/replay.py` (20 shuffles) against no decay: on both shared files
#: in recorded order accuracy is unchanged (+0.01/+0.02 pt) at 2% more samples; with the
#: easy questions first (a prior learned on easy calls meeting hard ones) it loses 0.06 and
#: 0.27 pt against AC-Beta-0.95 instead of 0.29 and 0.44; hard questions first, 4.35 and
#: 4.62 samples instead of 4.82 and 4.73 at the same accuracy.
DEFAULT_HALF_LIFE: float | None = 200.0
_VERSION = 1


def beta_confidence(v1: int, v2: int) -> float:
    """AC's Beta rule: P(q > 1/2) under Beta(v1 + 1, v2 + 1), computed exactly.

    Equals P(Binomial(v1 + v2 + 1, 1/2) <= v1).
    """
    n = v1 + v2 + 1
    return float(sum(math.comb(n, k) for k in range(v1 + 1)) / 2**n)


class ConsistencyPrior:
    """A learnable prior over how strongly a model agrees with itself.

    The prior used for every decision is a shrinkage of what the logs say toward the
    uniform prior (AC's Beta rule), with an explicit effective sample size: each EM step is
    `w = (sum_i r_i * resp_i + pseudo_count * uniform) / (N_eff + pseudo_count)`, where
    `r_i` is question i's recency weight and `N_eff = sum_i r_i` the effective number of
    questions observed. After 5 calls the uniform prior still holds 8/13 of the weight (the
    default `pseudo_count=8`); after 30, 8/38; after thousands, under 1%: a client that
    has seen few calls stays close to AC's rule, one that has seen many uses what it learned.

    Drift: with `half_life` (in calls) a question's weight halves every `half_life` later
    calls, so recent calls weigh more and `N_eff` never exceeds `1 / (1 - 2**(-1/half_life))`,
    about `1.44 * half_life` (the uniform prior keeps at least `pseudo_count / (N_eff +
    pseudo_count)` of the weight: 2.7% at the default half-life of 200). The recency weights
    are saved with the prior.

    Args:
        grid: Number of grid points for the dominance d in (1/2, 1).
        pseudo_count: Weight, in questions, of the uniform prior mixed into every fit (its
            effective sample size); keeps a prior fitted on few logs from being overconfident.
        half_life: Calls after which an observed question's weight halves (None: every
            question weighs the same for ever).

    Example:
        >>> prior = ConsistencyPrior()
        >>> round(prior.confidence(4, 0), 3)  # uniform: AC's Beta rule
        0.969
        >>> prior.fit([(10, 0)] * 50 + [(6, 4)] * 5)
        >>> prior.confidence(2, 0) > 0.95
        True
        >>> ConsistencyPrior.from_dict(prior.to_dict()).confidence(2, 0) == prior.confidence(2, 0)
        True
    """

    def __init__(
        self, grid: int = 96, pseudo_count: float = 8.0, half_life: float | None = DEFAULT_HALF_LIFE
    ) -> None:
        if grid < 8:
            raise ConfigError(f"grid must be at least 8 points (got {grid})")
        if not pseudo_count > 0:
            raise ConfigError(f"pseudo_count must be a positive number (got {pseudo_count})")
        if half_life is not None and not (math.isfinite(half_life) and half_life >= 1):
            raise ConfigError(f"half_life must be at least 1 call, or None for no decay (got {half_life})")
        self.half_life = half_life
        # Recency weight per logged vote pair (what EM sums over); `counts` keeps the integer log.
        self.recency: dict[tuple[int, int], float] = {}
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
            # 64 rows cover calls of up to ~60 samples; grow by doubling past that.
            n = max(size, 2 * table.shape[0] if table is not None else 64)
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
        for label, v in (("v1", v1), ("v2", v2)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise ConfigError(f"vote counts must be whole numbers >= 0 (got {label}={v!r})")
        v1, v2 = max(int(v1), int(v2)), min(int(v1), int(v2))
        if v1 + v2 >= 2:  # fewer votes carry no information about consistency
            self.counts[(v1, v2)] += 1
            if self.half_life is not None:
                decay = 0.5 ** (1.0 / self.half_life)
                for key in self.recency:
                    self.recency[key] *= decay
            self.recency[(v1, v2)] = self.recency.get((v1, v2), 0.0) + 1.0

    @property
    def effective_questions(self) -> float:
        """N_eff: the questions observed, each at its recency weight (see the class doc)."""
        return float(sum(self.recency.get(k, float(n)) for k, n in self.counts.items()))

    @property
    def learned_share(self) -> float:
        """The weight of what was learned against the uniform prior: N_eff / (N_eff + pseudo_count)."""
        n = self.effective_questions
        return n / (n + self.pseudo_count)

    def fit(self, logs: Iterable[tuple[int, int] | Mapping[str, int]], iterations: int = 200) -> None:
        """Fit the prior on logged vote counts: (v1, v2) pairs or per-question vote maps."""
        for item in logs:
            v1, v2 = top_two_counts(item) if isinstance(item, Mapping) else item
            self.observe(v1, v2)
        self.refit(iterations)

    def refit(self, iterations: int = 50) -> None:
        """Re-run EM from the current weights over everything observed so far."""
        if not self.counts:
            return
        keys = list(self.counts)
        n = np.array([self.recency.get(k, float(self.counts[k])) for k in keys], dtype=np.float64)
        v1 = np.array([k[0] for k in keys], dtype=np.float64)[:, None]
        v2 = np.array([k[1] for k in keys], dtype=np.float64)[:, None]
        # In log space, each question's row scaled by its largest entry (responsibilities do
        # not depend on a row's scale): raw likelihoods underflow to 0 from about 600-600
        # votes on, and 0 / 0 would make every weight NaN.
        loglik = np.logaddexp(v1 * self._log_d + v2 * self._log_1md, v2 * self._log_d + v1 * self._log_1md)
        lik = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        uniform = np.full_like(self.weights, 1.0 / len(self.weights))
        w = self.weights
        total = n.sum() + self.pseudo_count
        for _ in range(iterations):
            joint = lik * w
            # A row whose likelihood sits only where the weights are 0 says nothing: it adds 0.
            norm = joint.sum(axis=1, keepdims=True)
            resp = np.divide(joint, norm, out=np.zeros_like(joint), where=norm > 0)
            w = (n @ resp + self.pseudo_count * uniform) / total
        if not np.all(np.isfinite(w)) or w.sum() <= 0:  # a guard: the steps above cannot do this
            raise ConfigError("the consistency prior could not be fitted on these logs (non-finite weights)")
        self.weights = w
        self._invalidate()

    def _invalidate(self) -> None:
        self._cache.clear()
        self._gain_cache.clear()
        self._table = None

    def copy(self) -> ConsistencyPrior:
        """An independent copy (same grid, weights and logs)."""
        other = ConsistencyPrior(len(self.d), self.pseudo_count, self.half_life)
        other.weights = self.weights.copy()
        other._invalidate()
        other.counts = Counter(self.counts)
        other.recency = dict(self.recency)
        return other

    # -- saving and loading --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The prior as a JSON-ready dict: grid, pseudo count, weights and the logged counts.

        The logged vote counts (`counts`, as `[v1, v2, questions]` rows) travel with the
        weights, so a prior rebuilt by `from_dict` keeps learning from where this one is.

        Returns:
            `{"format": "adaptive.consistency_prior", "version": 1, "grid": int,
            "pseudo_count": float, "weights": [float, ...], "counts": [[v1, v2, n], ...]}`.
        """
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "grid": len(self.d),
            "pseudo_count": float(self.pseudo_count),
            "half_life": None if self.half_life is None else float(self.half_life),
            # float() of a float64 and JSON's shortest repr are both exact: loading gives
            # back the very same weights, hence the very same confidences.
            "weights": [float(w) for w in self.weights],
            # In logging order: refitting sums over them in this order, so a loaded prior
            # refits to exactly what this one would.
            "counts": [[int(v1), int(v2), int(n)] for (v1, v2), n in self.counts.items()],
            # Each counts row's recency weight (its questions' summed decayed weights).
            "recency": [float(self.recency.get(key, float(n))) for key, n in self.counts.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsistencyPrior:
        """Rebuild a prior from `to_dict`'s output, checking every field.

        Weights are rescaled to sum to 1 when they do not already.

        Args:
            data: A dict as written by `to_dict` (or read back from `save`'s JSON).

        Returns:
            The prior, with the same weights and logged counts.

        Raises:
            ConfigError: A field is missing or invalid (the message names it and the fix).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"a saved prior must be a JSON object (dict) as written by ConsistencyPrior.to_dict; "
                f"got {type(data).__name__}"
            )

        def field(name: str) -> Any:
            if name not in data:
                raise ConfigError(
                    f"the saved prior has no {name!r} field; save it again with ConsistencyPrior.save"
                )
            return data[name]

        fmt = field("format")
        if fmt != _FORMAT:
            raise ConfigError(
                f"format must be {_FORMAT!r} (got {fmt!r}): this is not a prior saved by "
                "ConsistencyPrior.save"
            )
        version = field("version")
        if _whole(version) != _VERSION:
            raise ConfigError(
                f"version {version!r} is not supported (this adaptive reads version {_VERSION}); "
                "fit and save the prior again with this version of adaptive"
            )
        grid_raw = field("grid")
        grid = _whole(grid_raw)
        if grid is None or grid < 8:
            raise ConfigError(f"grid must be a whole number >= 8 (got {grid_raw!r})")
        pseudo = field("pseudo_count")
        if not (_is_number(pseudo) and math.isfinite(pseudo) and pseudo > 0):
            raise ConfigError(f"pseudo_count must be a finite number > 0 (got {pseudo!r})")
        weights = _weights(field("weights"), grid)
        counts = _counts(field("counts"))
        half_life: Any = data.get("half_life")
        if half_life is not None and not (
            _is_number(half_life) and math.isfinite(half_life) and half_life >= 1
        ):
            raise ConfigError(f"half_life must be a number >= 1 or null (got {half_life!r})")
        prior = cls(grid, float(pseudo), None if half_life is None else float(half_life))
        prior.weights = weights
        prior.counts = counts
        prior.recency = _recency(data.get("recency"), counts)
        prior._invalidate()
        return prior

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the prior to `path` as JSON (UTF-8); read it back with `load`.

        Raises:
            ConfigError: The file cannot be written (the message names the path).
        """
        data = self.to_dict()
        _weights(data["weights"], len(self.d))  # never write a file that `load` would refuse
        text = json.dumps(data, allow_nan=False) + "\n"
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot save the prior to {os.fspath(path)}: {exc.strerror or exc}; "
                "check that the folder exists and is writable"
            ) from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConsistencyPrior:
        """Read a prior written by `save`.

        Example:
            `Client(endpoint, prior=ConsistencyPrior.load("prior.json"))`

        Raises:
            ConfigError: The file is missing or unreadable, is not valid JSON, or holds an
                invalid prior (the message names the path and the problem).
        """
        where = os.fspath(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"{where}: no such file; fit and save a prior first (ConsistencyPrior.save, "
                "or python -m adaptive calibrate LOGS.jsonl --out PATH)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the prior ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not UTF-8 text; a saved prior is a JSON file") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                "save the prior again with ConsistencyPrior.save"
            ) from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def __repr__(self) -> str:
        mean_d = float(self.weights @ self.d)
        return f"ConsistencyPrior(questions={sum(self.counts.values())}, mean_dominance={mean_d:.3f})"


# -- validation of saved priors -------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> int | None:
    """`value` as an int if it is a whole number (3 or 3.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _weights(raw: Any, grid: int) -> NDArray[np.float64]:
    if not isinstance(raw, list | tuple) or len(raw) != grid:
        got = f"{len(raw)} items" if isinstance(raw, list | tuple) else type(raw).__name__
        raise ConfigError(f"weights must be a list of grid={grid} numbers, one per grid point (got {got})")
    for i, w in enumerate(raw):
        if not (_is_number(w) and math.isfinite(w) and w >= 0):
            raise ConfigError(f"weights[{i}] must be a finite number >= 0 (got {w!r})")
    weights = np.array(raw, dtype=np.float64)
    total = sum(float(w) for w in raw)  # plain floats: an overflow gives inf, not a warning
    if not (math.isfinite(total) and total > 0):
        raise ConfigError(
            f"weights must have a positive, finite sum (got {total}); give at least one weight > 0"
        )
    # Rescale only weights that are really off: dividing weights that already sum to 1 up
    # to rounding would change their last bits, and a round trip must be exact.
    if abs(total - 1.0) > 1e-9:
        weights = weights / total
    return weights


def _recency(raw: Any, counts: Counter[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """The saved recency weights, one per counts row (absent: each row at its count)."""
    if raw is None:
        return {k: float(n) for k, n in counts.items()}
    if not isinstance(raw, list | tuple) or len(raw) != len(counts):
        raise ConfigError(
            f"recency must be a list of {len(counts)} numbers, one per counts row; drop it to weigh "
            "every logged question the same"
        )
    for i, w in enumerate(raw):
        if not (_is_number(w) and math.isfinite(w) and w >= 0):
            raise ConfigError(f"recency[{i}] must be a finite number >= 0 (got {w!r})")
    return {k: float(w) for k, w in zip(counts, raw, strict=True)}


def _counts(raw: Any) -> Counter[tuple[int, int]]:
    if not isinstance(raw, list | tuple):
        raise ConfigError(
            f"counts must be a list of [v1, v2, n] rows (got {type(raw).__name__}); give [] for no logs"
        )
    counts: Counter[tuple[int, int]] = Counter()
    for i, row in enumerate(raw):
        values = [_whole(x) for x in row] if isinstance(row, list | tuple) and len(row) == 3 else []
        v1, v2, n = values if len(values) == 3 else (None, None, None)
        if v1 is None or v2 is None or n is None or not (v1 >= v2 >= 0) or n < 1:
            raise ConfigError(
                f"counts[{i}] must be three whole numbers [v1, v2, n]: the leader's and the "
                f"runner-up's votes with v1 >= v2 >= 0, and n >= 1 questions (got {row!r})"
            )
        if v1 + v2 < 2:
            raise ConfigError(
                f"counts[{i}] has fewer than two votes (got {row!r}); such questions carry no "
                "information, drop the row"
            )
        counts[(v1, v2)] += n
    return counts
