"""The marginal gain in expected accuracy with calibrated vote shares (adaptive._accuracy_gain)."""

from __future__ import annotations

import itertools

import pytest

# The budget target's tests' prior: 20 unanimous questions and 10 near-even ones.
from test_budget_gain import BRUTE_STATES, _fitted

from adaptive import ConfigError, ConsistencyPrior, ControllerConfig
from adaptive._accuracy_gain import accuracy_gain_per_sample, expected_share
from adaptive._budget_gain import budget_gain_per_sample
from adaptive._controller import Controller


def _brute(prior: ConsistencyPrior, v1: int, v2: int, remaining: int) -> float:
    """The same quantity by enumerating every order of the next votes, grid point by grid point."""
    w, d = prior.weights, prior.d

    def mass(a: int, b: int) -> float:  # P(one particular order with a, b votes), unnormalised
        return float(w @ (d**a * (1 - d) ** b + d**b * (1 - d) ** a))

    def share(a: int, b: int) -> float:  # E[q | a, b]: q = d when A dominates, 1 - d when B does
        return float(w @ (d * d**a * (1 - d) ** b + (1 - d) * d**b * (1 - d) ** a)) / mass(a, b)

    z = mass(v1, v2)
    now = max(share(v1, v2), 1 - share(v1, v2))
    best = 0.0
    for k in range(1, remaining + 1):
        after = 0.0
        for votes in itertools.product((0, 1), repeat=k):
            a, b = v1 + sum(votes), v2 + k - sum(votes)
            m = share(a, b)
            after += mass(a, b) / z * max(m, 1 - m)
        best = max(best, (after - now) / k)
    return best


@pytest.mark.parametrize("prior", [ConsistencyPrior(), _fitted()], ids=["uniform", "fitted"])
@pytest.mark.parametrize("v1,v2,remaining", BRUTE_STATES)
def test_gain_equals_enumerating_every_continuation(
    prior: ConsistencyPrior, v1: int, v2: int, remaining: int
) -> None:
    assert accuracy_gain_per_sample(prior, v1, v2, remaining=remaining) == pytest.approx(
        _brute(prior, v1, v2, remaining), abs=1e-12
    )


def test_the_uniform_prior_reads_shares_by_laplaces_rule() -> None:
    prior = ConsistencyPrior()
    for v1, v2 in [(0, 0), (1, 0), (3, 1), (7, 7), (12, 2)]:
        # The grid's midpoints make the uniform prior exact up to its spacing.
        assert expected_share(prior, v1, v2) == pytest.approx((v1 + 1) / (v1 + v2 + 2), abs=2e-3)


def test_an_even_split_is_worth_little_and_a_clear_lead_in_doubt_much() -> None:
    prior = _fitted()
    even = accuracy_gain_per_sample(prior, 10, 9, remaining=21)
    in_doubt = accuracy_gain_per_sample(prior, 2, 1, remaining=37)
    assert even < in_doubt / 2
    # The budget target counts every disagreement with the final vote as a whole error: to
    # it the even split is worth several times more, and more against the lead in doubt.
    budget_even = budget_gain_per_sample(prior, 10, 9, remaining=21)
    budget_in_doubt = budget_gain_per_sample(prior, 2, 1, remaining=37)
    assert budget_even > 5 * even
    assert even / budget_even < (in_doubt / budget_in_doubt) / 2


def test_nothing_to_gain_without_samples_or_votes_and_counts_are_checked() -> None:
    prior = ConsistencyPrior()
    assert accuracy_gain_per_sample(prior, 3, 1, remaining=0) == 0.0
    assert accuracy_gain_per_sample(prior, 0, 0, remaining=10) == 0.0
    assert accuracy_gain_per_sample(prior, 1, 1, remaining=5) > 0
    with pytest.raises(ConfigError, match="v1 >= v2"):
        accuracy_gain_per_sample(prior, 1, 2, remaining=5)
    with pytest.raises(ConfigError, match="v1 >= v2"):
        expected_share(prior, 2, -1)


def test_a_refit_is_not_answered_from_the_old_fits_cache() -> None:
    prior = ConsistencyPrior()
    before = accuracy_gain_per_sample(prior, 2, 0, remaining=10)
    prior.fit([(10, 0)] * 50)  # a consistent model: a 2-0 lead is nearly settled
    after = accuracy_gain_per_sample(prior, 2, 0, remaining=10)
    assert after < before
    assert after == pytest.approx(_brute(prior, 2, 0, 10), abs=1e-12)


def test_the_controller_weighs_continuations_up_to_the_calls_bound_or_the_horizon() -> None:
    prior = _fitted()
    c = Controller(ControllerConfig(gain_target="accuracy"), prior=prior)
    votes = {"a": 3, "b": 2}
    conf, gain = c.assess(votes, draws_left=12)
    assert conf is not None and callable(gain)
    assert gain() == accuracy_gain_per_sample(prior, 3, 2, remaining=12)
    # No bound on the call: continuations up to `gain_horizon` samples.
    _, unbounded = c.assess(votes)
    assert callable(unbounded)
    assert unbounded() == accuracy_gain_per_sample(prior, 3, 2, remaining=c.config.gain_horizon)
    # ControllerConfig.max_samples bounds it when the state gives no draws_left.
    capped = Controller(ControllerConfig(gain_target="accuracy", max_samples=9), prior=prior)
    _, g = capped.assess(votes)
    assert callable(g) and g() == accuracy_gain_per_sample(prior, 3, 2, remaining=4)
