"""The API key never leaks: logs at DEBUG everywhere, results, traces, receipts, errors, spans.

Real loopback HTTP (tests/loopback_wire.py) with a key on the endpoint; the server echoes the
whole request headers (the key included) in its error bodies, as a careless gateway might. One
call has a retried 500 then an answer, one streams, one fails with 401.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from adaptive_strategies import SelfConsistency
from fakehttp import HTTPRequest, HTTPResponse, SSEResponse
from loopback_wire import ANTHROPIC, CHAT, KEY, Kind, scripted
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_helpers import in_memory_spans

from adaptive import AdaptiveError, Budget, Client, Result, TraceEvent
from adaptive.endpoints import RetryPolicy

LOGGERS = ("", "adaptive", "httpx", "httpcore", "anyio", "asyncio", "opentelemetry")


class Everything(logging.Handler):
    """Keeps every record, formatted the way a real handler would (traceback included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        out = []
        for r in self.records:
            out += [r.getMessage(), repr(r.args), self.format(r)]
            if r.exc_info and r.exc_info[1] is not None:
                out.append("".join(traceback.format_exception(r.exc_info[1])))
        return out


@pytest.fixture
def logs() -> Iterator[Everything]:
    handler = Everything()
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    root = logging.getLogger()
    root.addHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from in_memory_spans(monkeypatch)


def echo(req: HTTPRequest, status: int) -> HTTPResponse:
    headers = dict(req.headers)
    assert KEY in json.dumps(headers)  # the key was sent: the server has it to echo
    return HTTPResponse.json({"error": {"message": f"status {status}; you sent {headers}"}}, status)


def span_texts(exporter: InMemorySpanExporter) -> list[str]:
    out = []
    for span in exporter.get_finished_spans():
        out += [span.name, repr(dict(span.attributes or {})), str(span.status.description)]
        out += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
    return out


def result_texts(result: Result) -> list[str]:
    return [
        repr(result),
        str(result),
        result.model_dump_json(),
        result.receipt(),
        json.dumps([e.model_dump() for e in result.trace]),
        *(repr(e) for e in result.trace),
        *(repr(c) for c in result.charges),
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [CHAT, ANTHROPIC], ids=lambda k: k.name)
async def test_the_key_never_appears_anywhere(
    kind: Kind, logs: Everything, spans: InMemorySpanExporter
) -> None:
    texts: list[str] = []
    seen: list[TraceEvent] = []
    async with scripted() as (server, base):
        calls = {"n": 0}

        def reply(req: HTTPRequest) -> HTTPResponse | SSEResponse:
            calls["n"] += 1
            if calls["n"] == 1:
                return echo(req, 500)  # retried
            if calls["n"] >= 4:
                return echo(req, 401)  # the key is wrong: not retried
            stream = bool(req.json().get("stream"))
            return kind.answer(["The answer is 4."], kind.usage(), stream=stream)

        server.reply = reply
        retry = RetryPolicy(attempts=2, initial_wait=0.0, max_wait=0.0)
        for stream in (False, True):
            endpoint = kind.endpoint(base, stream=stream, retry=retry)
            texts += [repr(endpoint), str(endpoint), endpoint.name]
            async with Client(endpoint) as client:
                result = await client.run(
                    "2 + 2?",
                    strategy=SelfConsistency(n=1),
                    budget=Budget(usd=1.0),
                    max_tokens=16,
                    on_event=seen.append,
                )
                assert result.answer == "4"
                texts += result_texts(result)
        assert calls["n"] == 3
        assert any(e.kind == "error" and e.data.get("retried") for e in seen)  # the retried 500
        async with Client(kind.endpoint(base, retry=retry)) as client:
            with pytest.raises(AdaptiveError) as info:
                async with client.stream("2 + 2?", budget=Budget(usd=1.0), max_tokens=16) as call:
                    async for event in call:
                        seen.append(event)
    error = info.value
    assert "401" in str(error)
    texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [repr(vars(error))]
    receipt: Any = getattr(error, "receipt", None)
    if receipt is not None:
        texts += result_texts(receipt)
    texts += [repr(e) for e in seen]
    texts += logs.texts()
    texts += span_texts(spans)
    # There was plenty to look at: debug lines from every layer, spans for every request.
    names = {r.name.split(".")[0] for r in logs.records}
    assert {"adaptive", "httpx", "httpcore"} <= names, names
    requests = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert len(requests) == 3  # one per call; the retried 500 is an event on the first
    assert sum(1 for s in requests for e in s.events if e.name == "retry") == 1
    assert any("you sent" in t for t in texts)  # the echoing body was seen, scrubbed
    leaks = [t for t in texts if KEY in t]
    assert not leaks, leaks[:3]
