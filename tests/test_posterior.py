"""The consistency prior: AC's Beta rule when uniform, learnable from vote logs."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive import ConfigError, ConsistencyPrior, beta_confidence, top_two


def test_top_two() -> None:
    assert top_two({}) == (0, 0)
    assert top_two({"a": 3}) == (3, 0)
    assert top_two({"a": 1, "b": 5, "c": 2}) == (5, 2)
    assert top_two([2, 7, 7]) == (7, 7)


def test_beta_confidence_exact_values() -> None:
    assert beta_confidence(4, 0) == 31 / 32
    assert beta_confidence(3, 0) == 15 / 16
    assert beta_confidence(0, 0) == 0.5
    assert beta_confidence(2, 2) == 0.5


def test_uniform_prior_equals_ac_beta_rule() -> None:
    prior = ConsistencyPrior()
    for v1 in range(0, 30):
        for v2 in range(0, v1 + 1):
            assert prior.confidence(v1, v2) == pytest.approx(beta_confidence(v1, v2), abs=1e-3)


def test_confidence_rejects_a_runner_up_ahead_of_the_leader() -> None:
    with pytest.raises(ValueError, match="v1 >= v2"):
        ConsistencyPrior().confidence(1, 2)


@pytest.mark.parametrize(("grid", "pseudo"), [(4, 8.0), (96, 0.0), (96, -1.0)])
def test_bad_prior_parameters_raise_config_error(grid: int, pseudo: float) -> None:
    with pytest.raises(ConfigError):
        ConsistencyPrior(grid=grid, pseudo_count=pseudo)


def test_fitted_prior_on_consistent_logs_is_surer_of_two_agreeing_votes() -> None:
    uniform = ConsistencyPrior()
    fitted = ConsistencyPrior()
    fitted.fit([(10, 0)] * 50 + [(6, 4)] * 5)
    assert fitted.confidence(2, 0) > uniform.confidence(2, 0) + 0.05
    assert fitted.confidence(2, 0) > 0.95
    # A split question stays uncertain: the fit does not make everything confident.
    assert fitted.confidence(3, 3) == pytest.approx(0.5)


def test_fit_on_split_logs_lowers_confidence() -> None:
    split = ConsistencyPrior()
    split.fit([(5, 5)] * 40 + [(6, 4)] * 40)
    assert split.confidence(3, 0) < beta_confidence(3, 0)


def test_fit_accepts_vote_maps_pairs_in_any_order_and_ignores_single_votes() -> None:
    pairs = [(7, 1), (5, 5), (9, 0), (4, 2)] * 5
    maps = [{"x": a, "y": b, "z": min(b, 1) if b else 0} for a, b in pairs]
    swapped = [(b, a) for a, b in reversed(pairs)]
    a, b, c = ConsistencyPrior(), ConsistencyPrior(), ConsistencyPrior()
    a.fit(pairs)
    b.fit(maps)
    c.fit([*swapped, (1, 0), (0, 0)])  # fewer than two votes say nothing about consistency
    assert a.counts == b.counts == c.counts
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-12)
    np.testing.assert_allclose(a.weights, c.weights, rtol=1e-12)


def test_fit_on_early_stopped_logs_matches_fit_on_full_logs() -> None:
    # Stopping depends only on votes already seen, so it is ignorable for the likelihood:
    # logs cut short by AC's rule give (nearly) the prior the full logs give.
    rng = np.random.default_rng(0)
    full: list[tuple[int, int]] = []
    early: list[tuple[int, int]] = []
    for _ in range(400):
        d = 0.97 if rng.random() < 0.8 else 0.6
        q = d if rng.random() < 0.5 else 1 - d
        a = b = 0
        stopped: tuple[int, int] | None = None
        for vote in rng.random(40) < q:
            a, b = a + int(vote), b + int(not vote)
            if stopped is None and beta_confidence(max(a, b), min(a, b)) >= 0.95:
                stopped = (a, b)
        full.append((a, b))
        early.append(stopped or (a, b))
    assert sum(map(sum, early)) < sum(map(sum, full)) / 3  # the early logs really are short
    f_full, f_early = ConsistencyPrior(), ConsistencyPrior()
    f_full.fit(full)
    f_early.fit(early)
    mean_full = float(f_full.weights @ f_full.d)
    mean_early = float(f_early.weights @ f_early.d)
    assert mean_early == pytest.approx(mean_full, abs=0.02)
    for votes in [(2, 0), (3, 1), (4, 2)]:
        assert f_early.confidence(*votes) == pytest.approx(f_full.confidence(*votes), abs=0.01)


@pytest.mark.parametrize("fitted", [False, True])
def test_predictive_sums_to_one(fitted: bool) -> None:
    prior = ConsistencyPrior()
    if fitted:
        prior.fit([(9, 1)] * 20 + [(5, 4)] * 10)
    for v1, v2, k in [(0, 0, 1), (1, 0, 3), (3, 2, 5), (10, 0, 8), (4, 4, 6)]:
        p = prior.predictive(v1, v2, k)
        assert p.shape == (k + 1,)
        assert (p >= 0).all()
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-9)


def test_predictive_uniform_one_vote_is_laplace() -> None:
    # Uniform prior on q: P(next vote to the leader | v1, v2) = (v1 + 1) / (v1 + v2 + 2).
    p = ConsistencyPrior().predictive(3, 1, 1)
    assert float(p[1]) == pytest.approx(4 / 6, abs=1e-3)


def test_expected_gain_is_non_negative() -> None:
    prior = ConsistencyPrior()
    prior.fit([(8, 0)] * 30 + [(4, 3)] * 10)
    for v1 in range(1, 10):
        for v2 in range(0, v1 + 1):
            for k in (1, 2, 5, 9):
                assert prior.expected_gain(v1, v2, k) >= 0.0
    assert prior.expected_gain(3, 3, 1) > 0.0  # a tie is broken by one more vote
    assert prior.expected_gain(2, 1, 0) == 0.0
    assert prior.expected_gain(2, 1, -1) == 0.0


@pytest.mark.parametrize(("v1", "v2", "k"), [(10, 0, 3), (8, 2, 5), (5, 0, 4), (7, 3, 3)])
def test_expected_gain_is_zero_when_no_outcome_can_flip_the_leader(v1: int, v2: int, k: int) -> None:
    assert v1 - v2 > k  # even k votes for the runner-up leave the leader ahead
    for prior in (ConsistencyPrior(), _fitted()):
        assert prior.expected_gain(v1, v2, k) == pytest.approx(0.0, abs=1e-12)


def test_expected_gain_is_positive_when_the_leader_can_flip() -> None:
    prior = ConsistencyPrior()
    assert prior.expected_gain(2, 1, 2) > 0.0
    assert prior.expected_gain(5, 3, 3) > 0.0


def _fitted() -> ConsistencyPrior:
    prior = ConsistencyPrior()
    prior.fit([(10, 0)] * 30 + [(6, 4)] * 10)
    return prior


def test_observe_then_refit_equals_fit() -> None:
    logs = [(6, 0), (5, 1), (3, 3)] * 4
    a, b = ConsistencyPrior(), ConsistencyPrior()
    a.fit(logs, iterations=30)
    for v1, v2 in logs:
        b.observe(v1, v2)
    b.refit(iterations=30)
    np.testing.assert_allclose(a.weights, b.weights)


def test_refit_without_logs_keeps_the_uniform_prior() -> None:
    prior = ConsistencyPrior()
    prior.refit()
    assert prior.confidence(4, 0) == pytest.approx(beta_confidence(4, 0), abs=1e-3)


def test_copy_is_independent() -> None:
    original = ConsistencyPrior()
    original.fit([(5, 0)] * 10)
    before = original.confidence(2, 0)
    clone = original.copy()
    assert clone.confidence(2, 0) == before
    assert clone.counts == original.counts
    clone.fit([(3, 3)] * 200)
    assert clone.confidence(2, 0) < before
    assert original.confidence(2, 0) == before  # the original kept its weights and cache
    assert sum(original.counts.values()) == 10
    original.fit([(9, 0)] * 50)
    assert sum(clone.counts.values()) == 210


def test_repr_summarizes() -> None:
    prior = ConsistencyPrior()
    prior.fit([(4, 0)] * 3)
    assert repr(prior).startswith("ConsistencyPrior(questions=3, mean_dominance=")
