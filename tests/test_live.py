"""Live events (`on_event`) and the `adaptive` logger."""

from __future__ import annotations

import logging

import anyio
import pytest
from adaptive_strategies import AdaptiveConsistency

import adaptive._live
from adaptive import Client, ConfigError, FunctionEndpoint, Price, TraceEvent

PRICE = Price(input=1.0, output=2.0)


def endpoint() -> FunctionEndpoint:
    answers = iter(["7", "7", "8", "7", "7", "7", "7", "7"] * 4)
    return FunctionEndpoint(lambda req: f"So the answer is {next(answers)}.", price=PRICE)


async def run(on_event: object = None) -> object:
    async with Client(endpoint()) as client:
        return await client.run(
            "Q?",
            strategy=AdaptiveConsistency(max_samples=8),
            seed=5,
            on_event=on_event,  # type: ignore[arg-type]
        )


@pytest.mark.asyncio
async def test_every_event_reaches_a_sync_callback_in_order_and_is_the_trace() -> None:
    seen: list[TraceEvent] = []
    result = await run(seen.append)
    assert seen == result.trace  # type: ignore[attr-defined]
    # The call's last decision is its stop (a request already out may report after it).
    assert [e.data["action"] for e in seen if e.kind == "decide"][-1] == "stop"
    assert {e.kind for e in seen} >= {"decide", "done"}


@pytest.mark.asyncio
async def test_a_slow_async_callback_changes_nothing_that_is_sent_or_charged() -> None:
    seen: list[str] = []

    async def slow(event: TraceEvent) -> None:
        await anyio.sleep(0.01)
        seen.append(event.kind)

    plain, live = await run(), await run(slow)
    assert [e.kind for e in live.trace] == seen  # type: ignore[attr-defined]  # all delivered
    for field in ("answer", "cost_usd", "usage", "stop_reason", "votes"):
        assert getattr(live, field) == getattr(plain, field)
    assert len(live.samples) == len(plain.samples)  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_failing_callback_is_logged_and_the_call_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: TraceEvent) -> None:
        raise RuntimeError("my callback is broken")

    plain = await run()
    with caplog.at_level(logging.WARNING, logger="adaptive"):
        live = await run(broken)
    assert live.cost_usd == plain.cost_usd and live.answer == plain.answer  # type: ignore[attr-defined]
    raised = [r for r in caplog.records if "on_event callback raised" in r.getMessage()]
    assert len(raised) == len(live.trace) and raised[0].exc_info is not None  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_callback_that_never_returns_is_dropped_after_the_drain_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(adaptive._live, "DRAIN_SECONDS", 0.2)

    async def stuck(event: TraceEvent) -> None:
        await anyio.sleep(3600)

    with caplog.at_level(logging.WARNING, logger="adaptive"), anyio.fail_after(10):
        result = await run(stuck)  # returns: nothing is left running
    assert result.answer == "7"  # type: ignore[attr-defined]
    (dropped,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert f"{len(result.trace) - 1} event(s) dropped" in dropped  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_on_event_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="on_event must be a callable"):
        await run(on_event="print")


@pytest.mark.asyncio
async def test_the_adaptive_logger_gets_debug_events_and_one_info_line_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert logging.getLogger("adaptive").handlers == []  # the library configures no handler
    with caplog.at_level(logging.DEBUG, logger="adaptive"):
        result = await run()
    mine = [r for r in caplog.records if r.name == "adaptive"]
    debug = [r for r in mine if r.levelno == logging.DEBUG]
    info = [r for r in mine if r.levelno == logging.INFO]
    assert len(debug) == len(result.trace)  # type: ignore[attr-defined]
    (summary,) = info
    assert "adaptive: answer '7'" in summary.getMessage() and "stopped:" in summary.getMessage()
