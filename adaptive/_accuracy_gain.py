"""The marginal gain measured in expected accuracy, reading vote shares as calibrated.

The "unlimited" and "budget" gain targets value a sample by how much it raises P(our pick is
the answer some vote would give), and count every disagreement with that vote as a full
error. On a near-even split that is the wrong currency: when the leader and the runner-up
each draw about half the votes, each is about as likely to be the right answer, so settling
which of them the vote favours is worth little accuracy, however many samples it would take.
Those are the hard questions, whose samples are also the longest.

Here (`ControllerConfig(gain_target="accuracy")`) an answer's chance of being right is read as
its long-run share q of the votes between the two leading answers (calibrated votes, up to a
common factor: the chance that either of the two is right). Picking the leader now is worth
E[q | votes] under the consistency prior; after k more votes we would pick whichever side
then has the higher posterior mean, worth E[max(q, 1 - q) | those votes]. The gain is the
best of these rises per extra sample over k = 1..`remaining` (the call's `State.draws_left`,
capped at `MAX_LOOKAHEAD`; `ControllerConfig.gain_horizon` when the call has no bound):

    gain = max_k ( E[max(E[q | votes + k], 1 - E[q | votes + k])] - E[q | votes] ) / k

A clear lead that is in doubt only for want of samples (2-1) is worth sampling; a split that
stays even (10-9) is not, because both picks are about as good. Because the gain is in units
of accuracy, `low_marginal_gain(value_usd=...)` compares like with like: expected rise in the
chance of a right answer times what a right answer is worth, against the next batch's cost.

Calibration checked on the recorded files (full 40-sample votes, questions with two or more
answers, binned by the leader's share q of the top two): P(leader right) - P(runner-up right)
rises with q as 2q - 1 does, from near 0 at q < 0.6 (0.06, 0.03, 0.00 on the last-letters,
GSM8K and simulator files) to 0.71-0.95 at q > 0.9. Nothing is fitted to them; the model
only reads the prior that the controller already learns.

Measured by `benchmarks/replay.py` (20 shuffles, `--gain-target accuracy --min-gain G`,
`latency="cheap"` sizing; accuracy @ mean samples; last letters with its reference rule
`=letters`; sim: `benchmarks/sim_record.py`, 400 questions x 40 samples, hard at `--skew 0.5`)::

    run                                 budget, 0.001  accuracy, .0002  accuracy, .0005  AC-Beta-0.95
    GSM8K, full file                    .9413@4.66     .9418@4.62       .9414@4.22       .9419@6.29
    last letters, full file             .8300@4.79     .8299@4.68       .8290@4.22       .8313@6.51
    GSM8K, --hardest 100, adversarial   .6275@24.95    .6310@20.67      .6330@16.72      .6255@25.18
    last letters, --hardest 100, adv.   .4675@15.45    .4645@12.72      .4595@10.06      .4665@15.57
    GSM8K, --questions 30, random       .9583@4.58     .9567@5.00       .9567@4.05       .9600@5.59
    GSM8K, --questions 30, adversarial  .9583@4.92     .9567@5.20       .9567@4.25       .9600@5.59
    last letters, --questions 30, rnd   .8400@5.56     .8417@5.62       .8417@4.44       .8450@6.84
    last letters, --questions 30, adv.  .8417@6.01     .8417@5.76       .8417@4.67       .8450@6.84
    simulator, hard mix                 .7927@8.91     .7923@9.03       .7921@7.59       .7927@11.08
    simulator, demo mix                 .9137@5.85     .9129@5.76       .9124@4.98       .9141@7.33

On the hardest questions, where samples are dearest, it spends 17-18% fewer samples than the
budget target at 0.0002 (33-35% at 0.0005) for +0.35 and -0.30 points; elsewhere it is within
0.1 point of it. Where it loses is the even splits the budget target samples to the end and
happens to land right (GSM8K's 30-question runs: one question-run of 600 each, at every
min_gain tried, 0.0002-0.0007). At 0.0005 the hardest last-letters questions lose 0.8 points
against the budget target and the full last-letters file 0.1, for samples ratios against
AC-Beta-0.95 of 1.49x and 1.54x on the full files; at 0.0007 the full GSM8K file reaches 1.53x
holding its floor and last letters falls 0.05 points under its own; at the strategy's default
0.001 the hardest last-letters questions lose 1.6 points (.4515 at 7.13 samples). So it is an
option, not the default: it trades accuracy on near-even splits, which the default is built
to protect, for dollars on hard traffic.

Pure: same arguments, same answer (the only state kept is a cache tied to the prior's current
fit).
"""

from __future__ import annotations

import weakref

import numpy as np
from numpy.typing import NDArray

from ._budget_gain import GainCache, binom_row, cached_gain, check_counts
from ._posterior import ConsistencyPrior

__all__ = ["accuracy_gain_per_sample", "expected_share"]

# Per prior: the moment table the cached values were computed from, and the values. A refit
# replaces the table, which empties the cache.
_CACHE: GainCache = weakref.WeakKeyDictionary()


def expected_share(prior: ConsistencyPrior, v1: int, v2: int) -> float:
    """E[q | v1, v2]: the leader's expected long-run share of the two-way votes.

    Under the prior, q = d (the leader dominant) or 1 - d (the runner-up dominant), each
    weighted by its likelihood; uniform prior: (v1 + 1) / (v1 + v2 + 2), Laplace's rule.

    Raises:
        ConfigError: v1 < v2 or a negative count.
    """
    check_counts(v1, v2)
    m = prior._moments(v1 + v2 + 2)
    z = float(m[v1, v2] + m[v2, v1])
    if not z > 0:  # underflow far out in the tails: the leader's share is the dominant one
        return float(prior.d[-1])
    return float(m[v1 + 1, v2] + m[v2, v1 + 1]) / z


def accuracy_gain_per_sample(prior: ConsistencyPrior, v1: int, v2: int, *, remaining: int) -> float:
    """The best expected rise in accuracy per extra sample, with vote shares read as calibrated.

    Args:
        prior: The consistency prior (uniform: AC's Beta model).
        v1: The leader's votes.
        v2: The runner-up's votes (v2 <= v1).
        remaining: Samples that may still be drawn; 0 or fewer: nothing left to gain. Past
            `MAX_LOOKAHEAD` (the budget target's, 64) only that many are looked at: a lead
            still in doubt after 64 more votes is a near-even split, worth little here.

    Returns:
        max over k = 1..remaining of (E[max(m_k, 1 - m_k)] - E[q]) / k, m_k the leader's
        posterior mean share after k more two-way votes; 0 with no votes yet.

    Raises:
        ConfigError: v1 < v2 or a negative count.
    """

    def compute(table: NDArray[np.float64], r: int) -> float:
        z = float(table[v1, v2] + table[v2, v1])
        share = float(table[v1 + 1, v2] + table[v2, v1 + 1])  # E[q] * z
        now = max(share, z - share)
        best = 0.0
        for k in range(1, r + 1):
            i = np.arange(k + 1)
            a, b = v1 + i, v2 + k - i
            # Per outcome (i more for the leader): its prior mass and the leader's share times it.
            mass = table[a, b] + table[b, a]
            lead = table[a + 1, b] + table[b, a + 1]
            after = float(binom_row(k) @ np.maximum(lead, mass - lead))
            best = max(best, (after - now) / (z * k))
        return best

    # A lead the rest cannot overturn can still be worth votes here: accuracy, not the
    # budget's majority, is the target.
    return cached_gain(_CACHE, prior, v1, v2, remaining, compute, pad=2, lead_settles=False)
