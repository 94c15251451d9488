"""The multi-answer confidence and gain (adaptive._multiway): pure math, no I/O."""

from __future__ import annotations

import math

import numpy as np
import pytest
from adaptive_strategies import AdaptiveConsistency

from adaptive import (
    Client,
    Completion,
    ConfigError,
    ConsistencyPrior,
    ControllerConfig,
    FunctionEndpoint,
    Request,
    Response,
    State,
    Usage,
)
from adaptive._controller import Controller
from adaptive._multiway import Posterior, contest_gain_per_vote, multiway_confidence, multiway_gain_per_sample
from adaptive._value import expected_gain_per_sample


def fitted() -> ConsistencyPrior:
    """A prior that has learned most questions are consistent and a few split."""
    prior = ConsistencyPrior()
    prior.fit([(10, 0)] * 40 + [(9, 1)] * 10 + [(6, 4)] * 5)
    return prior


@pytest.mark.parametrize("prior", [ConsistencyPrior(), fitted()], ids=["uniform", "fitted"])
def test_with_two_answers_and_no_abstentions_it_is_the_two_answer_model(prior: ConsistencyPrior) -> None:
    for v1, v2 in ((1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (6, 6), (12, 3)):
        counts = [v1, v2] if v2 else [v1]
        assert multiway_confidence(prior, counts) == prior.confidence(v1, v2)
        assert multiway_gain_per_sample(prior, counts) == pytest.approx(
            expected_gain_per_sample(prior, v1, v2), rel=1e-12
        )


@pytest.mark.parametrize("prior", [ConsistencyPrior(), fitted()], ids=["uniform", "fitted"])
def test_a_third_answer_lowers_the_confidence_and_raises_the_gain(prior: ConsistencyPrior) -> None:
    # A rival as strong as the runner-up: a second contest the leader may lose. (A much
    # weaker third answer, as at 6-2-1, mostly spends a sample outside the 6-2 contest.)
    for two, three in (([4, 1], [4, 1, 1]), ([5, 1], [5, 1, 1]), ([5, 2], [5, 2, 2])):
        assert multiway_confidence(prior, three) < multiway_confidence(prior, two)
        assert multiway_gain_per_sample(prior, three) > multiway_gain_per_sample(prior, two)


def test_abstentions_lower_the_gain_per_sample() -> None:
    prior = fitted()
    counts = [4, 1]
    gains = [multiway_gain_per_sample(prior, counts, a) for a in (0, 1, 3)]
    assert gains[0] > gains[1] > gains[2] > 0
    # every sample so far voted in the 4-1 contest except the abstentions: 5 of 5 + a
    assert gains[2] == pytest.approx(gains[0] * 5 / 8, rel=1e-12)


def _argmax_probability(alpha: list[int]) -> float:
    """P(the first of independent Gamma(alpha_i) draws is the largest), by quadrature.

    The argmax of Dirichlet(alpha) is that of independent Gamma(alpha_i, 1) draws; for whole
    shapes the Gamma CDF is 1 - exp(-x) sum_{k < a} x^k / k!.
    """
    x = np.linspace(0.0, 80.0, 400_001)

    def cdf(a: int) -> np.ndarray:
        return 1.0 - np.exp(-x) * sum(x**k / math.factorial(k) for k in range(a))

    a0 = alpha[0]
    density = x ** (a0 - 1) * np.exp(-x) / math.factorial(a0 - 1)
    integrand = density * np.prod([cdf(a) for a in alpha[1:]], axis=0)
    return float(np.sum((integrand[1:] + integrand[:-1]) / 2) * (x[1] - x[0]))


def test_multiway_confidence_is_a_lower_bound_tight_near_the_stopping_region() -> None:
    # Under the uniform prior each pairwise confidence is AC's Beta rule, the pairwise
    # marginal of Dirichlet(votes + 1): the joint P(leader is the mode) is the argmax
    # probability of that Dirichlet, which Boole's inequality must not exceed.
    prior = ConsistencyPrior()
    for counts in ([4, 1, 1], [5, 1, 1, 1], [6, 3, 1], [8, 1, 1], [10, 2, 2]):
        exact = _argmax_probability([c + 1 for c in counts])
        bound = multiway_confidence(prior, counts)
        assert bound <= exact + 1e-9
        if exact > 0.95:  # where a stop rule reads it, the bound is close
            assert exact - bound < 0.01, (counts, exact, bound)
    assert multiway_confidence(prior, [1, 1, 1]) == 0.0  # far from stopping it is loose, never < 0


def test_bad_input_is_refused() -> None:
    prior = ConsistencyPrior()
    with pytest.raises(ConfigError, match="ordered leader first"):
        multiway_confidence(prior, [1, 3])
    with pytest.raises(ConfigError, match="at least one vote"):
        multiway_confidence(prior, [])
    with pytest.raises(ConfigError, match="abstentions"):
        multiway_gain_per_sample(prior, [2, 1], -1)
    assert multiway_gain_per_sample(prior, []) == 0.0


def test_the_controller_reads_every_answer_only_when_asked() -> None:
    votes = {"a": 4, "b": 1, "c": 1}
    assert ControllerConfig().posterior == "multiway"  # the default since it was measured
    # gain_target="unlimited": the posterior's own gain (the default's budget target is
    # tested in test_budget_gain.py).
    default = Controller(ControllerConfig(posterior="two-answer", gain_target="unlimited"))
    multi = Controller(ControllerConfig(posterior="multiway", gain_target="unlimited"))
    conf, gain = default.assess(votes, 2)
    assert conf == default.prior.confidence(4, 1)  # "two-answer" reads the top two only
    assert gain is not None and gain() == expected_gain_per_sample(default.prior, 4, 1)
    conf_m, gain_m = multi.assess(votes, 2)
    assert conf_m == multiway_confidence(multi.prior, [4, 1, 1])
    assert gain_m is not None and gain_m() == multiway_gain_per_sample(multi.prior, [4, 1, 1], 2)
    assert multi.assess({}) == (None, None)
    # a hypothetical state keeps the abstentions: they still count against the gain
    state = State(votes=votes, abstentions=2, samples=8)
    after = multi.hypothetical(state, 2)
    assert after.abstentions == 2
    g = after.gain()
    assert g is not None and g == multiway_gain_per_sample(multi.prior, [6, 1, 1], 2)


@pytest.mark.parametrize("prior", [ConsistencyPrior(), fitted()], ids=["uniform", "fitted"])
def test_the_vectorised_contest_gain_is_the_two_answer_gain(prior: ConsistencyPrior) -> None:
    for v1 in range(1, 25):
        for v2 in range(v1 + 1):
            for horizon in (1, 3, 8, 40):
                expected = expected_gain_per_sample(prior, v1, v2, horizon=horizon)
                got = contest_gain_per_vote(prior, v1, v2, horizon)
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_the_contest_gain_cache_follows_a_refit() -> None:
    prior = ConsistencyPrior()
    before = contest_gain_per_vote(prior, 4, 1, 8)
    prior.fit([(10, 0)] * 200)  # a consistent model: 4-1 is now nearly settled
    after = contest_gain_per_vote(prior, 4, 1, 8)
    assert after == pytest.approx(expected_gain_per_sample(prior, 4, 1), rel=1e-9)
    assert after < before
    with pytest.raises(ConfigError, match="horizon"):
        contest_gain_per_vote(prior, 4, 1, 0)


@pytest.mark.asyncio
@pytest.mark.parametrize("posterior", ["two-answer", "multiway"])
async def test_a_call_reports_the_posterior_it_was_asked_for(posterior: Posterior) -> None:
    # The samples answer 7, 7, 7, 7, 3, 5, and one says nothing (an abstention).
    texts = ["The answer is 7."] * 4 + ["The answer is 3.", "The answer is 5.", "No idea."]
    sent = [0]

    def reply(request: Request) -> Response:
        first, sent[0] = sent[0], sent[0] + request.n
        completions = tuple(Completion(text=texts[(first + j) % len(texts)]) for j in range(request.n))
        return Response(
            completions=completions, usage=Usage(prompt_tokens=5, completion_tokens=5 * request.n)
        )

    # Whole batches (no early cancel): the rules first read 4-1-1 with one abstention.
    config = ControllerConfig(
        posterior=posterior,
        gain_target="unlimited",
        calibrate=False,
        first_batch=7,
        max_batch=7,
        early_cancel=False,
    )
    async with Client(FunctionEndpoint(reply, name="srv"), controller=config) as client:
        result = await client.run("q?", strategy=AdaptiveConsistency(max_samples=14), seed=0)
    counts = sorted(result.votes.values(), reverse=True)
    assert len(counts) == 3 and result.generated > 7  # the first batch's 4-1-1 did not stop it
    prior = ConsistencyPrior()
    multi = posterior == "multiway"
    expected = multiway_confidence(prior, counts) if multi else prior.confidence(counts[0], counts[1])
    assert result.confidence == pytest.approx(expected, rel=1e-12)
    # The decision after the first batch read the gain with its abstention counted.
    first = next(e for e in result.trace if e.data.get("samples") == 7 and "marginal_gain" in e.data)
    gain = multiway_gain_per_sample(prior, [4, 1, 1], 1) if multi else expected_gain_per_sample(prior, 4, 1)
    assert first.data["marginal_gain"] == pytest.approx(gain, abs=1e-6)  # events round to 6 places
