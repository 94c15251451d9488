"""The marginal gain of the best stopping rule, not only fixed sizes (adaptive._sequential_gain)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import pytest

# The budget target's tests' prior (20 unanimous questions and 10 near-even ones) and states.
from test_budget_gain import BRUTE_STATES, _fitted

from adaptive import ConfigError, ConsistencyPrior, ControllerConfig
from adaptive._budget_gain import MAX_LOOKAHEAD, budget_gain_per_sample
from adaptive._controller import Controller
from adaptive._sequential_gain import sequential_gain_per_sample

State2 = tuple[int, int]


def _model(
    prior: ConsistencyPrior, v1: int, v2: int, remaining: int
) -> tuple[Callable[[int, int], float], Callable[[int, int], float]]:
    """(P(next vote is x's | x, y), P(right if we stop at x, y)), straight from the grid prior."""
    w, d = prior.weights, prior.d
    end = v1 + v2 + remaining

    def order(a: int, b: int) -> float:  # P(one particular order), unnormalised
        return float(w @ (d**a * (1 - d) ** b + d**b * (1 - d) ** a))

    @functools.cache
    def up(x: int, y: int) -> float:
        return order(x + 1, y) / order(x, y)

    @functools.cache
    def right(x: int, y: int) -> float:
        win = 0.0
        for rest in itertools.product((0, 1), repeat=end - x - y):
            a = x + sum(rest)
            b = end - a
            win += order(a, b) / order(x, y) * (1.0 if a > b else 0.5 if a == b else 0.0)
        return max(win, 1.0 - win)

    return up, right


def _brute(prior: ConsistencyPrior, v1: int, v2: int, remaining: int) -> float:
    """sup over every stopping rule of (E[P(right) at T] - P(right) now) / E[T], by enumeration.

    Every rule that stops on the vote counts alone (a set of states to stop at; the budget's
    end always stops): given the prior the counts say all the votes do about what comes next,
    so the best rule for any price per sample is one of these, and so is the best ratio.
    """
    up, right = _model(prior, v1, v2, remaining)
    inner = [
        (v1 + i, v2 + m - i) for m in range(1, remaining) for i in range(m + 1)
    ]  # states a rule may stop at (not the first, T >= 1; not the end, which always stops)
    now = right(v1, v2)
    best = 0.0

    def rule(stop_at: set[State2]) -> tuple[float, float]:  # (E[P(right) at T], E[T])
        @functools.cache
        def walk(x: int, y: int) -> tuple[float, float]:
            if x + y == v1 + v2 + remaining or (x, y) in stop_at:
                return right(x, y), 0.0
            p = up(x, y)
            ra, la = walk(x + 1, y)
            rb, lb = walk(x, y + 1)
            return p * ra + (1 - p) * rb, 1.0 + p * la + (1 - p) * lb

        return walk(v1, v2)

    for stops in itertools.product((False, True), repeat=len(inner)):
        reward, length = rule({s for s, stop in zip(inner, stops, strict=True) if stop})
        best = max(best, (reward - now) / length)
    return best


# BRUTE_STATES with at most 4 votes to come: 2^14 rules each, at most.
SMALL = [s for s in BRUTE_STATES if s[2] <= 5] + [(2, 0, 5), (4, 2, 5)]


@pytest.mark.parametrize("prior", [ConsistencyPrior(), _fitted()], ids=["uniform", "fitted"])
@pytest.mark.parametrize("v1,v2,remaining", SMALL)
def test_gain_equals_the_best_of_every_stopping_rule(
    prior: ConsistencyPrior, v1: int, v2: int, remaining: int
) -> None:
    got = sequential_gain_per_sample(prior, v1, v2, remaining=remaining)
    assert got == pytest.approx(_brute(prior, v1, v2, remaining), abs=1e-12)


@pytest.mark.parametrize("prior", [ConsistencyPrior(), _fitted()], ids=["uniform", "fitted"])
def test_it_is_at_least_the_best_fixed_size_continuation(prior: ConsistencyPrior) -> None:
    # A fixed k is one stopping rule; looking at the votes as they come can only do better,
    # and does on every state that is in doubt with room to go on.
    for v1, v2, remaining in [*BRUTE_STATES, (2, 0, 38), (5, 1, 34), (8, 4, 28), (3, 0, 37)]:
        fixed = budget_gain_per_sample(prior, v1, v2, remaining=remaining)
        got = sequential_gain_per_sample(prior, v1, v2, remaining=remaining)
        assert got >= fixed - 1e-15
        if remaining >= 5 and fixed > 0:
            assert got > 1.5 * fixed, (v1, v2, remaining)


def _optimal_stops(prior: ConsistencyPrior, v1: int, v2: int, remaining: int, price: float) -> bool:
    """Whether backward induction at `price` per sample stops at (v1, v2) (by plain recursion)."""
    up, right = _model(prior, v1, v2, remaining)
    end = v1 + v2 + remaining
    memo: dict[State2, float] = {}

    def value(x: int, y: int) -> float:
        if x + y == end:
            return right(x, y)
        if (x, y) not in memo:
            on = -price + up(x, y) * value(x + 1, y) + (1 - up(x, y)) * value(x, y + 1)
            memo[(x, y)] = max(right(x, y), on)
        return memo[(x, y)]

    p = up(v1, v2)
    return not -price + p * value(v1 + 1, v2) + (1 - p) * value(v1, v2 + 1) > right(v1, v2)


@pytest.mark.parametrize("price", [0.001, 0.01, 0.05])
def test_stopping_below_a_min_gain_is_the_optimal_rule_at_that_price(price: float) -> None:
    # What `low_marginal_gain(min_gain=c)` does with this gain is what backward induction at a
    # cost of c per sample does, state by state.
    prior = _fitted()
    for v1, v2, remaining in [(1, 0, 6), (2, 0, 6), (2, 1, 7), (3, 1, 6), (4, 1, 7), (3, 3, 5)]:
        gain = sequential_gain_per_sample(prior, v1, v2, remaining=remaining)
        assert (gain < price) is _optimal_stops(prior, v1, v2, remaining, price), (v1, v2, remaining)


def test_nothing_to_gain_without_samples_or_votes_and_counts_are_checked() -> None:
    prior = ConsistencyPrior()
    assert sequential_gain_per_sample(prior, 3, 1, remaining=0) == 0.0
    assert sequential_gain_per_sample(prior, 0, 0, remaining=10) == 0.0
    assert sequential_gain_per_sample(prior, 9, 3, remaining=6) == 0.0  # 9-9 at worst
    assert sequential_gain_per_sample(prior, 9, 3, remaining=7) > 0.0
    with pytest.raises(ConfigError, match="v1 >= v2"):
        sequential_gain_per_sample(prior, 1, 2, remaining=5)


def test_a_long_budget_is_valued_at_the_lookahead_and_the_cache_follows_the_fit() -> None:
    prior = ConsistencyPrior()
    far = sequential_gain_per_sample(prior, 3, 1, remaining=1000)
    assert far == sequential_gain_per_sample(prior, 3, 1, remaining=MAX_LOOKAHEAD) > 0.0
    before = sequential_gain_per_sample(prior, 2, 0, remaining=20)
    prior.fit([(10, 0)] * 100)  # sure of itself now: two agreeing votes are nearly enough
    after = sequential_gain_per_sample(prior, 2, 0, remaining=20)
    assert after < before / 2
    assert after == sequential_gain_per_sample(prior.copy(), 2, 0, remaining=20)


def test_the_controller_reads_it_with_a_bound_and_falls_back_without_one() -> None:
    prior = _fitted()
    seq = Controller(ControllerConfig(gain_target="sequential"), prior)
    unlimited = Controller(ControllerConfig(gain_target="unlimited"), prior)
    votes = {"a": 5, "b": 1}
    bounded = seq.assess(votes, 0, 34)[1]
    assert bounded is not None
    assert bounded() == sequential_gain_per_sample(prior, 5, 1, remaining=34)
    free, reference = seq.assess(votes)[1], unlimited.assess(votes)[1]
    assert free is not None and reference is not None
    assert free() == reference()  # no bound: no budget majority to aim at


@pytest.mark.asyncio
async def test_a_call_through_the_client_stops_on_the_sequential_gain_it_reports() -> None:
    # A split question through the whole client: the receipt's stop names the gain rule, with
    # the gain it read, which is this module's value at the call's final vote state.
    from adaptive_strategies import AdaptiveConsistency
    from test_self_consistency import by_seed, endpoint, run

    answers = "AABABAAABAAAABAAAAAAABAA"
    results = {}
    for target in ("budget", "sequential"):
        config = ControllerConfig(batch_as_n=False, gain_target=target, calibrate=False)
        ep = endpoint(by_seed(lambda s: answers[s % len(answers)]))
        strategy = AdaptiveConsistency(max_samples=24, min_gain=0.004, latency="cheap")
        results[target] = await run(ep, strategy, controller=config)
    seq = results["sequential"]
    assert seq.stop_reason == "low_gain" and seq.stop is not None and seq.stop.value is not None
    a, b = sorted(seq.votes.values(), reverse=True) + [0] * (2 - len(seq.votes))
    expected = sequential_gain_per_sample(ConsistencyPrior(), a, b, remaining=24 - a - b)
    assert seq.stop.value == pytest.approx(expected, abs=1e-15)
    assert expected < 0.004
    # At the same min_gain the budget target's smaller gains stop sooner (8 samples to 12).
    assert results["budget"].generated < seq.generated
