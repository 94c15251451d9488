"""The marginal gain measured against the answer the whole budget would give.

`ConsistencyPrior.expected_gain` values a sample by how much it raises P(our pick is the
answer *unlimited* voting gives). With a finite budget of N samples that target can be out of
reach: on a near-even split (d close to 1/2) a few dozen more votes rarely settle which side
unlimited voting favours, so the gain per sample is small and `low_marginal_gain` stops, while
AC's rule keeps sampling to N and often ends on the right majority. `benchmarks/stop_diagnostics.py`
finds that nearly all of the controller's losses against AC-Beta-0.95 on the shared files are
such stops (at states like 5-1, 8-4 or 10-6, by the gain rule, with the uniform prior as with
the learned one).

Here the target is the majority of the votes once the budget is spent: the answer full
self-consistency (SC@N) gives, which is also what the benchmark's label-free bound aims at.
Sampling to the end of the budget then always reaches the target, so that continuation's value
is never out of reach. The value of going on is the best fixed-size continuation's: for every k
up to the remaining budget R, the expected rise in P(our pick after k more votes is the
majority after R more), divided by k.

Measured by `benchmarks/replay.py` (20 shuffles, default stop rule, `--gain-target budget`
against the default "unlimited" and AC-Beta-0.95)::

    run (accuracy @ samples)         GSM8K: budget / default / AC      last-letters: the same
    full file                        .9413@4.66 .9412@4.38 .9419@6.29  .8180@5.15 .8174@4.73 .8200@6.89
    --questions 30 --order random    .9583@4.58 .9567@4.29 .9600@5.59  .8267@5.83 .8250@4.92 .8300@7.16
    --questions 30 --order advers.   .9583@4.92 .9567@4.43 .9600@5.59  .8283@6.37 .8250@5.16 .8300@7.16
    --hardest 100 --order advers.    .6275@24.9 .6305@18.1 .6255@25.2  .4585@17.6 .4465@11.7 .4600@17.3

More accurate where the default loses to AC, at more samples: on the full files the two trace
nearly the same accuracy-samples frontier (`--sweep`), the budget target sitting further along
it (AC/controller samples 1.35x and 1.34x instead of 1.44x and 1.46x); on the hardest 100
last-letters questions its frontier is ahead by about 0.25 pt at 15 samples.

It is the default (`ControllerConfig(gain_target="budget")`, with the "multiway" posterior):
a budget SDK is judged by its worst calls, and these are the calls where the unlimited target
lost accuracy to AC (hard questions, few calls to learn from, hard ones first), at the price
of the samples ratio above. The bound is the call's own (`State.draws_left`: the strategy's
`max_samples` via `Plan.remaining`, `ControllerConfig.max_samples`, the samples budget); a
call with none measures the gain against unlimited voting.

Pure: same arguments, same answer (the only state kept is a cache tied to the prior's
current fit).
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from ._exceptions import ConfigError
from ._posterior import ConsistencyPrior

__all__ = ["budget_gain_per_sample"]

# Per prior: the moment table the cached values were computed from, and the values. A refit
# replaces the table, which empties the cache.
_K = tuple[int, int, int]
_Key = TypeVar("_Key")
_V = TypeVar("_V")
#: The store every gain keeps its values in: per prior, (moment table, {(v1, v2, r): gain}).
GainCache = weakref.WeakKeyDictionary[ConsistencyPrior, tuple[NDArray[np.float64], dict[_K, float]]]
_CACHE: GainCache = weakref.WeakKeyDictionary()


#: The most votes ahead the gain looks: a longer budget is valued as if it ended this many
#: votes on. The exact sum costs O(R^3) (about 9 s at R = 1,000 against 2 ms at 64), and a
#: lead still in doubt after 64 more votes is a near-even split, on which the majority after 64
#: and after 1,000 votes agree about as often as either agrees with a coin.
MAX_LOOKAHEAD = 64


def check_counts(v1: int, v2: int) -> None:
    """Refuse counts that are not a leader's and a runner-up's (ConfigError)."""
    if v2 < 0 or v1 < v2:
        raise ConfigError(f"need v1 >= v2 >= 0 (the leader's count first); got v1={v1}, v2={v2}")


def fit_cache(
    store: weakref.WeakKeyDictionary[ConsistencyPrior, tuple[NDArray[np.float64], dict[_Key, _V]]],
    prior: ConsistencyPrior,
    table: NDArray[np.float64],
) -> dict[_Key, _V]:
    """The values cached in `store` for `prior`'s current fit (`table`, its moment table).

    A refit replaces the table, so the values of an older fit are dropped, never returned.
    """
    entry = store.get(prior)
    if entry is None or entry[0] is not table:
        entry = (table, {})
        store[prior] = entry
    return entry[1]


def cached_gain(
    store: GainCache,
    prior: ConsistencyPrior,
    v1: int,
    v2: int,
    remaining: int,
    compute: Callable[[NDArray[np.float64], int], float],
    *,
    pad: int = 1,
    lead_settles: bool = True,
) -> float:
    """What the gains share: the counts checked, the trivial cases, the cache, the tails.

    `compute(table, r)` values the state with r = min(remaining, MAX_LOOKAHEAD) votes to come,
    from the prior's moment table (rows up to v1 + v2 + r + pad); it is called only when the
    state is in doubt and not yet cached under the current fit, and what it returns is
    clipped at 0. With `lead_settles`, a lead the remaining votes cannot overturn is worth
    nothing (at worst the budget ends on a tie, which either pick gets half right, so the
    leader is the best pick whatever comes).

    Raises:
        ConfigError: v1 < v2 or a negative count.
    """
    check_counts(v1, v2)
    if remaining <= 0 or v1 <= 0 or (lead_settles and v1 - v2 >= remaining):
        return 0.0
    r = min(remaining, MAX_LOOKAHEAD)
    table = prior._moments(v1 + v2 + r + pad)
    cache = fit_cache(store, prior, table)
    key = (v1, v2, r)
    hit = cache.get(key)
    if hit is None:
        # Both moments underflow far out in the tails: the leader is certain, nothing to gain.
        in_doubt = float(table[v1, v2] + table[v2, v1]) > 0
        hit = cache[key] = max(0.0, compute(table, r)) if in_doubt else 0.0
    return hit


@functools.cache
def binom_row(n: int) -> NDArray[np.float64]:
    """C(n, j) for j = 0..n (cached: the gains ask for the same rows over and over; read only)."""
    row = np.array([math.comb(n, j) for j in range(n + 1)], dtype=np.float64)
    row.flags.writeable = False
    return row


def budget_gain_per_sample(prior: ConsistencyPrior, v1: int, v2: int, *, remaining: int) -> float:
    """The best expected rise per extra sample in P(our pick is the majority at the budget's end).

    Two-way votes as in the rest of the model (third answers and abstentions are not
    counted). At the end a tie counts as half right for either pick (SC breaks it by which
    answer came first, which the counts do not say).

    Args:
        prior: The consistency prior (uniform: AC's Beta model).
        v1: The leader's votes.
        v2: The runner-up's votes (v2 <= v1).
        remaining: Samples left in the budget; 0 or fewer: nothing left to gain. Past
            `MAX_LOOKAHEAD` the target is the majority after that many more votes.

    Returns:
        max over k = 1..remaining of (P(right after k more) - P(right now)) / k, where
        "right" is agreeing with the majority after all `remaining` votes.

    Raises:
        ConfigError: v1 < v2 or a negative count.
    """

    def compute(table: NDArray[np.float64], r: int) -> float:
        t = np.arange(r + 1)
        a, b = v1 + t, v2 + r - t
        z = float(table[v1, v2] + table[v2, v1])
        # P(one particular order of the R votes with t to the leader), and who wins at the end.
        seq = (table[a, b] + table[b, a]) / z
        leader_wins = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
        win_a, win_b = seq * leader_wins, seq * (1.0 - leader_wins)

        def value(k: int) -> float:
            # Outcome i of the next k votes (C(k, i) orders), then j of the other R - k.
            rest = binom_row(r - k)
            pa = binom_row(k) * np.correlate(win_a, rest, "valid")  # [i] = sum_j rest[j] win_a[i + j]
            pb = binom_row(k) * np.correlate(win_b, rest, "valid")
            return float(np.maximum(pa, pb).sum())

        now = value(0)
        return max((value(k) - now) / k for k in range(1, r + 1))

    return cached_gain(_CACHE, prior, v1, v2, remaining, compute)
