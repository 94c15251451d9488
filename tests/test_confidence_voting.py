"""Confidence (DeepConf style) and length as voting options of the self-consistency strategies."""

from __future__ import annotations

from typing import Any

import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import Client, Completion, ConfigError, ControllerConfig, FunctionEndpoint, Request, Result
from adaptive._models import TokenLogprob
from adaptive.confidence import TraceConfidence
from adaptive.sim import SimEndpoint, demo_problems


def trace(answer: str, logprobs: list[float] | None) -> Completion:
    lps = None if logprobs is None else tuple(TokenLogprob(token="t", logprob=v) for v in logprobs)
    return Completion(text=f"Thinking. The answer is {answer}.", logprobs=lps)


def scripted(traces: list[Completion]) -> FunctionEndpoint:
    seen: list[Request] = []

    def fn(request: Request) -> Completion:
        seen.append(request)
        assert request.seed is not None
        return traces[request.seed]

    ep = FunctionEndpoint(fn, name="scripted", in_thread=False)
    ep.seen = seen  # type: ignore[attr-defined]
    return ep


async def run(ep: Any, strategy: Any) -> Result:
    client = Client(ep, controller=ControllerConfig(batch_as_n=False))
    return await client.run("Q?", strategy=strategy, seed=0)


STEADY_UNSURE = [-0.4] * 100  # mean -0.4, no stretch worse than that
WAVERING = [-0.05] * 90 + [-3.0] * 10  # mean -0.345, one stretch at -3


@pytest.mark.asyncio
async def test_confidence_weighting_sees_the_wavering_stretch_the_mean_hides() -> None:
    traces = [trace("1", WAVERING), trace("1", WAVERING), trace("2", STEADY_UNSURE)]
    lowest = TraceConfidence(measure="lowest", window=10)
    strategy = SelfConsistency(n=3, weighting="confidence", trace_confidence=lowest)
    by_conf = await run(scripted(traces), strategy)
    by_mean = await run(scripted(traces), SelfConsistency(n=3, weighting="logprob"))
    assert by_conf.answer == "2"  # 2 x exp(-3) < exp(-0.4)
    assert by_mean.answer == "1"  # 2 x exp(-0.345) > exp(-0.4)


@pytest.mark.asyncio
async def test_keep_top_lets_only_the_most_confident_vote_and_says_which_were_dropped() -> None:
    traces = [trace("1", [-2.0] * 5)] * 3 + [trace("2", [-0.1] * 5)] * 2
    ep = scripted(traces)
    result = await run(ep, SelfConsistency(n=5, keep_top=0.4))
    assert all(r.logprobs for r in ep.seen)  # the filter asks for logprobs
    assert result.answer == "2"
    assert result.details["dropped"] == [0, 1, 2] and result.details["kept"] == 2
    assert result.details["confidences"] == pytest.approx([-2.0] * 3 + [-0.1] * 2)
    plain = await run(scripted(traces), SelfConsistency(n=5))
    assert plain.answer == "1"


@pytest.mark.asyncio
async def test_keep_top_without_logprobs_warns_and_lets_all_vote() -> None:
    traces = [trace("1", None)] * 3 + [trace("2", None)] * 2
    with pytest.warns(UserWarning, match=r"keep_top=0.4 needs samples with logprobs, but none of the 5"):
        result = await run(scripted(traces), SelfConsistency(n=5, keep_top=0.4))
    assert result.answer == "1"
    assert result.details["filter_fallback"] == "all voted: no sample came with logprobs"
    assert result.details["dropped"] == []


@pytest.mark.asyncio
async def test_keep_top_leaves_out_samples_without_logprobs_and_says_how_many() -> None:
    traces = [trace("1", None)] * 3 + [trace("2", [-1.0] * 3)] * 2
    with pytest.warns(UserWarning, match=r"3 of 5 samples .* came without logprobs and were left out"):
        result = await run(scripted(traces), SelfConsistency(n=5, keep_top=1.0))
    assert result.answer == "2"


@pytest.mark.asyncio
async def test_confidence_weighting_without_logprobs_falls_back_visibly() -> None:
    traces = [trace("1", None)] * 2 + [trace("2", None)]
    with pytest.warns(UserWarning, match="fell back on plain majority"):
        result = await run(scripted(traces), SelfConsistency(n=3, weighting="confidence"))
    assert result.answer == "1" and result.details["fallback"].startswith("majority")


@pytest.mark.asyncio
async def test_length_weighting_counts_shorter_traces_more() -> None:
    def sized(answer: str, tokens: int) -> Completion:
        return Completion(text=f"The answer is {answer}.", completion_tokens=tokens)

    traces = [sized("7", 400), sized("7", 500), sized("8", 100)]
    result = await run(scripted(traces), SelfConsistency(n=3, weighting="length"))
    assert result.answer == "8"  # 1/100 > 1/400 + 1/500
    assert (await run(scripted(traces), SelfConsistency(n=3))).answer == "7"


def test_a_confidence_measure_nothing_reads_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="trace_confidence only applies"):
        SelfConsistency(trace_confidence=TraceConfidence(measure="tail"))
    with pytest.raises(ConfigError):
        AdaptiveConsistency(keep_top=0.0)
    with pytest.raises(ConfigError):
        SelfConsistency(weighting="loudness")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_the_top_source_asks_for_alternatives() -> None:
    ep = scripted([trace("1", [-0.1])] * 2)
    strategy = SelfConsistency(n=2, keep_top=0.5, trace_confidence=TraceConfidence(source="top"))
    with pytest.raises(ConfigError, match="top_logprobs"):
        await run(ep, strategy)  # the scripted traces carry no alternatives: said, not guessed
    assert all(r.top_logprobs == 5 for r in ep.seen)


@pytest.mark.asyncio
async def test_adaptive_consistency_filters_on_the_simulator() -> None:
    problem = demo_problems(3, seed=5)[2]
    ep = SimEndpoint()
    result = await Client(ep).run(
        problem.question, strategy=AdaptiveConsistency(max_samples=12, keep_top=0.5), seed=3
    )
    n = result.details["samples"]
    assert len(result.details["confidences"]) == n and None not in result.details["confidences"]
    assert result.details["kept"] == max(1, -(-n // 2))
    assert len(result.details["dropped"]) == n - result.details["kept"]
    assert sum(result.votes.values()) <= result.details["kept"]  # only the kept samples vote
