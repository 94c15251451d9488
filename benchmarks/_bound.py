"""The best any vote-count stopping rule could do on a set of recorded samples, found in hindsight.

A stopping rule that reads only the votes (the sorted answer counts and the number of samples
without an answer) sees, after k samples, one of a small set of *count states*. Under random
order (each shuffle of a question's samples equally likely) the count state is a sufficient
statistic: every rule built on votes, whether AC's Beta rule, ESC's windows or our controller,
is a function of it. So the Bayes-optimal rule for the population of questions in a file is a
dynamic programme over count states, with the file's own shuffles as the transition model:

    V(s) = max(R(s), -cost + sum_s' P(s' | s) V(s'))

where R(s) is the reward of stopping in s. Two rewards are offered:

- ``"gold"``: the leader is the gold answer. Uses the labels, so no live system could learn it;
  it bounds what any vote-count rule can reach in accuracy.
- ``"majority"``: the leader is the majority of all of the question's samples. Label-free:
  the best a rule could learn from logs without gold answers.

Both are fitted in-sample on the very shuffles they are scored on, so they are optimistic
(rare states are over-fitted). They are a yardstick, never a method: a rule that beats the
``"gold"`` curve on the same shuffles has a bug. Sweeping the per-sample cost traces the
accuracy-against-mean-samples frontier; mixing two neighbouring policies at random reaches
any point on the straight line between them, so the curve is read through its upper hull.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BoundPoint",
    "CountPaths",
    "best_rule",
    "count_paths",
    "fewest_samples",
    "held_out_bound",
    "hull_at",
    "vote_count_bound",
]

Reward = Literal["gold", "majority"]


@dataclass
class CountPaths:
    """Every shuffle of every question, as a path through count states.

    Attributes:
        states: (paths, steps) state id after each sample; -1 past a path's end.
        gold: (paths, steps) 1.0 where the leader after that sample is the gold answer.
        majority: (paths, steps) 1.0 where it is the majority of all the question's samples.
        tokens: (paths, steps) completion tokens drawn up to and including that sample.
        final: (states,) True for states that end a path (no sample is left to draw).
    """

    states: NDArray[np.int64]
    gold: NDArray[np.float64]
    majority: NDArray[np.float64]
    tokens: NDArray[np.float64]
    final: NDArray[np.bool_]


@dataclass(frozen=True)
class BoundPoint:
    """One policy of the sweep: its per-sample cost and how it scores on the paths."""

    cost: float
    mean_samples: float
    accuracy: float
    mean_tokens: float


def _leaders(answers: Sequence[str | None]) -> list[str | None]:
    """The majority-vote leader after each sample: most votes, ties to the first seen."""
    counts: dict[str, int] = {}
    seen: dict[str, int] = {}
    leader: str | None = None
    out: list[str | None] = []
    for i, a in enumerate(answers):
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
            seen.setdefault(a, i)
            if leader is None:
                leader = a
            elif a != leader:
                c, lc = counts[a], counts[leader]
                if c > lc or (c == lc and seen[a] < seen[leader]):
                    leader = a
        out.append(leader)
    return out


def count_paths(paths: Sequence[tuple[Sequence[str | None], Sequence[int], str | None]]) -> CountPaths:
    """Turn (answers in drawn order, their tokens, gold) per shuffled question into count paths."""
    steps = max(len(a) for a, _, _ in paths)
    ids: dict[tuple[tuple[int, ...], int, bool], int] = {}
    states = np.full((len(paths), steps), -1, dtype=np.int64)
    gold = np.zeros((len(paths), steps))
    majority = np.zeros((len(paths), steps))
    tokens = np.zeros((len(paths), steps))
    for row, (answers, toks, g) in enumerate(paths):
        leaders = _leaders(answers)
        last = leaders[-1]
        counts: dict[str, int] = {}
        blank = 0
        for k, a in enumerate(answers):
            if a is None:
                blank += 1
            else:
                counts[a] = counts.get(a, 0) + 1
            key = (tuple(sorted(counts.values(), reverse=True)), blank, k == len(answers) - 1)
            states[row, k] = ids.setdefault(key, len(ids))
            lead = leaders[k]
            gold[row, k] = lead is not None and lead == g
            majority[row, k] = lead is not None and lead == last
        tokens[row, : len(answers)] = np.cumsum(np.asarray(toks, dtype=np.float64))
    final = np.zeros(len(ids), dtype=np.bool_)
    for (_, _, is_final), i in ids.items():
        final[i] = is_final
    return CountPaths(states, gold, majority, tokens, final)


def best_rule(cp: CountPaths, reward: Reward, cost: float, *, per_token: bool = False) -> NDArray[np.bool_]:
    """Stop (True) or go on in each state: backward induction over the empirical transitions.

    With `per_token`, `cost` is charged per completion token of the next sample (its length on
    each path, averaged over the paths through a state) instead of per sample.
    """
    return _policy(cp, cp.gold if reward == "gold" else cp.majority, cost, per_token=per_token)


def _policy(
    cp: CountPaths, reward: NDArray[np.float64], cost: float, *, per_token: bool = False
) -> NDArray[np.bool_]:
    n_states = len(cp.final)
    valid = cp.states >= 0
    visits = np.bincount(cp.states[valid], minlength=n_states).astype(np.float64)
    r = np.bincount(cp.states[valid], weights=reward[valid], minlength=n_states) / np.maximum(visits, 1)
    # Every transition s -> s' seen on a path, with how often.
    has_next = valid[:, :-1] & valid[:, 1:]
    src = cp.states[:, :-1][has_next]
    dst = cp.states[:, 1:][has_next]
    # What each transition costs: a flat cost per sample, or the next sample's own tokens.
    step = (np.diff(cp.tokens, axis=1)[has_next] * cost) if per_token else np.full(len(src), cost)
    out = np.bincount(src, minlength=n_states).astype(np.float64)
    depth = np.zeros(n_states, dtype=np.int64)
    depth[cp.states[valid]] = np.nonzero(valid)[1]
    value = r.copy()
    stop = np.ones(n_states, dtype=np.bool_)
    # States one sample deeper are settled first: a transition always adds one sample.
    order = np.argsort(-depth[src], kind="stable")
    src, dst, step = src[order], dst[order], step[order]
    bounds = np.append(np.searchsorted(-depth[src], np.arange(-depth.max(), 1)), len(src))
    for lo, hi in itertools.pairwise(bounds):
        if lo == hi:
            continue
        s, d = src[lo:hi], dst[lo:hi]
        cont = np.bincount(s, weights=value[d] - step[lo:hi], minlength=n_states)
        touched = np.unique(s)
        go_on = cont[touched] / out[touched]
        better = go_on > r[touched]
        value[touched] = np.where(better, go_on, r[touched])
        stop[touched] = ~better
    stop[cp.final] = True
    return stop


def _stops_at(cp: CountPaths, stop: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Per path, the step at which a policy stops: its first stopping state.

    Every path ends in a final state, and `_policy` stops in every final state, so each path
    has one.
    """
    halt = np.where(cp.states >= 0, stop[np.maximum(cp.states, 0)], False)
    return np.argmax(halt, axis=1).astype(np.int64)


