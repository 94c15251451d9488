"""Stop rules as pure functions of hand-built states."""

from __future__ import annotations

from math import comb
from typing import Any

import pytest

from adaptive import (
    Check,
    ConfigError,
    State,
    StopRule,
    ac_beta,
    budget_exhausted,
    confident,
    deadline,
    dirichlet,
    esc_window,
    low_marginal_gain,
    max_samples,
    score_threshold,
    stop_rule_from_config,
    vote_margin,
)
from adaptive._stop import ACBeta, AllOf, AnyOf


def voted(*counts: int, **changes: Any) -> State:
    """A state whose answers a, b, c... have the given vote counts (leader first)."""
    votes = {chr(ord("a") + i): c for i, c in enumerate(counts) if c}
    history: list[str | None] = [a for a, c in votes.items() for _ in range(c)]
    changes.setdefault("samples", sum(counts))
    return State(votes=votes, history=tuple(history), **changes)


# -- Adaptive-Consistency's Beta rule ----------------------------------------------------


def binomial_cdf_half(v1: int, v2: int) -> float:
    n = v1 + v2 + 1
    return float(sum(comb(n, k) for k in range(v1 + 1)) / 2**n)


@pytest.mark.parametrize(
    ("counts", "value", "stop"),
    [
        ((4,), 31 / 32, True),  # 0.969
        ((3,), 15 / 16, False),  # 0.9375
        ((5, 1), 120 / 128, False),  # 0.9375
        ((6, 1), 247 / 256, True),  # 0.965
    ],
)
def test_ac_beta_known_values(counts: tuple[int, ...], value: float, stop: bool) -> None:
    check = ac_beta(0.95).check(voted(*counts))
    assert check.value == pytest.approx(value, abs=1e-12)
    assert check.stop is stop
    assert check.rule == "ac_beta"
    assert check.threshold == 0.95


def test_ac_beta_matches_binomial_for_a_grid_and_ignores_third_answers() -> None:
    rule = ac_beta(0.9)
    for v1 in range(1, 12):
        for v2 in range(0, v1 + 1):
            third = 1 if v2 else 0  # a third answer behind the runner-up changes nothing
            value = rule.check(voted(v1, v2, third)).value
            assert value == pytest.approx(binomial_cdf_half(v1, v2), abs=1e-12)


def test_ac_beta_without_votes_never_stops() -> None:
    check = ac_beta(0.01).check(State())
    assert not check.stop
    assert check.value == 0.0


# -- Dirichlet ---------------------------------------------------------------------------


def test_dirichlet_is_reproducible_with_a_seed() -> None:
    state = voted(4, 2, 1)
    a = dirichlet(0.9, seed=7).check(state).value
    b = dirichlet(0.9, seed=7).check(state).value
    c = dirichlet(0.9, seed=8).check(state).value
    assert a == b
    assert a is not None and 0 < a < 1
    assert c is not None and abs(c - a) < 0.1  # another seed: another estimate, close by


def test_dirichlet_is_monotone_in_the_leaders_votes() -> None:
    rule = dirichlet(0.95, draws=4000, seed=3)
    values = [rule.check(voted(v, 1)).value for v in (1, 2, 4, 8, 16)]
    assert all(v is not None for v in values)
    assert values == sorted(values)  # type: ignore[type-var]
    assert values[0] is not None and values[0] < 0.8
    assert rule(voted(16, 1)) and not rule(voted(2, 1))


def test_dirichlet_without_votes_continues() -> None:
    check = dirichlet().check(State())
    assert not check.stop and check.value == 0.0


# -- ESC window --------------------------------------------------------------------------


def test_esc_window_needs_a_full_unanimous_window() -> None:
    rule = esc_window(3)
    assert not rule(State(history=("x", "x")))  # window not full yet
    assert rule(State(history=("y", "x", "x", "x")))
    assert not rule(State(history=("x", "x", "y")))
    assert rule.check(State(history=("x", "y", "z"))).value == 3.0


def test_esc_window_abstentions_never_agree() -> None:
    rule = esc_window(3)
    assert not rule(State(history=(None, None, None)))
    assert not rule(State(history=("x", None, "x")))
    assert rule(State(history=(None, "x", "x", "x")))


# -- vote margin, score, budget, deadline, max samples -----------------------------------


