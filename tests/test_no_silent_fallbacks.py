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
from adaptive_strategies import (
    DVTS,
    AdaptiveConsistency,
    BeamSearch,
    BestOfN,
    ExactChecker,
    FunctionVerifier,
    SelfConsistency,
    VerifierError,
)

from adaptive import (
    AdaptiveError,
    Client,
    Completion,
    ConfigError,
    ControllerConfig,
    Final,
    FunctionEndpoint,
    Request,
    Sampling,
    SingleSample,
    strategy_from_config,
    vote_margin,
)
from adaptive.sim import SimEndpoint, demo_problems

QUESTION = demo_problems(1)[0].question


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
    # The same words on the result and its receipt, not only as a Python warning.
    assert len(result.warnings) == 1 and what in result.warnings[0]
    assert f"warning     {result.warnings[0]}" in result.receipt()


def test_final_warnings_are_emitted_as_adaptive_warnings() -> None:
    assert issubclass(Final.Warning, UserWarning)
    with pytest.warns(Final.Warning, match="fell back"):
        final = Final(answer="1", warnings=("x: fell back",))
    assert final.warnings == ("x: fell back",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Final(answer="1")  # no warnings, nothing emitted


# -- 4. a verifier that raises -------------------------------------------------------------


def crash(question: str, solution: str) -> float:
    return 1 / 0


async def acrash(question: str, solution: str) -> float:
    raise RuntimeError("scorer down")


def strategies_with(verifier: Any, **kwargs: Any) -> list[Any]:
    sampling = Sampling(temperature=0.8, max_tokens=200)
    return [
        BestOfN(n=3, verifier=verifier, sampling=sampling, **kwargs),
        BeamSearch(width=2, candidates=4, prm=verifier, sampling=sampling, max_depth=3, **kwargs),
        DVTS(subtrees=2, width=2, prm=verifier, sampling=sampling, max_depth=3, **kwargs),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("fn", [crash, acrash], ids=["sync", "async"])
@pytest.mark.parametrize("index", [0, 1, 2], ids=["best-of-n", "beam-search", "dvts"])
async def test_a_raising_verifier_raises_by_default(fn: Any, index: int) -> None:
    strategy = strategies_with(FunctionVerifier(fn))[index]
    want = "ZeroDivisionError: division by zero" if fn is crash else "RuntimeError: scorer down"
    async with Client(SimEndpoint()) as c:
        with pytest.raises(VerifierError, match=rf"verifier '{fn.__name__}' raised.*{want}.*skip") as got:
            await c.run(QUESTION, strategy=strategy, seed=1)
    err = got.value
    assert isinstance(err, AdaptiveError) and err.verifier == fn.__name__
    assert err.failures and err.failures[0]["error"] == want
    assert err.receipt is not None and err.receipt.generated >= 1  # what was spent before


@pytest.mark.asyncio
@pytest.mark.parametrize("fn", [crash, acrash], ids=["sync", "async"])
@pytest.mark.parametrize("index", [0, 1, 2], ids=["best-of-n", "beam-search", "dvts"])
async def test_a_raising_verifier_is_skipped_and_recorded_on_request(fn: Any, index: int) -> None:
    strategy = strategies_with(FunctionVerifier(fn), on_verifier_error="skip")[index]
    async with Client(SimEndpoint()) as c:
        with pytest.warns(Final.Warning) as got:
            result = await c.run(QUESTION, strategy=strategy, seed=1)
    messages = [str(w.message) for w in got]
    assert any(
        f"verifier '{fn.__name__}' raised on" in m and "on_verifier_error='skip'" in m for m in messages
    )
    errors = result.details["verifier_errors"]
    assert errors and all(e["error"].split(":")[0] in ("ZeroDivisionError", "RuntimeError") for e in errors)
    # Nothing could be scored, so the fallback is said too, and there is still an answer.
    assert result.details["fallback"] and result.answer is not None


@pytest.mark.asyncio
async def test_an_exact_checker_whose_check_raises_is_a_verifier_failure_not_a_zero() -> None:
    def check(solution: str) -> bool:
        raise RuntimeError("harness down")

    async with Client(SimEndpoint()) as c:
        with pytest.raises(VerifierError, match="RuntimeError: harness down") as got:
            await c.run(QUESTION, strategy=BestOfN(n=3, verifier=ExactChecker(check)), seed=1)
        assert got.value.receipt is not None and got.value.receipt.generated >= 1
        with pytest.warns(Final.Warning) as warned:
            result = await c.run(
                QUESTION,
                strategy=BestOfN(n=3, verifier=ExactChecker(check), on_verifier_error="skip"),
                seed=1,
            )
    messages = [str(w.message) for w in warned]
    assert any("verifier 'exact' raised on 3" in m for m in messages)
    assert any("plain majority vote" in m for m in messages)
    assert [e["error"] for e in result.details["verifier_errors"]] == ["RuntimeError: harness down"] * 3
    assert result.details["fallback"] and result.answer is not None


def test_on_verifier_error_is_validated() -> None:
    with pytest.raises(ConfigError, match="on_verifier_error"):
        BestOfN(on_verifier_error="ignore")


# -- 5. nothing scored: fall back, say so, still answer ------------------------------------


def never(question: str, solution: str) -> float | None:
    return None  # an unparseable judge reply, in effect: unscored, not an error


@pytest.mark.asyncio
@pytest.mark.parametrize("index", [1, 2], ids=["beam-search", "dvts"])
async def test_tree_search_with_nothing_scored_falls_back_and_says_so(index: int) -> None:
    strategy = strategies_with(FunctionVerifier(never))[index]
    async with Client(SimEndpoint()) as c:
        with pytest.warns(Final.Warning, match=r"scored none of a subtree's candidates.*generation order"):
            result = await c.run(QUESTION, strategy=strategy, seed=1)
    assert result.answer is not None  # before: None, with stop_reason "strategy_done", silently
    assert "generation order" in result.details["fallback"]
    assert any(entry["unscored_fallback"] for entry in result.details["beams"])
    assert result.details["verifier_errors"] == []


@pytest.mark.asyncio
async def test_tree_search_on_the_simulator_with_the_default_judge_never_ends_silently() -> None:
    async with Client(SimEndpoint()) as c:
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always", Final.Warning)
            result = await c.run(QUESTION, strategy=BeamSearch(width=2, candidates=4, max_depth=3), seed=1)
    # Either the judge scored something, or the fallback was taken and said.
    assert result.answer is not None or result.details["fallback"]
    assert bool(result.details["fallback"]) == any(issubclass(w.category, Final.Warning) for w in got)


@pytest.mark.asyncio
async def test_best_of_n_with_nothing_scored_warns() -> None:
    async with Client(SimEndpoint()) as c:
        with pytest.warns(Final.Warning, match=r"best-of-n: majority: verifier 'never' scored none of the 3"):
            result = await c.run(QUESTION, strategy=strategies_with(FunctionVerifier(never))[0], seed=1)
    assert result.answer is not None and result.details["fallback"].startswith("majority")
