"""The replay benchmark's hindsight bound, checked against brute force, and the benchmark itself."""

from __future__ import annotations

import itertools
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import replay
from _bound import (
    BoundPoint,
    CountPaths,
    best_rule,
    count_paths,
    fewest_samples,
    held_out_bound,
    hull_at,
    vote_count_bound,
)

# Three questions, four samples each: an easy one, a split one whose majority is wrong, one
# with an abstention.
QUESTIONS: list[tuple[list[str | None], str]] = [
    (["a", "a", "a", "b"], "a"),
    (["x", "y", "y", "x"], "x"),
    (["c", None, "d", "c"], "c"),
]


def every_order() -> CountPaths:
    paths = []
    for answers, gold in QUESTIONS:
        for order in itertools.permutations(range(len(answers))):
            drawn = [answers[i] for i in order]
            paths.append((drawn, [10 * (i + 1) for i in order], gold))
    return count_paths(paths)


def score(cp: CountPaths, stop: np.ndarray, cost: float, reward: np.ndarray) -> tuple[float, float]:
    halt = np.where(cp.states >= 0, stop[np.maximum(cp.states, 0)], False)
    at = np.argmax(halt, axis=1)
    rows = np.arange(len(at))
    return float(reward[rows, at].mean() - cost * (at + 1).mean()), float((at + 1).mean())


@pytest.mark.parametrize("reward", ["gold", "majority"])
@pytest.mark.parametrize("cost", [0.0, 0.01, 0.05, 0.2, 1.0])
def test_the_bound_is_the_best_of_every_vote_count_rule(reward: str, cost: float) -> None:
    cp = every_order()
    target = cp.gold if reward == "gold" else cp.majority
    free = np.flatnonzero(~cp.final)
    assert 4 <= len(free) <= 14  # small enough to try every rule
    best = -np.inf
    for bits in itertools.product([False, True], repeat=len(free)):
        stop = cp.final.copy()
        stop[free] = bits
        best = max(best, score(cp, stop, cost, target)[0])
    rule = best_rule(cp, reward, cost)  # type: ignore[arg-type]
    assert score(cp, rule, cost, target)[0] == pytest.approx(best, abs=1e-12)
    (point,) = vote_count_bound(cp, reward, [cost])  # type: ignore[arg-type]
    assert point.mean_samples == score(cp, rule, cost, target)[1]


def test_the_bound_spans_from_one_sample_to_all() -> None:
    cp = every_order()
    free, dear = vote_count_bound(cp, "gold", [0.0, 10.0])
    assert dear.mean_samples == 1.0
    # With sampling free, stopping at the end is always open: never worse than the full vote.
    full_vote = float(cp.gold[np.arange(cp.states.shape[0]), 3].mean())
    assert free.accuracy >= full_vote
    assert free.accuracy == pytest.approx(2 / 3 + 1 / 3 * 0.5)  # the split question: stop when "x" leads
    assert isinstance(free, BoundPoint) and free.mean_tokens > dear.mean_tokens


def every_order_twice() -> tuple[CountPaths, list[int]]:
    """Every order of every question, each question once in fold 0 and once in fold 1."""
    paths, folds = [], []
    for fold in (0, 1):
        for answers, gold in QUESTIONS:
            for order in itertools.permutations(range(len(answers))):
                paths.append(([answers[i] for i in order], [10 * (i + 1) for i in order], gold))
                folds.append(fold)
    return count_paths(paths), folds


@pytest.mark.parametrize("cost", [0.0, 0.01, 0.05, 0.2, 1.0])
def test_held_out_equals_in_sample_when_the_folds_hold_the_same_questions(cost: float) -> None:
    cp, folds = every_order_twice()
    (held,) = held_out_bound(cp, folds, [cost])
    # Each fold's rule is fitted on a copy of the same paths: the in-sample rule of one copy
    # (`every_order` numbers the states in the same order, so the sums are the same too).
    (fitted,) = vote_count_bound(every_order(), "majority", [cost])
    assert (held.mean_samples, held.accuracy, held.mean_tokens) == pytest.approx(
        (fitted.mean_samples, fitted.accuracy, fitted.mean_tokens)
    )


