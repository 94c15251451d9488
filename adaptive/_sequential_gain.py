"""The marginal gain of the best way to go on, over every stopping rule, not only fixed sizes.

The "budget" gain (`adaptive._budget_gain`) values going on by the best *fixed-size*
continuation: k more samples whatever they say, for the best k. A controller does not go on
like that: it looks at every vote and stops as soon as the rest is not worth it. Here
(`ControllerConfig(gain_target="sequential")`) the same target, P(our pick is the majority
once the call's remaining samples are in), is valued over every *stopping rule* that reads the
votes as they come, under the same two-answer consistency prior:

    gain(s) = sup over stopping times T >= 1 of (E[P(right) at T] - P(right) at s) / E[T]

the most expected rise per expected sample any way of going on can buy. It is at least the
budget gain (a fixed k is one stopping time), and it is exact for what `low_marginal_gain`
does with it: going on from s is worth a price of c accuracy per sample, for some rule, if and
only if gain(s) > c; so `low_marginal_gain(min_gain=c)` stops exactly where backward
induction at a cost of c per sample stops (the Bayes-optimal stopping rule under the prior).

It is computed by Dinkelbach's iteration: at a trial price c, backward induction over the
vote states up to the budget's end finds the best rule and its expected rise A and length B;
the next price is A / B, which rises to the supremum in a few steps (it stops when the price
no longer rises).

Measured by `benchmarks/replay.py` (20 shuffles, `--gain-target sequential --min-gain C`,
`latency="cheap"` sizing; accuracy @ mean samples; last letters with its reference rule
`=letters`; sim: `benchmarks/sim_record.py`, 400 questions x 40 samples, hard at `--skew 0.5`)::

    run                                 default (budget, .001)  sequential, .008  AC-Beta-0.95
    GSM8K, full file                    .9413@4.66              .9409@4.17        .9419@6.29
    last letters, full file             .8300@4.79              .8297@4.39        .8313@6.51
    GSM8K, --hardest 100, adversarial   .6275@24.95             .6310@20.89       .6255@25.18
    last letters, --hardest 100, adv.   .4675@15.45             .4645@12.29       .4665@15.57
    GSM8K, --questions 30, random       .9583@4.58              .9567@4.29        .9600@5.59
    GSM8K, --questions 30, adversarial  .9583@4.92              .9567@4.46        .9600@5.59
    last letters, --questions 30, rnd   .8400@5.56              .8417@4.84        .8450@6.84
    last letters, --questions 30, adv.  .8417@6.01              .8417@5.18        .8450@6.84
    simulator, hard mix                 .7927@8.91              .7923@7.98        .7927@11.08
    simulator, demo mix                 .9137@5.85              .9126@5.51        .9141@7.33

    full files at other prices          .004: GSM8K .9415@4.83, last letters .8305@5.03
                                        .006: GSM8K .9418@4.65, last letters .8298@4.73

At 0.008 it takes 1.51x (GSM8K) and 1.48x (last letters) fewer samples than AC-Beta-0.95 on
the full files (the budget target at its default: 1.35x and 1.36x) and 1.39x fewer tokens on
the simulator's hard mix (1.24x), holding the accuracy floor of min(SC@40, AC) - 0.2 points
everywhere but GSM8K's 30-question runs, which it misses by one question-run of 600 (two
losses against AC, both 11-6 splits with a third answer stopped at 18 and 22 samples that a
full vote settles right; `benchmarks/stop_diagnostics.py --gain-target sequential --min-gain
0.008`). At equal samples its frontier is ahead of the budget target's by about 0.05 point on
both full files (the budget target's own sweep: last letters .8298@4.52, .8276@4.09). It is an
option, not the default: the price is a constant, and 0.008 sits just under a cliff (at 0.010
a 2-0 lead becomes a stop under the learned prior: on last letters 68% of calls end at 2
samples, against 4% at 0.008, and accuracy falls to .8264@3.34, under its floor), and where
that cliff lies moves with how often the traffic's samples agree. It is also slower to replay
(about 70 s for last letters' 500 questions x 20 shuffles, against 13 s for the budget
target; a decision takes about half a millisecond).

Pure: same arguments, same answer (the only state kept is a cache tied to the prior's current
fit).
"""

from __future__ import annotations

import weakref

import numpy as np
from numpy.typing import NDArray

from ._budget_gain import GainCache, cached_gain, fit_cache
from ._posterior import ConsistencyPrior

__all__ = ["sequential_gain_per_sample"]

_CACHE: GainCache = weakref.WeakKeyDictionary()

# Per prior: the rows of `_lattice` for each budget end, under the same fit.
_Rows = tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]
_ROWS: weakref.WeakKeyDictionary[ConsistencyPrior, tuple[NDArray[np.float64], dict[int, _Rows]]] = (
    weakref.WeakKeyDictionary()
)

