"""Arguments that cannot apply are refused, and fallbacks taken are said (issue #9, item 7).

Each test here failed on the code before: `AdaptiveConsistency(n=2)` was accepted and drew up
to 40 samples, `SelfConsistency(n=16)` ignored `stop=`, logprob weighting without logprobs
quietly voted by majority, a raising verifier left only `details["fallback"]`, and a tree
search whose candidates were all unscored answered None.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import (
    Client,
    Completion,
    ConfigError,
    ControllerConfig,
    Final,
    FunctionEndpoint,
    Request,
    SingleSample,
    strategy_from_config,
    vote_margin,
)


def endpoint(text: str = "The answer is 7.") -> FunctionEndpoint:
    seen: list[Request] = []

    def fn(request: Request) -> Completion:
        seen.append(request)
        return Completion(text=text)

    ep = FunctionEndpoint(fn, name="scripted", in_thread=False)
    ep.seen = seen  # type: ignore[attr-defined]
    return ep


def client(ep: FunctionEndpoint, **kwargs: Any) -> Client:
    return Client(ep, controller=ControllerConfig(batch_as_n=False), **kwargs)


# -- 1. AdaptiveConsistency takes no n ----------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: AdaptiveConsistency(n=2),
        lambda: strategy_from_config({"name": "adaptive", "n": 2}),
    ],
)
def test_adaptive_consistency_refuses_n_and_names_the_fix(build: Any) -> None:
    with pytest.raises(ConfigError, match=r"max_samples=2.*SelfConsistency\(n=2\)"):
        build()


def test_adaptive_consistency_has_no_n_field() -> None:
    assert "n" not in AdaptiveConsistency.model_fields
    assert AdaptiveConsistency(max_samples=2).max_samples == 2


# -- 2. a stop rule the strategy cannot honour --------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("strategy", [SelfConsistency(n=16), SingleSample(), "single"])
async def test_unstoppable_strategies_refuse_a_stop_rule_before_sending(strategy: Any) -> None:
    ep = endpoint()
    with pytest.raises(ConfigError, match=r"would be ignored.*given as stop="):
        await client(ep).run("Q?", strategy=strategy, stop=vote_margin(3))
    assert ep.seen == []  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_client_default_stop_rule_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"Client\(stop=...\)"):
        client(endpoint(), strategy=SelfConsistency(n=4), stop=vote_margin(3))
    ep = endpoint()
    c = client(ep, stop=vote_margin(3))  # the default strategy may be replaced per call
    with pytest.raises(ConfigError, match=r"Client\(stop=...\)"):
        await c.run("Q?", strategy=SelfConsistency(n=4))
    assert ep.seen == []  # type: ignore[attr-defined]
    result = await c.run("Q?", strategy=AdaptiveConsistency(max_samples=16), seed=0)
    assert result.generated < 16  # honoured: unanimous answers stop at the margin


@pytest.mark.asyncio
async def test_adaptive_consistency_honours_the_rule_its_fixed_twin_refused() -> None:
    result = await client(endpoint()).run(
        "Q?", strategy=AdaptiveConsistency(max_samples=16), stop=vote_margin(3), seed=0
    )
    assert result.generated == 3


@pytest.mark.asyncio
async def test_default_stop_settings_and_a_given_rule_conflict() -> None:
    ep = endpoint()
    with pytest.raises(ConfigError, match=r"confidence.*only shape its default stop rule"):
        await client(ep).run("Q?", strategy=AdaptiveConsistency(confidence=0.9), stop=vote_margin(3))
    assert ep.seen == []  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_strategies_without_check_stop_rule_accept_every_rule() -> None:
    class Bare:
        name = "bare"

        def start(self, task: Any) -> Any:
            return SingleSample().start(task)

        def default_stop(self) -> None:
            return None

    result = await client(endpoint()).run("Q?", strategy=Bare(), stop=vote_margin(3))
    assert result.answer == "7"


# -- 3. a weighting with nothing to weigh by ----------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("weighting", "what"), [("logprob", "logprobs"), ("score", "a score")])
async def test_weighted_vote_without_weights_says_it_fell_back(weighting: str, what: str) -> None:
    with pytest.warns(Final.Warning, match=r"none of the 3 from .*scripted.* had any.*plain majority") as got:
        result = await client(endpoint()).run("Q?", strategy=SelfConsistency(n=3, weighting=weighting))
    assert what in str(got[0].message)
    assert result.answer == "7"
    assert result.details["weighting"] == weighting
    assert result.details["fallback"].startswith(f"majority: no sample came with {what}")


def test_final_warnings_are_emitted_as_adaptive_warnings() -> None:
    assert issubclass(Final.Warning, UserWarning)
    with pytest.warns(Final.Warning, match="fell back"):
        final = Final(answer="1", warnings=("x: fell back",))
    assert final.warnings == ("x: fell back",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Final(answer="1")  # no warnings, nothing emitted
