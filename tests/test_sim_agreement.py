"""The agreement statistics of benchmarks/sim_agreement.py, on small sets worked out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import sim_agreement
from sim_agreement import STATS, agreement_stats, distance

HAND: list[sim_agreement.Question] = [
    (["a", "a", "b"], "a"),  # right, first two agree and stay the majority
    (["b", "b", "c", "c", "c"], "c"),  # first two agree on a wrong answer the majority overturns
    ([None, "x"], "y"),  # an abstention first: no agreement; the majority (x) is wrong
    (["d", "e"], "d"),  # a tie goes to the first seen (d, right)
]


def test_statistics_in_recorded_order() -> None:
    stats = agreement_stats(HAND, shuffles=0)
    assert set(stats) == set(STATS)
    assert stats["single"] == 0.5
    assert stats["first2 agree"] == 0.5
    assert stats["agree wrong"] == 0.25
    assert stats["overturned"] == 0.5
    assert stats["majority wrong"] == 0.25
    assert stats["distinct"] == 7 / 4


def test_shuffles_average_over_orders_but_not_the_majority() -> None:
    unanimous = [(["k"] * 5, "k"), (["m"] * 3, "n")]
    stats = agreement_stats(unanimous, shuffles=7, seed=3)
    assert stats["single"] == 0.5 and stats["first2 agree"] == 1.0 and stats["agree wrong"] == 0.5
    assert stats["overturned"] == 0.0 and stats["majority wrong"] == 0.5 and stats["distinct"] == 1.0
    # The order-free statistics do not move with the shuffles; the others are averages of orders.
    shuffled = agreement_stats(HAND, shuffles=50, seed=1)
    assert shuffled["majority wrong"] == 0.25 and shuffled["distinct"] == 7 / 4
    # Two of q1's six orders start with "a", "a"; q2's first two agree in 4 of 10 pairs of positions.
    expected_agree = (1 / 3 + 4 / 10) / 4
    assert shuffled["first2 agree"] == pytest.approx(expected_agree, abs=0.05)
    assert shuffled != agreement_stats(HAND, shuffles=0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no questions"):
        agreement_stats([])
    with pytest.raises(ValueError, match="two answers"):
        agreement_stats([(["a"], "a")])


def test_distance_is_zero_between_the_real_files_and_grows_outside() -> None:
    low = dict.fromkeys(STATS, 0.2)
    high = dict.fromkeys(STATS, 0.4)
    assert distance(dict.fromkeys(STATS, 0.3), [low, high]) == 0.0
    assert distance(high, [low, high]) == 0.0
    near = distance({**high, "single": 0.5}, [low, high])
    far = distance({**high, "single": 0.7}, [low, high])
    assert near == pytest.approx((0.1 / 0.3) ** 2)
    assert far > near


def test_the_simulator_is_sampled_as_the_demo_samples() -> None:
    got = sim_agreement.sim_questions(3, 4)
    again = sim_agreement.sim_questions(3, 4)
    assert got == again  # seeded
    from adaptive.sim import demo_problems

    assert [gold for _, gold in got] == [p.answer for p in demo_problems(3)]
    assert all(len(answers) == 4 for answers, _ in got)
    # Another difficulty mix is another set of problems.
    assert [g for _, g in sim_agreement.sim_questions(3, 2, skew=0.5)] != [g for _, g in got]