def test_vote_margin() -> None:
    rule = vote_margin(3)
    assert not rule(voted(4, 2))
    assert rule(voted(5, 2))
    assert rule(voted(3))
    check = rule.check(voted(6, 4, 1))
    assert (check.value, check.threshold, check.stop) == (2.0, 3.0, False)


def test_score_threshold() -> None:
    rule = score_threshold(0.8)
    assert not rule(State())
    assert not rule(State(scores=(0.1, 0.79), best_score=0.79))
    assert rule(State(scores=(0.1, 0.8), best_score=0.8))
    assert rule.check(State(best_score=0.9)).value == 0.9


def test_budget_exhausted_reads_the_next_batch() -> None:
    rule = budget_exhausted()
    assert not rule(State(next_batch=1))
    assert rule(State(next_batch=0))
    assert rule.check(State(next_batch=0)).reason() == "budget_exhausted"


def test_deadline() -> None:
    rule = deadline(2.5)
    assert not rule(State(elapsed=2.4))
    assert rule(State(elapsed=2.5))


def test_max_samples() -> None:
    rule = max_samples(5)
    assert not rule(State(samples=4))
    assert rule(State(samples=5))
    assert rule(State(samples=9))


def test_confident_reads_the_state_confidence_and_min_votes() -> None:
    rule = confident(0.9, min_votes=2)
    assert not rule(voted(1, confidence=0.99))  # one vote is never enough
    assert rule(voted(2, confidence=0.95))
    assert not rule(voted(5, 1, confidence=0.89))
    assert not rule(State())  # no confidence


# -- low marginal gain -------------------------------------------------------------------


def test_low_marginal_gain_min_gain_form() -> None:
    rule = low_marginal_gain(0.01)
    assert rule(voted(3, marginal_gain=0.005))
    assert not rule(voted(3, marginal_gain=0.02))
    assert not rule(voted(1, marginal_gain=0.0))  # below min_votes
    assert not rule(voted(3, marginal_gain=None))


def test_low_marginal_gain_value_form_compares_value_with_cost() -> None:
    rule = low_marginal_gain(value_usd=1.0)
    # Expected value of the batch = gain * batch * value = 0.01 * 2 * 1 = $0.02.
    cheap = voted(3, marginal_gain=0.01, next_batch=2, next_cost_usd=0.019)
    dear = voted(3, marginal_gain=0.01, next_batch=2, next_cost_usd=0.021)
    assert not rule(cheap)
    assert rule(dear)
    check = rule.check(dear)
    assert check.value == pytest.approx(0.02)
    assert check.threshold == 0.021
    # Without a cost (no price), it falls back to min_gain.
    assert not rule(voted(3, marginal_gain=0.01, next_batch=2))


def test_low_marginal_gain_is_lazy() -> None:
    calls: list[int] = []

    def gain() -> float:
        calls.append(1)
        return 0.0

    state = voted(3, marginal_gain=gain)
    assert not calls
    assert vote_margin(1)(state)  # other rules never compute it
    assert not calls
    assert low_marginal_gain(0.01)(state)
    assert calls == [1]


# -- composition -------------------------------------------------------------------------


def test_or_and_compose_and_flatten() -> None:
    a, b, c = vote_margin(3), max_samples(10), deadline(5)
    either = a | b | c
    assert isinstance(either, AnyOf) and either.rules == (a, b, c)
    both = a & b & c
    assert isinstance(both, AllOf) and both.rules == (a, b, c)
    assert either(voted(3))  # margin 3
    assert not both(voted(3))
    assert both(voted(3, samples=10, elapsed=6.0))
    assert not either(voted(2, 1, elapsed=1.0))


def test_check_reason_names_the_first_rule_that_stopped() -> None:
    rule = (vote_margin(3) & max_samples(6)) | ac_beta(0.95) | budget_exhausted()
    check = rule.check(voted(4, next_batch=0))
    assert check.stop
    assert check.reason() == "ac_beta"  # the AllOf did not stop: 4 samples < 6
    check = rule.check(voted(5, 1, next_batch=1))
    # margin 4 and 6 samples: the AllOf stops (AC's 0.9375 does not); its first part is named.
    assert check.stop and check.reason() == "vote_margin"
    assert [p.stop for p in check.parts] == [True, False, False]
    nothing = rule.check(voted(1, 1, next_batch=1))
    assert not nothing.stop and nothing.reason() == ""
    assert [p.rule for p in nothing.parts] == ["all", "ac_beta", "budget_exhausted"]


