"""Self-consistency and adaptive consistency over scripted endpoints."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import (
    Budget,
    Client,
    Completion,
    ConfigError,
    ControllerConfig,
    FunctionEndpoint,
    Request,
    Result,
    strategy_from_config,
)
from adaptive._models import TokenLogprob
from adaptive._voting import logprob_weight


def endpoint(answer: Callable[[Request], str | Completion], *, supports_n: bool = False) -> FunctionEndpoint:
    seen: list[Request] = []

    def fn(request: Request) -> Any:
        seen.append(request)
        if supports_n:
            return [
                answer(request.model_copy(update={"seed": (request.seed or 0) + i})) for i in range(request.n)
            ]
        return answer(request)

    ep = FunctionEndpoint(fn, name="scripted", in_thread=False, supports_n=supports_n)
    ep.seen = seen  # type: ignore[attr-defined]
    return ep


def by_seed(mapping: Callable[[int], str]) -> Callable[[Request], str]:
    def answer(request: Request) -> str:
        assert request.seed is not None
        return f"Let me think. The answer is {mapping(request.seed)}."

    return answer


async def run(ep: FunctionEndpoint, strategy: Any, **kwargs: Any) -> Result:
    config = kwargs.pop("controller", ControllerConfig(batch_as_n=False))
    return await Client(ep, controller=config).run("Question?", strategy=strategy, seed=0, **kwargs)


# -- fixed n -----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [1, 5, 17])
@pytest.mark.parametrize("supports_n", [False, True])
async def test_fixed_n_draws_exactly_n(n: int, supports_n: bool) -> None:
    ep = endpoint(by_seed(lambda s: str(s % 3)), supports_n=supports_n)
    config = ControllerConfig(batch_as_n=supports_n, max_batch=4)
    result = await run(ep, SelfConsistency(n=n), controller=config)
    assert result.generated == n
    assert sum(result.votes.values()) == n
    assert result.stop_reason == "strategy_done"
    assert result.details == {"samples": n, "abstentions": 0}
    assert result.strategy == "self-consistency"


@pytest.mark.asyncio
async def test_fixed_n_refuses_stop_rules_before_sending() -> None:
    ep = endpoint(by_seed(lambda s: "7"))
    with pytest.raises(ConfigError, match=r"AdaptiveConsistency\(max_samples=9\)"):
        await run(ep, SelfConsistency(n=9), stop="ac-beta")  # a fixed n is not stoppable
    assert ep.seen == []  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_fixed_n_uses_temperature_and_distinct_seeds() -> None:
    ep = endpoint(by_seed(lambda s: "7"))
    await run(ep, SelfConsistency(n=4))
    seen: list[Request] = ep.seen  # type: ignore[attr-defined]
    assert sorted(r.seed for r in seen) == [0, 1, 2, 3]  # type: ignore[type-var]
    assert all(r.temperature == 0.7 for r in seen)


# -- adaptive ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_adaptive_stops_early_on_unanimous_answers() -> None:
    ep = endpoint(by_seed(lambda s: "42"))
    result = await run(ep, AdaptiveConsistency(max_samples=40))
    assert result.answer == "42"
    assert result.generated <= 6
    assert result.stop_reason in ("confident", "low_gain")
    assert result.confidence is not None and result.confidence > 0.9


@pytest.mark.asyncio
async def test_adaptive_keeps_going_on_split_answers() -> None:
    ep = endpoint(by_seed(lambda s: random.Random(s).choice(["1", "2"])))
    result = await run(ep, AdaptiveConsistency(max_samples=40))
    assert result.generated >= 12
    unanimous = await run(endpoint(by_seed(lambda s: "1")), AdaptiveConsistency(max_samples=40))
    assert result.generated > 2 * unanimous.generated


@pytest.mark.asyncio
async def test_adaptive_respects_max_samples_and_budget() -> None:
    ep = endpoint(by_seed(lambda s: str(s)))  # every answer differs: never confident
    capped = await run(ep, AdaptiveConsistency(max_samples=7))
    assert capped.generated == 7 and capped.stop_reason == "strategy_done"
    budgeted = await run(ep, AdaptiveConsistency(max_samples=40), budget=Budget(samples=5))
    assert budgeted.generated == 5 and budgeted.stop_reason == "budget"


def test_default_stop_rules() -> None:
    rule = AdaptiveConsistency(confidence=0.9, min_gain=0.01, value_usd=2.0).default_stop()
    assert rule is not None
    assert rule.config() == {
        "any": [
            {"name": "confident", "threshold": 0.9, "min_votes": 2},
            {"name": "low-marginal-gain", "min_gain": 0.01, "value_usd": 2.0, "min_votes": 2},
            {"name": "budget-exhausted"},
        ]
    }
    assert SelfConsistency().default_stop() is None


def test_registered_by_name() -> None:
    assert strategy_from_config("adaptive", {"max_samples": 8}) == AdaptiveConsistency(max_samples=8)
    assert strategy_from_config({"name": "self-consistency", "n": 3}) == SelfConsistency(n=3)
    with pytest.raises(ConfigError, match="max_samples"):
        strategy_from_config("adaptive", {"max_samples": 0})
    with pytest.raises(ConfigError, match="weighting"):
        SelfConsistency(weighting="loud")


# -- weighting ---------------------------------------------------------------------------


def with_logprobs(text: str, logprob: float, tokens: int = 4) -> Completion:
    return Completion(
        text=text, logprobs=tuple(TokenLogprob(token="t", logprob=logprob) for _ in range(tokens))
    )


@pytest.mark.asyncio
async def test_logprob_weighting_can_outvote_the_majority() -> None:
    # Three unsure samples say 1, two sure samples say 2.
    def answer(request: Request) -> Completion:
        assert request.logprobs, "logprob weighting asks the endpoint for logprobs"
        assert request.seed is not None
        if request.seed < 3:
            return with_logprobs("The answer is 1.", -3.0)
        return with_logprobs("The answer is 2.", -0.05)

    ep = endpoint(answer)
    weighted = await run(ep, SelfConsistency(n=5, weighting="logprob"))
    assert weighted.answer == "2"
    assert weighted.votes == {"1": 3, "2": 2}  # votes are counts, leader first
    # The vote confidence is about the count leader "1": it is not reported for "2".
    assert weighted.confidence is None
    majority = await run(
        endpoint(lambda r: answer(r.model_copy(update={"logprobs": True}))), SelfConsistency(n=5)
    )
    assert majority.answer == "1"
    assert majority.confidence is not None
    means = sorted({s.mean_logprob for s in weighted.samples if s.mean_logprob is not None})
    assert means == pytest.approx([-3.0, -0.05])
    assert 2 * logprob_weight(-0.05) > 3 * logprob_weight(-3.0)  # why 2 wins


@pytest.mark.asyncio
async def test_samples_without_logprobs_weigh_nothing() -> None:
    def answer(request: Request) -> Completion:
        assert request.seed is not None
        if request.seed == 0:
            return with_logprobs("The answer is 5.", -0.1)
        return Completion(text="The answer is 6.")

    with pytest.warns(UserWarning, match=r"2 of 3 samples from .*scripted.* came without logprobs"):
        result = await run(endpoint(answer), SelfConsistency(n=3, weighting="logprob"))
    assert result.answer == "5"
    assert result.details["unweighted"] == 2 and result.details["fallback"] is None


@pytest.mark.asyncio
async def test_score_weighting() -> None:
    def answer(request: Request) -> Completion:
        assert request.seed is not None
        if request.seed < 2:
            return Completion(text="The answer is 8.", score=0.1)
        return Completion(text="The answer is 9.", score=0.9)

    result = await run(endpoint(answer), SelfConsistency(n=3, weighting="score"))
    assert result.answer == "9"
    plain = await run(endpoint(answer), SelfConsistency(n=3))
    assert plain.answer == "8"


# -- answers -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pre_extracted_answers_are_normalized() -> None:
    raw = [" 18.0 ", "$18", "18", "\\boxed{18}", "19"]

    def answer(request: Request) -> Completion:
        assert request.seed is not None
        return Completion(text="(reasoning not recorded)", answer=raw[request.seed])

    result = await run(endpoint(answer), SelfConsistency(n=5))
    assert result.votes == {"18": 4, "19": 1}
    assert result.answer == "18"


@pytest.mark.asyncio
async def test_unextractable_samples_abstain() -> None:
    def answer(request: Request) -> str:
        assert request.seed is not None
        return "I am not sure." if request.seed % 2 else "The answer is 3."

    result = await run(endpoint(answer), SelfConsistency(n=4))
    assert result.answer == "3"
    assert result.votes == {"3": 2}
    assert result.details == {"samples": 4, "abstentions": 2}
    nothing = await run(endpoint(lambda r: "no idea"), SelfConsistency(n=3))
    assert nothing.answer is None and nothing.votes == {}


@pytest.mark.asyncio
async def test_custom_answer_spec() -> None:
    ep = endpoint(lambda r: "So... Answer: B")
    result = await run(ep, SelfConsistency(n=2, answer="multiple-choice"))
    assert result.answer is not None and result.answer.lower() == "b"


@pytest.mark.asyncio
async def test_tie_breaking_is_deterministic_first_seen_wins() -> None:
    order = ["x", "y", "y", "x"]  # a 2-2 tie; "x" appears first
    ep = endpoint(by_seed(lambda s: order[s]))
    results = [await run(ep, SelfConsistency(n=4)) for _ in range(3)]
    assert {r.answer for r in results} == {"x"}
    flipped = ["y", "x", "x", "y"]
    again = await run(endpoint(by_seed(lambda s: flipped[s])), SelfConsistency(n=4))
    assert again.answer == "y"


@pytest.mark.asyncio
async def test_final_text_is_the_first_sample_with_the_winning_answer() -> None:
    texts = ["The answer is 1. (a)", "The answer is 2. (b)", "The answer is 2. (c)"]
    ep = endpoint(lambda r: texts[r.seed or 0])
    result = await run(ep, SelfConsistency(n=3))
    assert result.answer == "2"
    assert result.text == "The answer is 2. (b)"