def _point(cp: CountPaths, cost: float, at: NDArray[np.int64]) -> BoundPoint:
    rows = np.arange(cp.states.shape[0])
    return BoundPoint(
        cost=cost,
        mean_samples=float((at + 1).mean()),
        accuracy=float(cp.gold[rows, at].mean()),
        mean_tokens=float(cp.tokens[rows, at].mean()),
    )


def _rows(cp: CountPaths, keep: NDArray[np.bool_]) -> CountPaths:
    """The paths where `keep` is True, with the same state ids."""
    return CountPaths(cp.states[keep], cp.gold[keep], cp.majority[keep], cp.tokens[keep], cp.final)


def vote_count_bound(
    cp: CountPaths, reward: Reward, costs: Sequence[float], *, per_token: bool = False
) -> list[BoundPoint]:
    """The optimal vote-count rule for each per-sample cost, scored on the same paths.

    Accuracy is always against gold; `reward` only chooses what the rule maximises. With
    `per_token` each cost is per completion token (the bound on the tokens frontier).
    """
    target = cp.gold if reward == "gold" else cp.majority
    return [_point(cp, cost, _stops_at(cp, _policy(cp, target, cost, per_token=per_token))) for cost in costs]


def held_out_bound(
    cp: CountPaths, folds: Sequence[int], costs: Sequence[float], *, per_token: bool = False
) -> list[BoundPoint]:
    """The label-free rule learned from other questions' logs, scored on questions it never saw.

    Cross-fitting: the paths are split by `folds` (one fold number per path; give every
    shuffle of a question the same fold), and each fold is scored with the policy the DP
    finds on all the other folds' paths (reward ``"majority"``: no labels). It is what this
    rule, fitted on that many fully sampled, unlabelled calls, reaches on new ones: unlike
    `vote_count_bound` it is not flattered by over-fitting rare states, so the gap between
    the two measures that over-fitting. It is not a bound: a rule with a smoother model of
    the same votes can beat it (the controller's learned prior does on the full GSM8K file
    and on 30-question runs, where each state is seen too rarely to fit on its own). A
    state the other folds never reached stops.
    """
    fold = np.asarray(folds, dtype=np.int64)
    if fold.shape != (cp.states.shape[0],):
        raise ValueError(f"need one fold per path ({cp.states.shape[0]}), got {fold.shape}")
    names = np.unique(fold)
    if len(names) < 2:
        raise ValueError("need at least two folds to hold one out")
    points = []
    for cost in costs:
        at = np.zeros(len(fold), dtype=np.int64)
        for f in names:
            train = _rows(cp, fold != f)
            stop = _policy(train, train.majority, cost, per_token=per_token)
            test = fold == f
            at[test] = _stops_at(_rows(cp, test), stop)
        points.append(_point(cp, cost, at))
    return points


def hull_at(points: Sequence[tuple[float, float]], x: float) -> float:
    """Accuracy at mean samples x on the upper concave hull of (mean_samples, accuracy) points.

    Mixing two policies at random reaches every point between them, so the hull is reachable;
    a policy that spends less than x is allowed at x, so the hull never falls. Below the
    cheapest point the cheapest point's accuracy is returned (an upper bound there).
    """
    pts: list[tuple[float, float]] = []
    for p in sorted(set(points)):
        if not pts or p[1] > pts[-1][1]:
            pts.append(p)
    hull: list[tuple[float, float]] = []
    for p in pts:
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            # drop the middle point when it lies on or under the chord from hull[-2] to p
            if (y1 - y0) * (p[0] - x0) <= (p[1] - y0) * (x1 - x0):
                hull.pop()
            else:
                break
        hull.append(p)
    if x <= hull[0][0]:
        return hull[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(hull):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return hull[-1][1]


def fewest_samples(points: Sequence[tuple[float, float]], accuracy: float) -> float | None:
    """The fewest mean samples at which the upper hull of `points` reaches `accuracy` (None: never)."""
    lo, hi = min(x for x, _ in points), max(x for x, _ in points)
    if hull_at(points, hi) < accuracy:
        return None
    if hull_at(points, lo) >= accuracy:
        return lo
    for _ in range(60):  # the hull rises with x: bisect
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if hull_at(points, mid) >= accuracy else (mid, hi)
    return hi
