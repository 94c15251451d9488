"""Confidence (DeepConf style) and length as voting options of the self-consistency strategies."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from adaptive_strategies import AdaptiveConsistency, EarlyStop, SelfConsistency

from adaptive import (
    Client,
    Completion,
    ConfigError,
    ControllerConfig,
    FunctionEndpoint,
    Request,
    Response,
    Result,
    Usage,
)
from adaptive._models import TokenLogprob
from adaptive.confidence import TraceConfidence
from adaptive.endpoints import OpenAIChat
from adaptive.endpoints._base import current_meter
from adaptive.sim import SimEndpoint, SimModel, demo_problems, serve_sim


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
    result = await run(scripted(traces), SelfConsistency(n=3, weighting="shorter"))
    assert result.answer == "8"  # 1/100 > 1/400 + 1/500
    assert (await run(scripted(traces), SelfConsistency(n=3))).answer == "7"
    traces = [sized("7", 100), sized("7", 150), sized("8", 400)]
    assert (await run(scripted(traces), SelfConsistency(n=3, weighting="longer"))).answer == "8"
    with pytest.warns(UserWarning, match="came without a token count"):
        mixed = [sized("7", 100), Completion(text="The answer is 8."), sized("8", 50)]
        await run(scripted(mixed), SelfConsistency(n=3, weighting="longer"))


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


# -- early stop (DeepConf online) over a streaming endpoint ---------------------------------

STEADY = [-0.1] * 40
LOW_STRETCH = [-0.1] * 10 + [-3.0] * 30  # falls below any steady threshold at token 13


def streaming(traces: dict[int, list[float]], *, report: bool = True) -> FunctionEndpoint:
    """An endpoint that streams each trace token by token, metering as an HTTP stream does."""
    sent: list[Request] = []

    async def fn(request: Request) -> Response:
        sent.append(request)
        assert request.seed is not None and request.logprobs
        values = traces[request.seed]
        meter = current_meter()
        answer = "9" if values is LOW_STRETCH else "4"
        got: list[TokenLogprob] = []
        for i, v in enumerate(values):
            tok = TokenLogprob(token="t", logprob=v)
            got.append(tok)
            if meter is not None:
                meter.usage = Usage(prompt_tokens=5, completion_tokens=i + 1)
                meter.samples = 1
                if report:
                    meter.tokens(0, [tok])
            await anyio.lowlevel.checkpoint()  # a checkpoint per token, as a network read has
        c = Completion(text=f"The answer is {answer}.", logprobs=tuple(got), completion_tokens=len(got))
        return Response(completions=(c,), usage=Usage(prompt_tokens=5, completion_tokens=len(got)))

    ep = FunctionEndpoint(fn, name="streamer", in_thread=False)
    ep.sent = sent  # type: ignore[attr-defined]
    return ep


@pytest.mark.asyncio
async def test_early_stop_cuts_low_confidence_traces_and_charges_what_was_streamed() -> None:
    # Seeds 0-3 warm up (steady); later, every other trace has a long low stretch ("9").
    traces = {s: (LOW_STRETCH if s >= 4 and s % 2 else STEADY) for s in range(20)}
    strategy = SelfConsistency(n=10, early_stop=EarlyStop(warmup=4, keep=0.9, window=4))
    client = Client(streaming(traces), controller=ControllerConfig(batch_as_n=False))
    result = await client.run("Q?", strategy=strategy, seed=0)
    es = result.details["early_stop"]
    assert es["threshold"] == pytest.approx(-0.1)
    assert es["cut"] == 3 and es["watched"] == 6  # seeds 5, 7, 9 cut; 4, 6, 8 ran to the end
    # Cut at the first full window below -0.1: tokens 10 (-0.1) + 1, 2, 3 at -3 -> token 11.
    assert [t["tokens"] for t in es["cut_traces"]] == [11, 11, 11]
    assert result.answer == "4" and result.votes == {"4": 7}  # cut traces do not vote
    # Charged: 7 full traces of 40 tokens, 3 cut ones of 11, plus 10 prompts of 5.
    assert result.usage.completion_tokens == 7 * 40 + 3 * 11
    assert result.usage.prompt_tokens == 10 * 5
    cancelled = [c for c in result.charges if c.status == "cancelled"]
    assert len(cancelled) == 3 and all(c.usage.completion_tokens == 11 for c in cancelled)


@pytest.mark.asyncio
async def test_early_stop_on_an_endpoint_that_streams_no_logprobs_warns() -> None:
    traces = {s: LOW_STRETCH if s >= 4 else STEADY for s in range(8)}
    strategy = SelfConsistency(n=8, early_stop=EarlyStop(warmup=4, window=4))
    client = Client(streaming(traces, report=False), controller=ControllerConfig(batch_as_n=False))
    with pytest.warns(UserWarning, match="streamed no logprobs for any, so no trace could be cut"):
        result = await client.run("Q?", strategy=strategy, seed=0)
    assert result.details["early_stop"]["cut"] == 0
    assert result.votes == {"4": 4, "9": 4}


@pytest.mark.asyncio
async def test_early_stop_without_logprobs_warns_that_no_threshold_was_set() -> None:
    traces = [trace("1", None)] * 6
    with pytest.warns(UserWarning, match="early_stop needs logprobs to set its threshold"):
        result = await run(scripted(traces), SelfConsistency(n=6, early_stop=EarlyStop(warmup=2)))
    assert result.details["early_stop"]["threshold"] is None


@pytest.mark.asyncio
async def test_early_stop_cuts_real_streams_from_the_sim_server() -> None:
    question = demo_problems(6, seed=5)[3].question
    strategy = SelfConsistency(n=12, early_stop=EarlyStop(warmup=4, keep=0.5, window=16))
    async with serve_sim(seconds_per_token=0.0002, jitter=0.0) as server:
        ep = OpenAIChat(
            "sim-reasoner",
            base_url=server.url + "/v1",
            api_key="sk-test",
            price=SimModel().price,
            stream=True,
        )
        async with ep:
            client = Client(ep, controller=ControllerConfig(batch_as_n=False))
            result = await client.run(question, strategy=strategy, seed=11)
    es = result.details["early_stop"]
    assert es["watched"] == 8 and es["cut"] >= 1
    cancelled = sorted(c.usage.completion_tokens for c in result.charges if c.status == "cancelled")
    assert len(cancelled) == es["cut"]
    # Each cut request is charged the tokens streamed until its cut, not its worst case: at
    # least what the watch had seen when it cut (a chunk or two already read may follow).
    seen = sorted(t["tokens"] for t in es["cut_traces"])
    assert all(s <= c < s + 16 for c, s in zip(cancelled, seen, strict=True)), (cancelled, seen)
    assert max(cancelled) < (strategy.sampling.max_tokens or 0)
    assert all(t["lowest"] < es["threshold"] for t in es["cut_traces"])
    assert result.details["samples"] == 12 - es["cut"]
