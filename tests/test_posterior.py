"""The consistency prior: AC's Beta rule when uniform, learnable from vote logs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive import ConfigError, ConsistencyPrior
from adaptive._posterior import beta_confidence


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
    # Without a half-life the order of the logs does not matter (with one, recent ones weigh more).
    a, b, c = (ConsistencyPrior(half_life=None) for _ in range(3))
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
    f_full, f_early = ConsistencyPrior(half_life=None), ConsistencyPrior(half_life=None)
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


# -- saving and loading ----------------------------------------------------------------------


def _saved(prior: ConsistencyPrior) -> dict[str, Any]:
    """`to_dict` through an actual JSON text, as `save` and `load` see it."""
    data: dict[str, Any] = json.loads(json.dumps(prior.to_dict()))
    return data


def test_to_dict_holds_the_format_grid_weights_and_counts() -> None:
    prior = ConsistencyPrior(grid=16, pseudo_count=3.0)
    prior.fit([(6, 0), (6, 0), (4, 2)])
    data = _saved(prior)
    assert data["format"] == "adaptive.consistency_prior" and data["version"] == 1
    assert data["grid"] == 16 and data["pseudo_count"] == 3.0
    assert data["weights"] == prior.weights.tolist()
    assert data["counts"] == [[6, 0, 2], [4, 2, 1]]  # in logging order


@pytest.mark.parametrize(("grid", "pseudo"), [(96, 8.0), (8, 0.5), (33, 20.0)])
def test_round_trip_is_exact(grid: int, pseudo: float) -> None:
    prior = ConsistencyPrior(grid=grid, pseudo_count=pseudo)
    prior.fit([(10, 0)] * 40 + [(6, 4)] * 7 + [(3, 1)] * 5)
    loaded = ConsistencyPrior.from_dict(_saved(prior))
    assert len(loaded.d) == grid and loaded.pseudo_count == pseudo
    np.testing.assert_array_equal(loaded.weights, prior.weights)
    assert loaded.counts == prior.counts
    for v1 in range(12):
        for v2 in range(v1 + 1):
            assert loaded.confidence(v1, v2) == prior.confidence(v1, v2)
            assert loaded.expected_gain(v1, v2, 3) == prior.expected_gain(v1, v2, 3)


def test_save_and_load_round_trip_through_a_file(tmp_path: Path) -> None:
    prior = _fitted()
    path = tmp_path / "prior.json"
    prior.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == _saved(prior)
    loaded = ConsistencyPrior.load(str(path))
    assert [loaded.confidence(*v) for v in [(2, 0), (3, 1), (5, 2)]] == [
        prior.confidence(*v) for v in [(2, 0), (3, 1), (5, 2)]
    ]
    assert repr(loaded) == repr(prior)


def test_a_loaded_prior_keeps_learning_from_where_it_was(tmp_path: Path) -> None:
    first, more = [(9, 0)] * 20 + [(5, 4)] * 6, [(4, 4)] * 30 + [(7, 1)] * 10
    kept = ConsistencyPrior()
    kept.fit(first)
    kept.save(tmp_path / "prior.json")
    loaded = ConsistencyPrior.load(tmp_path / "prior.json")
    kept.fit(more)
    loaded.fit(more)
    # The same weights and logs to start from: the same fit, to the last bit.
    assert loaded.counts == kept.counts and sum(loaded.counts.values()) == len(first) + len(more)
    np.testing.assert_array_equal(loaded.weights, kept.weights)
    fresh = ConsistencyPrior()
    fresh.fit(more)
    assert loaded.confidence(2, 0) != pytest.approx(fresh.confidence(2, 0), abs=1e-3)


def test_weights_that_do_not_sum_to_one_are_normalised() -> None:
    prior = _fitted()
    data = _saved(prior)
    data["weights"] = [3 * w for w in data["weights"]]
    loaded = ConsistencyPrior.from_dict(data)
    assert float(loaded.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(loaded.weights, prior.weights, rtol=1e-12)
    assert loaded.confidence(3, 1) == pytest.approx(prior.confidence(3, 1), abs=1e-12)


def test_whole_numbers_written_as_floats_are_accepted() -> None:
    data = _saved(_fitted())
    data["grid"], data["version"] = float(data["grid"]), 1.0
    data["counts"] = [[float(x) for x in row] for row in data["counts"]]
    assert ConsistencyPrior.from_dict(data).counts == _fitted().counts


def _with(**changes: Any) -> dict[str, Any]:
    data = _saved(_fitted())
    for key, value in changes.items():
        if value is _DROP:
            del data[key]
        else:
            data[key] = value
    return data


_DROP = object()
_W = [1.0] * 16


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (["not", "a", "dict"], "JSON object"),
        (_with(format=_DROP), "no 'format' field"),
        (_with(format="something.else"), "format must be 'adaptive.consistency_prior'"),
        (_with(version=_DROP), "no 'version' field"),
        (_with(version=2), "version 2 is not supported"),
        (_with(version="1"), "version '1' is not supported"),
        (_with(grid=_DROP), "no 'grid' field"),
        (_with(grid=4, weights=[1.0] * 4), "grid must be a whole number >= 8"),
        (_with(grid=9.5), "grid must be a whole number >= 8"),
        (_with(grid=True), "grid must be a whole number >= 8"),
        (_with(pseudo_count=_DROP), "no 'pseudo_count' field"),
        (_with(pseudo_count=0), "pseudo_count must be a finite number > 0"),
        (_with(pseudo_count=-2.0), "pseudo_count must be a finite number > 0"),
        (_with(pseudo_count=float("nan")), "pseudo_count must be a finite number > 0"),
        (_with(pseudo_count="8"), "pseudo_count must be a finite number > 0"),
        (_with(weights=_DROP), "no 'weights' field"),
        (_with(weights={"0": 1.0}), "weights must be a list of grid=96 numbers"),
        (_with(weights=[1.0] * 95), r"weights must be a list of grid=96 numbers.*95 items"),
        (_with(grid=16, weights=[*_W[:3], -0.1, *_W[4:]]), r"weights\[3\] must be a finite number >= 0"),
        (_with(grid=16, weights=[*_W[:5], float("inf"), *_W[6:]]), r"weights\[5\] must be a finite"),
        (_with(grid=16, weights=[*_W[:2], "x", *_W[3:]]), r"weights\[2\] must be a finite number"),
        (_with(grid=16, weights=[*_W[:2], None, *_W[3:]]), r"weights\[2\] must be a finite number"),
        (_with(grid=16, weights=[0.0] * 16), "weights must have a positive, finite sum"),
        (_with(grid=16, weights=[1e308] * 16), "weights must have a positive, finite sum"),
        (_with(counts=_DROP), "no 'counts' field"),
        (_with(counts={"a": 1}), r"counts must be a list of \[v1, v2, n\] rows"),
        (_with(counts=[[3, 1, 2], [3, 1]]), r"counts\[1\] must be three whole numbers"),
        (_with(counts=[[3, 1, 2, 4]]), r"counts\[0\] must be three whole numbers"),
        (_with(counts=[[1, 3, 2]]), r"counts\[0\] must be three whole numbers.*v1 >= v2 >= 0"),
        (_with(counts=[[3, -1, 2]]), r"counts\[0\] must be three whole numbers"),
        (_with(counts=[[3, 1, 0]]), r"counts\[0\].*n >= 1"),
        (_with(counts=[[3, 1.5, 2]]), r"counts\[0\] must be three whole numbers"),
        (_with(counts=[[3, 1, "2"]]), r"counts\[0\] must be three whole numbers"),
        (_with(counts=["3,1,2"]), r"counts\[0\] must be three whole numbers"),
        (_with(counts=[[1, 0, 4]]), r"counts\[0\] has fewer than two votes"),
    ],
)
def test_from_dict_rejects_bad_fields_by_name(data: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ConsistencyPrior.from_dict(data)


def test_load_names_the_path_and_the_problem(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match=r"missing\.json: no such file"):
        ConsistencyPrior.load(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "adaptive.consistency_prior",', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.json: not valid JSON"):
        ConsistencyPrior.load(broken)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"binary\.json: not UTF-8"):
        ConsistencyPrior.load(binary)
    with pytest.raises(ConfigError, match="cannot read the prior"):
        ConsistencyPrior.load(tmp_path)  # a folder, not a file
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps(_with(pseudo_count=-1)), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"invalid\.json: pseudo_count must be"):
        ConsistencyPrior.load(invalid)


def test_save_to_a_missing_folder_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot save the prior to .*nowhere"):
        _fitted().save(tmp_path / "nowhere" / "prior.json")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3000), st.integers(0, 3000)).map(lambda t: (max(t), min(t))),
        min_size=1,
        max_size=12,
    )
)
def test_the_prior_fits_extreme_counts_without_nan_or_infinity(logs: list[tuple[int, int]]) -> None:
    prior = ConsistencyPrior()
    prior.fit(logs)
    assert np.all(np.isfinite(prior.weights)) and abs(prior.weights.sum() - 1) < 1e-9
    for v1, v2 in ((1, 0), (3, 1), (12, 9)):
        c = prior.confidence(v1, v2)
        assert math.isfinite(c) and 0.0 <= c <= 1.0


def test_a_poisoned_live_prior_still_refits_saves_and_loads(tmp_path: Path) -> None:
    prior = ConsistencyPrior()
    prior.observe(700, 700)  # raw likelihoods underflow here: today this gave NaN weights
    prior.observe(600, 600)
    prior.refit()
    assert np.all(np.isfinite(prior.weights))
    prior.save(tmp_path / "p.json")
    assert ConsistencyPrior.load(tmp_path / "p.json").weights.tolist() == prior.weights.tolist()


@pytest.mark.parametrize("bad", [(True, 1), (-1, 2), (2.5, 1), ("3", 1)])
def test_observe_refuses_counts_that_are_not_whole_numbers(bad: tuple[object, object]) -> None:
    with pytest.raises(ConfigError, match="whole numbers"):
        ConsistencyPrior().observe(*bad)  # type: ignore[arg-type]


def test_the_learned_share_grows_with_the_calls_observed() -> None:
    shares = []
    for calls in (5, 30, 3000):
        prior = ConsistencyPrior(half_life=None)
        prior.fit([(4, 0)] * calls)
        assert prior.effective_questions == calls
        assert prior.learned_share == pytest.approx(calls / (calls + prior.pseudo_count))
        shares.append(prior.confidence(3, 0))
    # Five unanimous calls cannot make a 3-0 lead look like a sure thing; thousands can.
    assert beta_confidence(3, 0) < shares[0] < 0.97 < shares[1] < shares[2]
    assert shares[2] > 0.999


def test_half_life_weighs_recent_calls_more() -> None:
    old_then_new = ConsistencyPrior(half_life=20)
    old_then_new.fit([(5, 5)] * 200 + [(10, 0)] * 40)
    forever = ConsistencyPrior(half_life=None)
    forever.fit([(5, 5)] * 200 + [(10, 0)] * 40)
    # 200 split calls long ago, 40 unanimous ones lately: with a half-life the recent
    # unanimous calls dominate, without it the old split ones do.
    assert old_then_new.confidence(3, 0) > forever.confidence(3, 0) + 0.05
    assert old_then_new.effective_questions < 1 / (1 - 0.5 ** (1 / 20))  # about 1.44 * 20 + 0.5
    assert sum(old_then_new.counts.values()) == 240  # the log keeps every call
    back = ConsistencyPrior.from_dict(old_then_new.to_dict())
    assert back.half_life == 20 and back.confidence(3, 0) == old_then_new.confidence(3, 0)
    assert old_then_new.copy().recency == old_then_new.recency
    with pytest.raises(ConfigError, match="half_life"):
        ConsistencyPrior(half_life=0.5)
