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


# -- "send" and the request id that pairs a request's events ---------------------------------
def _pairs(trace: list[TraceEvent]) -> dict[int, list[TraceEvent]]:
    by_id: dict[int, list[TraceEvent]] = {}
    for event in trace:
        if "request_id" in event.data:
            by_id.setdefault(event.data["request_id"], []).append(event)
    return by_id


def _check_pairing(trace: list[TraceEvent]) -> None:
    """Every sent request: "send" first, retried errors, then exactly one end; refusals alone."""
    for rid, events in _pairs(trace).items():
        kinds = [e.kind for e in events]
        if kinds[0] != "send":
            assert kinds == ["refuse"], (rid, kinds)  # never sent: no "send", nothing else
            continue
        ends = [
            e
            for e in events[1:]
            if e.kind in ("done", "cancel") or (e.kind == "error" and not e.data.get("retried"))
        ]
        assert len(ends) == 1, (rid, kinds)
        tail = events[events.index(ends[0]) + 1 :]
        assert all(e.kind == "overrun" for e in tail), (rid, kinds)  # an overrun follows its end
        assert all(e.data["endpoint"] == events[0].data["endpoint"] for e in events if "endpoint" in e.data)
        assert ends[0].t >= events[0].t


@pytest.mark.asyncio
async def test_every_request_has_one_send_and_one_end_with_the_same_id() -> None:
    from adaptive import Budget, ControllerConfig, Price, ResponseError, Usage
    from adaptive._models import Completion, Response

    calls = 0

    async def reply(request: Request) -> Response | str:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ResponseError("malformed", endpoint="srv")
        if calls > 4:
            import anyio

            await anyio.sleep(0.05)  # late answers: cancelled once the rule says stop
        text = f"So the answer is {7 if calls % 3 else 8}."
        return Response(
            completions=(Completion(text=text, finish_reason="stop"),),
            usage=Usage(prompt_tokens=5, completion_tokens=4),
            model="scripted-1",
        )

    price = Price(input=1.0, output=2.0)
    config = ControllerConfig(batch_as_n=False, max_batch=6, first_batch=6)
    async with Client(FunctionEndpoint(reply, name="srv", price=price), controller=config) as client:
        result = await client.run(
            "Q?", strategy="adaptive", stop="vote-margin", budget=Budget(usd=0.002), seed=1, max_tokens=8
        )
    trace = result.trace
    _check_pairing(trace)
    sends = [e for e in trace if e.kind == "send"]
    ends = [e for e in trace if e.kind in ("done", "cancel", "error")]
    assert len(sends) == len(result.charges) == len(ends)  # one charge per request sent
    assert {e.kind for e in ends} >= {"done", "error"}
    first = sends[0].data
    assert first["operation"] == "chat" and first["n"] == 1 and first["max_tokens"] == 8
    assert first["usd"] > 0 and first["tokens"] > 8 and first["samples"] == 1
    # Every "send" reserved at least what its end booked.
    by_id = _pairs(trace)
    for send in sends:
        end = next(e for e in by_id[send.data["request_id"]][1:] if e.kind in ("done", "cancel", "error"))
        assert end.data["usd"] <= send.data["usd"] + 1e-12
    done = [e.data for e in trace if e.kind == "done"]
    assert all(d["model"] == "scripted-1" and d["finish_reasons"] == ["stop"] for d in done)
    assert all(d["input_tokens"] == 5 and d["output_tokens"] == 4 for d in done)
    # The answers received are the receipt's answers, in arrival order.
    assert [a for d in done for a in d["answers"]] == [s.answer for s in result.samples]


@pytest.mark.asyncio
async def test_a_refused_request_has_an_id_of_its_own_and_no_send() -> None:
    from adaptive import Budget, Price
    from adaptive._ledger import prompt_token_bound

    price = Price(input=1.0, output=2.0)
    one = price.worst_case_pico(
        prompt_token_bound(Request(messages=({"role": "user", "content": "Q?"},), max_tokens=8)), 8
    )
    async with Client(FunctionEndpoint(lambda r: "The answer is 7.", price=price)) as client:
        result = await client.run(
            "Q?", strategy="adaptive", stop="vote-margin", budget=Budget(usd=one * 2.5 / 1e12), max_tokens=8
        )
    _check_pairing(result.trace)
    refused = [e for e in result.trace if e.kind == "refuse"]
    sent = {e.data["request_id"] for e in result.trace if e.kind == "send"}
    assert refused and all(e.data["request_id"] not in sent for e in refused)
