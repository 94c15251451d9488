"""The iterator form of a call: `async with client.stream(...) as call: async for event in call`."""

from __future__ import annotations

import asyncio
import logging

import anyio
import pytest
from adaptive_strategies import AdaptiveConsistency

from adaptive import (
    Budget,
    Client,
    ConfigError,
    ControllerConfig,
    EndpointError,
    FunctionEndpoint,
    Price,
    Request,
    TraceEvent,
    Usage,
)

PRICE = Price(input=1.0, output=2.0)
ANSWERS = ["7", "7", "8", "7", "7", "8", "7", "7", "7", "7", "7", "7"] * 4


def endpoint(delay: float = 0.0) -> FunctionEndpoint:
    answers = iter(ANSWERS)

    async def reply(request: Request) -> str:
        if delay:
            await anyio.sleep(delay)
        return f"So the answer is {next(answers)}."

    return FunctionEndpoint(reply, name="fn", price=PRICE)


KW = {"strategy": AdaptiveConsistency(max_samples=12), "seed": 5, "budget": Budget(usd=1.0)}
CONFIG = ControllerConfig(batch_as_n=False, max_batch=2, first_batch=2)


def same_call(a: object, b: object) -> None:
    for field in ("answer", "cost_usd", "usage", "stop_reason", "votes", "charges", "samples"):
        assert getattr(a, field) == getattr(b, field), field

    def shape(r: object) -> list[object]:  # the clock figures aside
        return [(e.kind, e.round, {k: v for k, v in e.data.items() if k != "elapsed"}) for e in r.trace]  # type: ignore[attr-defined]

    assert shape(a) == shape(b)


@pytest.mark.asyncio
async def test_the_events_are_exactly_the_trace_in_order_and_the_result_is_runs() -> None:
    async with Client(endpoint(), controller=CONFIG) as client:
        plain = await client.run("Q?", **KW)  # type: ignore[arg-type]
    seen: list[TraceEvent] = []
    async with Client(endpoint(), controller=CONFIG) as client:
        async with client.stream("Q?", **KW) as call:  # type: ignore[arg-type]
            with pytest.raises(ConfigError, match="not finished"):
                call.result  # noqa: B018
            async for event in call:
                seen.append(event)
        result = call.result
    assert seen == result.trace and len(seen) > 4
    assert {"decide", "send", "done"} <= {e.kind for e in seen}
    same_call(result, plain)


@pytest.mark.asyncio
async def test_breaking_out_early_finishes_the_call_and_leaves_nothing_running() -> None:
    async with Client(endpoint(0.01), controller=CONFIG) as client:
        plain = await client.run("Q?", **KW)  # type: ignore[arg-type]
    tasks = len(asyncio.all_tasks())
    async with Client(endpoint(0.01), controller=CONFIG) as client:
        async with client.stream("Q?", **KW) as call:  # type: ignore[arg-type]
            async for event in call:
                if event.kind == "send":
                    break  # stop watching: the call goes on
        assert len(asyncio.all_tasks()) == tasks  # nothing is left running after the block
        result = call.result
    same_call(result, plain)  # the same requests, charges and answer as `run`
    assert result.trace[0].kind == "decide" and len(result.trace) > 3


@pytest.mark.asyncio
async def test_an_exception_in_the_block_cancels_the_call_charges_it_and_propagates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = len(asyncio.all_tasks())
    async with Client(endpoint(0.5), controller=CONFIG) as client:
        with caplog.at_level(logging.DEBUG, logger="adaptive"), pytest.raises(KeyError, match="mine"):
            async with client.stream("Q?", **KW) as call:  # type: ignore[arg-type]
                async for event in call:
                    if event.kind == "send":
                        raise KeyError("mine")
    assert len(asyncio.all_tasks()) == tasks
    with pytest.raises(ConfigError, match="cancelled"):
        call.result  # noqa: B018
    # The two requests in flight were cancelled and charged (the logger saw every event).
    lines = [r.getMessage() for r in caplog.records if r.name == "adaptive"]
    assert sum(" send #" in m for m in lines) == 2
    cancels = [m for m in lines if " cancel {" in m]
    assert len(cancels) == 2 and all("'usd': 0.00" in m for m in cancels)


@pytest.mark.asyncio
async def test_a_failing_call_raises_its_error_at_the_end_of_the_loop_or_on_leaving_the_block() -> None:
    def down(request: Request) -> str:
        raise EndpointError("503 from the server", endpoint="fn", usage=Usage())

    async with Client(FunctionEndpoint(down, name="fn", price=PRICE)) as client:
        seen: list[str] = []
        with pytest.raises(EndpointError, match="503") as info:
            async with client.stream("Q?", budget=Budget(usd=1.0)) as call:
                async for event in call:
                    seen.append(event.kind)
        assert seen[-1] == "error" and info.value.receipt is not None  # every event first
        with pytest.raises(EndpointError, match="503"):
            call.result  # noqa: B018
        with pytest.raises(EndpointError, match="503"):  # the loop left early: on leaving the block
            async with client.stream("Q?", budget=Budget(usd=1.0)) as call:
                async for _ in call:
                    break


@pytest.mark.asyncio
async def test_bad_arguments_are_refused_at_once_and_a_call_runs_once() -> None:
    async with Client(endpoint()) as client:
        with pytest.raises(ConfigError, match="on_event must be a callable"):
            client.stream("Q?", on_event="print")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="prompt is empty"):
            client.stream("  ")
        call = client.stream("Q?")
        with pytest.raises(ConfigError, match="inside its"):
            await call.__anext__()
        async with call:
            pass
        assert call.result.answer == "7"
        with pytest.raises(ConfigError, match="runs once"):
            async with call:
                pass


def test_the_sync_client_streams_too() -> None:
    from adaptive import SyncClient

    with SyncClient(endpoint(), controller=CONFIG) as client:
        plain = client.run("Q?", **KW)
        with client.stream("Q?", **KW) as call:
            seen = list(call)
        assert seen == call.result.trace and "send" in {e.kind for e in seen}
        assert call.result.answer == plain.answer
        with client.stream("Q?", **KW) as call:
            for _ in call:
                break  # the call still finishes
        assert call.result.answer == plain.answer


def test_a_sync_stream_raises_the_calls_error() -> None:
    from adaptive import SyncClient

    def down(request: Request) -> str:
        raise EndpointError("503 from the server", endpoint="fn", usage=Usage())

    seen: list[str] = []
    client = SyncClient(FunctionEndpoint(down, name="fn", price=PRICE))
    try:
        with pytest.raises(EndpointError, match="503"), client.stream("Q?", budget=Budget(usd=1.0)) as call:
            for event in call:
                seen.append(event.kind)
    finally:
        client.close()
    assert seen[0] == "decide" and seen[-1] == "error"  # every event, then the error