def test_held_out_scores_each_fold_with_the_rule_learned_on_the_others() -> None:
    # Fold 0: a question whose majority is "a" whatever the order; fold 1: one split 2-2,
    # where the first answer seen is the whole vote's leader (ties go to the first seen).
    easy = (["a", "a", "a", "a"], "a")
    split = (["x", "y", "y", "x"], "y")
    paths, folds = [], []
    for fold, (answers, gold) in enumerate((easy, split)):
        for order in itertools.permutations(range(4)):
            paths.append(([answers[i] for i in order], [1, 1, 1, 1], gold))
            folds.append(fold)
    cp = count_paths(paths)
    (held,) = held_out_bound(cp, folds, [0.01])
    # Learned on the easy question alone, a rule stops at its first sample. That state is
    # also the split's first state: the split question stops at one sample and is right
    # exactly when "y" came first (half of the orders). Learned on the split alone, the
    # easy question's first state (1 vote) is the split's too, and there the first answer
    # seen already is the whole vote's leader: stop. So every path stops at one sample.
    assert held.mean_samples == 1.0
    assert held.accuracy == pytest.approx((1.0 + 0.5) / 2)
    # In sample, the rule is the same (stopping at one sample is optimal for both questions).
    (fitted,) = vote_count_bound(cp, "majority", [0.01])
    assert fitted.mean_samples == 1.0


def test_held_out_bound_refuses_what_it_cannot_hold_out() -> None:
    cp = every_order()
    with pytest.raises(ValueError, match="two folds"):
        held_out_bound(cp, [0] * cp.states.shape[0], [0.01])
    with pytest.raises(ValueError, match="one fold per path"):
        held_out_bound(cp, [0, 1], [0.01])


def test_leaders_break_ties_to_the_first_seen() -> None:
    cp = count_paths([(["y", "x", "x", "y"], [1, 1, 1, 1], "y")])
    assert cp.gold[0].tolist() == [1.0, 1.0, 0.0, 1.0]  # y, tie (y first), x leads, tie (y first)
    assert cp.majority[0].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert cp.tokens[0].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_hull_reads_the_upper_concave_envelope() -> None:
    pts = [(1.0, 0.5), (2.0, 0.6), (3.0, 0.9), (4.0, 0.8), (5.0, 0.95)]
    assert hull_at(pts, 0.5) == 0.5  # below the cheapest: its accuracy
    assert hull_at(pts, 2.0) == pytest.approx(0.7)  # (2, 0.6) lies under the chord (1, 0.5)-(3, 0.9)
    assert hull_at(pts, 4.0) == pytest.approx(0.925)  # never falls: (4, 0.8) is dominated
    assert hull_at(pts, 9.0) == 0.95


def test_fewest_samples_reads_the_hull() -> None:
    pts = [(1.0, 0.5), (2.0, 0.6), (3.0, 0.9), (5.0, 0.95)]
    assert fewest_samples(pts, 0.7) == pytest.approx(2.0)  # on the chord (1, 0.5)-(3, 0.9)
    assert fewest_samples(pts, 0.4) == 1.0
    assert fewest_samples(pts, 0.96) is None


def test_replay_benchmark_reports_methods_frontiers_and_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(7)
    rows = []
    for i in range(40):
        gold = str(i)
        p_right = rng.choice([0.95, 0.8, 0.55, 0.35])
        samples = [
            {
                "answer": gold if rng.random() < p_right else str(rng.randrange(1000, 1003)),
                "completion_tokens": 50,
            }
            for _ in range(12)
        ]
        rows.append(json.dumps({"id": f"q{i}", "prompt": None, "gold": gold, "samples": samples}))
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(rows) + "\n")
    assert replay.main([str(path), "--shuffles", "2", "--check", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    res = out["files"][str(path)]
    assert set(res["methods"]) == {"SC@12", "AC-Beta-0.95", "ESC-5", "controller"}
    for m in res["methods"].values():
        assert set(m) == {"accuracy", "mean_samples", "mean_tokens", "reduction_vs_full"}
    assert set(res["frontier"]) == {"AC-Beta", "ESC", "controller"}
    assert res["full_stack_check"] == {"questions": 10, "mismatches": 0, "estimated_requests": 0}
    gold_bound = [(s, a) for s, a, _ in res["bound"]["gold"]]
    # Sampling everything is among the bound's choices, so it never falls below SC@N.
    assert max(a for _, a in gold_bound) >= res["methods"]["SC@12"]["accuracy"]
    assert min(s for s, _ in gold_bound) < 12
    assert res["bound_room"]["gold"]["SC@12"] >= 0
    within = res["within_0.2pt"]
    assert set(within) == {"AC-Beta", "ESC", "controller", "bound-gold", "bound-majority", "bound-held-out"}
    assert set(res["bound"]) == {"gold", "majority", "held-out"}
    assert isinstance(res["targets"]["samples"]["applies_held_out"], bool)
    # The gold bound reaches the full vote's accuracy, so it is within 0.2 points somewhere.
    assert within["bound-gold"] is not None and within["bound-gold"] <= 12
