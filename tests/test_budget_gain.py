"""The marginal gain against the majority at the budget's end (adaptive._budget_gain)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from adaptive_strategies import AdaptiveConsistency

from adaptive import ConfigError, ConsistencyPrior, ControllerConfig, State
from adaptive._budget_gain import budget_gain_per_sample
from adaptive._controller import Controller
from adaptive._posterior import beta_confidence
from adaptive._value import expected_gain_per_sample

MAX = 40
RULE = AdaptiveConsistency(max_samples=MAX).default_stop()


def _fitted() -> ConsistencyPrior:
    prior = ConsistencyPrior()
    prior.fit([(10, 0)] * 20 + [(5, 4)] * 10)
    return prior


# Vote states small enough to check a gain against enumerating every continuation (the
# accuracy gain's tests check theirs on the same states).
BRUTE_STATES = [(1, 0, 3), (2, 1, 5), (3, 3, 4), (5, 1, 6), (2, 0, 7), (4, 4, 1)]


def _brute(prior: ConsistencyPrior, v1: int, v2: int, remaining: int) -> float:
    """The same quantity by enumerating every order of the remaining votes."""
    w, d = prior.weights, prior.d

    def order(a: int, b: int) -> float:  # P(one particular order), unnormalised
        return float(w @ (d**a * (1 - d) ** b + d**b * (1 - d) ** a))

    z = order(v1, v2)

    def value(k: int) -> float:
        total = 0.0
        for first in itertools.product((0, 1), repeat=k):
            pa = pb = 0.0
            for rest in itertools.product((0, 1), repeat=remaining - k):
                a = v1 + sum(first) + sum(rest)
                b = v1 + v2 + remaining - a
                p = order(a, b) / z
                pa += p * (1.0 if a > b else 0.5 if a == b else 0.0)
                pb += p * (1.0 if b > a else 0.5 if a == b else 0.0)
            total += max(pa, pb)
        return total

    now = value(0)
    return max(0.0, max((value(k) - now) / k for k in range(1, remaining + 1)))


@pytest.mark.parametrize("prior", [ConsistencyPrior(), _fitted()], ids=["uniform", "fitted"])
@pytest.mark.parametrize("v1,v2,remaining", BRUTE_STATES)
def test_gain_equals_enumerating_every_continuation(
    prior: ConsistencyPrior, v1: int, v2: int, remaining: int
) -> None:
    got = budget_gain_per_sample(prior, v1, v2, remaining=remaining)
    assert got == pytest.approx(_brute(prior, v1, v2, remaining), abs=1e-12)


def test_a_lead_the_budget_cannot_overturn_is_worth_nothing() -> None:
    prior = ConsistencyPrior()
    # 20-18 with 2 left: at worst a tie, which either pick gets half right whatever comes.
    assert budget_gain_per_sample(prior, 20, 18, remaining=2) == 0.0
    assert budget_gain_per_sample(prior, 9, 3, remaining=6) == 0.0  # 9-9 at worst
    assert budget_gain_per_sample(prior, 9, 3, remaining=7) > 0.0  # now 9-10 is possible
    # The unlimited target still sees value there: that is the difference.
    assert expected_gain_per_sample(prior, 20, 18) > 0.001
    assert budget_gain_per_sample(prior, 3, 1, remaining=0) == 0.0
    assert budget_gain_per_sample(prior, 0, 0, remaining=10) == 0.0


def test_counts_must_be_leader_first() -> None:
    with pytest.raises(ConfigError, match="v1 >= v2"):
        budget_gain_per_sample(ConsistencyPrior(), 1, 2, remaining=5)


def test_cache_follows_the_prior_fit() -> None:
    prior = ConsistencyPrior()
    before = budget_gain_per_sample(prior, 2, 0, remaining=20)
    prior.fit([(10, 0)] * 100)  # sure of itself now: two agreeing votes are nearly enough
    after = budget_gain_per_sample(prior, 2, 0, remaining=20)
    assert after < before / 2
    assert after == pytest.approx(_fresh_gain(prior, 2, 0, 20), abs=1e-15)


def _fresh_gain(prior: ConsistencyPrior, v1: int, v2: int, remaining: int) -> float:
    return budget_gain_per_sample(prior.copy(), v1, v2, remaining=remaining)


def _state(controller: Controller, a: int, b: int) -> State:
    votes = {"a": a, "b": b} if b else {"a": a}
    conf, gain = controller.assess(votes)
    return State(samples=a + b, votes=votes, confidence=conf, marginal_gain=gain, round=1)


def test_near_even_splits_keep_sampling_where_the_unlimited_target_stops() -> None:
    unlimited = Controller(ControllerConfig(max_samples=MAX, gain_target="unlimited"))
    budget = Controller(ControllerConfig(max_samples=MAX, gain_target="budget"))
    assert RULE is not None
    for a, b in ((5, 1), (7, 3), (8, 4)):
        # AC-Beta-0.95 keeps going in all of these; the default rule stops on "low gain"
        # against the unlimited answer, and goes on against the budget's majority.
        assert beta_confidence(a, b) < 0.95
        assert RULE(_state(unlimited, a, b))
        assert not RULE(_state(budget, a, b))
    # Clear cases still stop with either target.
    for controller in (unlimited, budget):
        assert RULE(_state(controller, 6, 0))


def test_a_split_question_gets_more_of_the_budget_with_the_budget_target() -> None:
    rnd = random.Random(7)
    drawn: dict[str, list[int]] = {"unlimited": [], "budget": []}
    for _ in range(20):
        answers = ["a" if rnd.random() < 0.6 else "b" for _ in range(MAX)]
        for target in drawn:
            c = Controller(ControllerConfig(max_samples=MAX, gain_target=target, calibrate=False))
            n = 2
            while n < MAX:
                a = answers[:n].count("a")
                lead, other = max(a, n - a), min(a, n - a)
                assert RULE is not None
                if RULE(_state(c, lead, other)):
                    break
                n += 1
            drawn[target].append(n)
    assert np.mean(drawn["budget"]) > np.mean(drawn["unlimited"]) + 3


def test_after_five_unanimous_calls_two_agreeing_votes_do_not_stop() -> None:
    # A client that has seen 5 calls, every one unanimous, meets a 2-0 state: AC-Beta-0.95
    # would not stop there (0.875), and neither does the default rule: the pseudo-count
    # keeps 8/13 of the prior uniform. With a pseudo-count of 1 (5/6 learned) it would stop.
    assert beta_confidence(2, 0) < 0.95
    for target in ("unlimited", "budget"):
        for pseudo, stops in ((8.0, False), (1.0, True)):
            prior = ConsistencyPrior(pseudo_count=pseudo)
            c = Controller(ControllerConfig(max_samples=MAX, gain_target=target), prior)
            for _ in range(5):
                prior.observe(MAX, 0)
                prior.refit(iterations=10)
            assert RULE is not None
            assert RULE(_state(c, 2, 0)) is stops, (target, pseudo)


def test_without_a_bound_on_the_samples_the_budget_target_is_the_unlimited_gain() -> None:
    default = Controller(ControllerConfig())  # gain_target="budget" by default, no max_samples
    unlimited = Controller(ControllerConfig(gain_target="unlimited"))
    votes = {"a": 5, "b": 1}
    g_default, g_unlimited = default.assess(votes)[1], unlimited.assess(votes)[1]
    assert g_default is not None and g_unlimited is not None
    assert g_default() == g_unlimited()
    bounded = default.assess(votes, 0, MAX - 6)[1]
    assert bounded is not None and bounded() != g_unlimited()
    # A lead the samples left cannot overturn is worth nothing more.
    settled = default.assess(votes, 0, 3)[1]
    assert settled is not None and settled() == 0.0
    with pytest.raises(ConfigError):
        ControllerConfig(gain_target="forever")  # type: ignore[arg-type]


def test_a_call_reads_its_strategys_max_samples_as_the_bound() -> None:
    # The strategy's max_samples (Plan.remaining), not a controller setting, bounds the gain:
    # every decide event shows the bound it read, falling as samples come back.
    from adaptive_strategies import AdaptiveConsistency

    from adaptive import SyncClient
    from adaptive.sim import SimEndpoint

    with SyncClient(SimEndpoint()) as client:
        result = client.run("What is 17 + 25?", strategy=AdaptiveConsistency(max_samples=12))
    decides = [e for e in result.trace if e.kind == "decide" and e.data.get("draws_left") is not None]
    assert decides
    lefts = [e.data["draws_left"] for e in decides]
    assert lefts[0] == 12
    assert lefts == sorted(lefts, reverse=True)
    assert all(0 <= x <= 12 for x in lefts)
    # Each one is what max_samples leaves after the samples back by then.
    for e in decides:
        assert e.data["draws_left"] == 12 - e.data["samples"]


def test_a_long_budget_is_valued_at_the_lookahead() -> None:
    # Past MAX_LOOKAHEAD votes the target is the majority after that many (the exact sum is
    # cubic in the budget): a call with max_samples=1024 decides as one with 64 left.
    from adaptive._budget_gain import MAX_LOOKAHEAD, budget_gain_per_sample

    prior = ConsistencyPrior()
    for v1, v2 in ((3, 1), (5, 4), (9, 7)):
        far = budget_gain_per_sample(prior, v1, v2, remaining=1000)
        assert far == budget_gain_per_sample(prior, v1, v2, remaining=MAX_LOOKAHEAD)
        assert far > 0.0
    # A lead the whole budget could not overturn is still worth nothing, however long.
    assert budget_gain_per_sample(prior, 70, 0, remaining=70) == 0.0