def test_check_reason_recurses_into_nested_any() -> None:
    inner = Check(True, "any", parts=(Check(False, "x"), Check(True, "deadline")))
    outer = Check(True, "any", parts=(Check(False, "y"), inner))
    assert outer.reason() == "deadline"


# -- configs -----------------------------------------------------------------------------

RULES: list[StopRule] = [
    ac_beta(0.9),
    confident(0.99, min_votes=3),
    dirichlet(0.8, draws=500, seed=4),
    esc_window(4),
    vote_margin(2),
    score_threshold(0.75),
    budget_exhausted(),
    deadline(3.5),
    max_samples(12),
    low_marginal_gain(0.002),
    low_marginal_gain(value_usd=0.5, min_votes=3),
    confident(0.99) | low_marginal_gain(0.001) | budget_exhausted(),
    (vote_margin(3) & max_samples(5)) | deadline(1.0),
    AllOf(rules=(ac_beta(0.95), AnyOf(rules=(esc_window(3), vote_margin(4))))),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_config_round_trip(rule: StopRule) -> None:
    config = rule.config()
    back = stop_rule_from_config(config)
    assert back == rule
    assert type(back) is type(rule)
    assert back.config() == config


def test_from_name_and_params() -> None:
    assert stop_rule_from_config("ac-beta", {"threshold": 0.9}) == ACBeta(threshold=0.9)
    assert stop_rule_from_config("budget-exhausted") == budget_exhausted()
    rule = stop_rule_from_config({"any": [{"name": "confident", "threshold": 0.99}, "budget-exhausted"]})
    assert rule == confident(0.99) | budget_exhausted()
    same = ac_beta()
    assert stop_rule_from_config(same) is same


@pytest.mark.parametrize(
    ("config", "params", "fragment"),
    [
        ("nope", None, "unknown stop rule 'nope'"),
        ("any", None, "unknown stop rule"),
        ("ac-beta", {"threshold": 1.5}, "threshold"),
        ("ac-beta", {"treshold": 0.9}, "treshold"),
        ("max-samples", {}, "samples"),
        ("deadline", {"seconds": -1}, "seconds"),
        ("deadline", {"seconds": float("nan")}, "seconds"),
        ("esc-window", {"size": 0}, "size"),
        ({"threshold": 0.9}, None, "needs a 'name'"),
        ({"any": []}, None, "non-empty list"),
        ({"all": "ac-beta"}, None, "non-empty list"),
        ({"any": ["ac-beta", {"name": "bogus"}]}, None, "bogus"),
    ],
)
def test_bad_configs_raise_config_error(config: Any, params: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        stop_rule_from_config(config, params)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_plain_callable_is_a_stop_rule_that_composes_and_is_explained() -> None:
    from adaptive._stop import FunctionRule, as_stop_rule

    def enough(state: State) -> bool:
        return state.samples >= 3

    rule = stop_rule_from_config(enough)
    assert isinstance(rule, FunctionRule) and rule.label == "enough"
    assert not rule(State(samples=2)) and rule(State(samples=3))
    either = budget_exhausted() | enough
    assert either.check(State(samples=3, next_batch=1)).reason() == "enough"
    flipped = enough | budget_exhausted()
    assert [p.rule for p in flipped.check(State(samples=0, next_batch=0)).parts] == [
        "enough",
        "budget_exhausted",
    ]
    both = enough & budget_exhausted()
    assert not both(State(samples=3, next_batch=1)) and both(State(samples=3, next_batch=0))
    assert as_stop_rule(rule) is rule
    with pytest.raises(ConfigError, match="Python function, which has no config form"):
        rule.config()


def test_a_callable_that_does_not_return_a_bool_is_refused_not_read_as_truthy() -> None:
    rule = stop_rule_from_config(lambda state: state.samples)
    with pytest.raises(ConfigError, match="returned int 2"):
        rule(State(samples=2))
    with pytest.raises(ConfigError, match="not int"):
        stop_rule_from_config(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="instance, not the class"):
        stop_rule_from_config(ACBeta)  # type: ignore[arg-type]


def test_an_old_stop_rule_name_is_refused_with_the_new_one() -> None:
    with pytest.raises(ConfigError, match="it is called 'budget-exhausted'"):
        stop_rule_from_config("budget_exhausted")
