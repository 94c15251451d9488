"""What one more sample is worth and costs (adaptive._value), and stopping on dollars."""

from __future__ import annotations

from typing import Any

import pytest
from adaptive_strategies import AdaptiveConsistency

from adaptive import (
    Client,
    Completion,
    ConfigError,
    ConsistencyPrior,
    FunctionEndpoint,
    Price,
    Request,
    Response,
    Usage,
)
from adaptive._value import expected_gain_per_sample, expected_sample_cost_usd, mean_sample_tokens

PRICE = Price(input=1.0, output=10.0)  # $ per million tokens


def test_gain_per_sample_is_the_best_batch_and_shrinks_as_the_lead_grows() -> None:
    prior = ConsistencyPrior()
    gains = [expected_gain_per_sample(prior, v1, v2) for v1, v2 in ((1, 0), (2, 1), (4, 0), (8, 0))]
    assert gains[0] > gains[2] > gains[3] > 0
    # At 3-1 one vote cannot flip the leader: the best batch is longer than one.
    assert prior.expected_gain(3, 1, 1) == 0.0 < expected_gain_per_sample(prior, 3, 1)
    assert expected_gain_per_sample(prior, 0, 0) == 0.0
    with pytest.raises(ConfigError):
        expected_gain_per_sample(prior, 2, 0, horizon=0)


def test_expected_cost_uses_the_observed_lengths_and_the_worst_case_before_any() -> None:
    assert mean_sample_tokens(0, 0, max_tokens=4000) == 4000.0  # nothing seen: the worst case
    assert mean_sample_tokens(3000, 3, max_tokens=4000) == 1000.0
    assert mean_sample_tokens(9000, 1, max_tokens=4000) == 4000.0  # never past max_tokens
    one = expected_sample_cost_usd(PRICE, prompt_tokens=100, sample_tokens=1000)
    assert one == pytest.approx((100 * 1.0 + 1000 * 10.0) / 1e6)
    four_as_n = expected_sample_cost_usd(PRICE, prompt_tokens=100, sample_tokens=1000, k=4)
    four_single = expected_sample_cost_usd(PRICE, prompt_tokens=100, sample_tokens=1000, k=4, prompt_copies=4)
    assert four_as_n == pytest.approx((100 + 40_000) / 1e6) and four_single > four_as_n
    with pytest.raises(ConfigError):
        mean_sample_tokens(10, -1, max_tokens=5)
    with pytest.raises(ConfigError):
        expected_sample_cost_usd(PRICE, prompt_tokens=1, sample_tokens=float("nan"))


def server(completion_tokens: int) -> FunctionEndpoint:
    calls = {"n": 0}

    def reply(request: Request) -> Response:
        i = calls["n"]
        calls["n"] += 1
        n = request.n
        answers = [f"The answer is {(i + j) % 2}." for j in range(n)]  # an even split
        return Response(
            completions=tuple(Completion(text=a) for a in answers),
            usage=Usage(prompt_tokens=10, completion_tokens=completion_tokens * n),
        )

    return FunctionEndpoint(reply, name="srv", price=PRICE)


@pytest.mark.asyncio
async def test_long_samples_stop_on_value_where_short_ones_go_on() -> None:
    # Same votes, same value of a right answer: the call whose samples run to 3,000 tokens
    # stops as not worth its cost; the one at 30 tokens samples on. The worst case
    # (max_tokens=16000) alone would stop both at their first chance.
    strategy: dict[str, Any] = {"max_samples": 24, "value_usd": 0.1, "min_gain": 0.0}
    results = {}
    for tokens in (30, 3000):
        async with Client(server(tokens)) as client:
            results[tokens] = await client.run(
                "q?", strategy=AdaptiveConsistency(**strategy), seed=0, max_tokens=16000
            )
    short, long = results[30], results[3000]
    assert long.stop_reason == "not_worth_cost"
    assert long.stop is not None and long.stop.threshold is not None
    assert short.generated > long.generated


def test_batch_sizing_weighs_the_expected_gain_against_the_expected_cost() -> None:
    from adaptive import ControllerConfig, State, low_marginal_gain
    from adaptive._controller import Controller

    controller = Controller(ControllerConfig())
    votes = {"a": 2, "b": 1}
    conf, gain = controller.assess(votes)
    state = State(round=1, samples=3, votes=votes, confidence=conf, marginal_gain=gain, next_batch=1)
    rule = low_marginal_gain(value_usd=1.0)
    cheap = controller.next_batch(state.replace(expected_cost_usd=1e-9), rule, cap=16)
    dear = controller.next_batch(state.replace(expected_cost_usd=0.5), rule, cap=16)
    # Dear: one sample already is not worth it; cheap: on until no batch could flip the leader.
    assert dear == 1 < cheap
