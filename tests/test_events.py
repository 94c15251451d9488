"""The event recorder: one source for the trace and the receipt, with live subscribers."""

from __future__ import annotations

from typing import Any

import pytest

from adaptive import (
    Client,
    ConfigError,
    Evidence,
    Final,
    FunctionEndpoint,
    Outcome,
    Plan,
    Request,
    State,
    StopRule,
    Task,
    TraceEvent,
)
from adaptive._events import Recorder


@pytest.mark.asyncio
async def test_subscribers_see_every_event_as_it_is_recorded() -> None:
    seen: list[TraceEvent] = []
    recorder = Recorder([seen.append])
    later: list[TraceEvent] = []
    recorder.emit("decide", action="continue", calls=2)
    recorder.subscribe(later.append)
    recorder.round += 1
    recorder.emit("stop", reason="budget")
    assert seen == recorder.trace() == recorder.events
    assert [(e.kind, e.round, e.data) for e in seen] == [
        ("decide", 0, {"action": "continue", "calls": 2}),
        ("stop", 1, {"reason": "budget"}),
    ]
    assert later == seen[1:]  # a subscriber sees what is emitted after it subscribed
    assert recorder.charges() == []


class _NoAnswerOf:
    def plan(self, state: State) -> Plan | None:
        return None

    def observe(self, outcome: Outcome) -> None:
        pass

    def evidence(self) -> Evidence:
        return Evidence()

    def finish(self, state: State) -> Final:
        return Final(answer=None)


class _Incomplete:
    name = "incomplete"

    def start(self, task: Task) -> Any:
        return _NoAnswerOf()

    def default_stop(self) -> StopRule | None:
        return None


@pytest.mark.asyncio
async def test_a_run_without_answer_of_is_refused_before_anything_is_sent() -> None:
    async def never(request: Request) -> str:
        raise AssertionError("nothing is sent")

    async with Client(FunctionEndpoint(never, name="fake")) as client:
        with pytest.raises(ConfigError, match="answer_of"):
            await client.run("q?", strategy=_Incomplete())