#: Dinkelbach steps at most (from the trial prices' best it settles in one or two more; the
#: cap only guards against a price that creeps up by rounding).
_MAX_STEPS = 60


def _lattice(table: NDArray[np.float64], end: int) -> _Rows:
    """Per number of votes m = 0..end: P(the next vote is x's) and P(right) if we stop there.

    Index x of row m is the state with x votes to one answer and m - x to the other. "Right" is
    agreeing with the majority once `end` votes are in, a tie half right. Any call whose
    budget ends at `end` reads its own states off these rows.
    """
    ups: list[NDArray[np.float64]] = []
    for m in range(end):
        x = np.arange(m + 1)
        y = m - x
        z = table[x, y] + table[y, x]
        up = table[x + 1, y] + table[y, x + 1]
        # Far out in the tails both underflow: such states are never reached, any split will do.
        ups.append(np.divide(up, z, out=np.full(m + 1, 0.5), where=z > 0))
    x = np.arange(end + 1)
    win = np.where(x > end - x, 1.0, np.where(2 * x == end, 0.5, 0.0))
    rights: list[NDArray[np.float64]] = [np.maximum(win, 1.0 - win)]
    for m in range(end - 1, -1, -1):
        win = ups[m] * win[1:] + (1.0 - ups[m]) * win[:-1]
        rights.append(np.maximum(win, 1.0 - win))
    rights.reverse()
    return ups, rights


def _best_rules(
    ups: list[NDArray[np.float64]], rights: list[NDArray[np.float64]], prices: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(E[P(right) at T], E[T]) of the best stopping rule T >= 1 at each price per sample.

    `ups` and `rights` are the call's own rows (row j: j votes after now, index i: i of them
    to the leader); `prices` a column, one row of the answer per price.
    """
    r = len(ups)
    # Only the value (E[P(right) at T] - price * E[T]) and E[T] are carried back: the reward
    # at the end is value + price * length, two fewer arrays per step on this hot path.
    value = np.broadcast_to(rights[r], (len(prices), r + 1))
    length = np.zeros_like(value)
    for m in range(r - 1, -1, -1):
        p = ups[m]
        low, low_length = value[:, :-1], length[:, :-1]
        on = low + p * (value[:, 1:] - low) - prices
        on_length = low_length + p * (length[:, 1:] - low_length) + 1.0
        if m == 0:  # T >= 1: the first step is taken, whatever it is worth
            return on[:, 0] + prices[:, 0] * on_length[:, 0], on_length[:, 0]
        go = on > rights[m]
        value = np.where(go, on, rights[m])
        length = np.where(go, on_length, 0.0)
    raise AssertionError("unreachable: r >= 1")


#: Trial prices for the first pass: the best of their rules is where Dinkelbach's iteration
#: starts (any rule's ratio is a lower bound), which leaves it one or two steps to go.
_TRIAL_PRICES = np.geomspace(1e-5, 0.5, 12)[:, None]


def sequential_gain_per_sample(prior: ConsistencyPrior, v1: int, v2: int, *, remaining: int) -> float:
    """The most expected rise per expected sample in P(our pick is the budget's majority).

    Over every stopping rule that reads the votes as they come (two-way votes, as in the budget
    gain: third answers and abstentions are not counted; a final tie is half right).

    Args:
        prior: The consistency prior the votes are read under.
        v1: The leader's votes.
        v2: The runner-up's votes (v2 <= v1).
        remaining: Samples the call may still draw (`State.draws_left`), looked at up to
            `MAX_LOOKAHEAD`, as for `budget_gain_per_sample`.

    Returns:
        sup over stopping times T >= 1 of (E[P(right) at T] - P(right) now) / E[T]; 0 when
        nothing can raise it.

    Raises:
        ConfigError: v1 < v2 or a negative count.
    """

    def compute(table: NDArray[np.float64], r: int) -> float:
        n = v1 + v2
        rows = fit_cache(_ROWS, prior, table)
        full = rows.get(n + r)
        if full is None:
            full = rows[n + r] = _lattice(table, n + r)
        # The call's own rows: j votes after now, i of them to the leader.
        ups = [full[0][n + j][v1 : v1 + j + 1] for j in range(r)]
        rights = [full[1][n + j][v1 : v1 + j + 1] for j in range(r + 1)]
        now = float(rights[0][0])
        rewards, lengths = _best_rules(ups, rights, _TRIAL_PRICES)
        price = max(0.0, float(((rewards - now) / lengths).max()))
        for _ in range(_MAX_STEPS):
            reward, length = _best_rules(ups, rights, np.array([[price]]))
            better = (float(reward[0]) - now) / float(length[0])
            if not better > price:
                break
            price = better
        return price

    # As for the budget gain, a lead the rest cannot overturn is worth nothing.
    return cached_gain(_CACHE, prior, v1, v2, remaining, compute)
