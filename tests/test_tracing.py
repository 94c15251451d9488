"""OpenTelemetry spans (adaptive/_tracing.py): the call span, one child per request, no-op without it."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest
from adaptive_strategies import AdaptiveConsistency
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from otel_helpers import reset_tracer_provider

import adaptive._tracing
from adaptive import (
    Budget,
    Client,
    Completion,
    ControllerConfig,
    EndpointError,
    FunctionEndpoint,
    Price,
    Request,
    Response,
    Usage,
)

PRICE = Price(input=1.0, output=2.0)


def scripted(delay_after: int = 10**9, fail_at: int = -1) -> FunctionEndpoint:
    calls = 0

    async def reply(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise EndpointError("the server said no", endpoint="srv", usage=Usage())
        if calls > delay_after:
            await anyio.sleep(5)  # still in flight when the rules stop the round: cancelled
        text = f"So the answer is {7 if calls % 4 else 8}."
        return Response(
            completions=(Completion(text=text, finish_reason="stop"),),
            usage=Usage(prompt_tokens=11, completion_tokens=6),
            model="scripted-2024",
        )

    endpoint = FunctionEndpoint(reply, name="scripted", price=PRICE)
    endpoint.model = "scripted"  # a model name, as an HTTP endpoint has
    return endpoint


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


@pytest.mark.asyncio
async def test_one_call_span_with_a_child_per_request_under_the_callers_span(
    exporter: InMemorySpanExporter,
) -> None:
    tracer = trace.get_tracer("app")
    async with Client(scripted()) as client:
        with tracer.start_as_current_span("my request handler") as parent:
            result = await client.run(
                "Q?",
                strategy=AdaptiveConsistency(max_samples=6),
                budget=Budget(usd=1.0),
                seed=3,
                max_tokens=16,
            )
    spans = exporter.get_finished_spans()
    [call] = by_name(spans, "adaptive.run")
    requests = by_name(spans, "chat ")
    assert call.name == "adaptive.run adaptive" and call.kind == SpanKind.INTERNAL
    assert call.parent is not None and call.parent.span_id == parent.get_span_context().span_id
    assert call.context.trace_id == parent.get_span_context().trace_id
    a = call.attributes
    assert a is not None
    assert a["adaptive.strategy"] == "adaptive" and a["adaptive.budget.usd"] == 1.0
    assert "adaptive.budget.tokens" not in a  # only the limits set
    assert a["adaptive.spent_usd"] == result.cost_usd and a["adaptive.samples"] == len(result.samples)
    assert a["adaptive.stop_reason"] == result.stop_reason and a["adaptive.confidence"] == result.confidence
    sends = [e for e in result.trace if e.kind == "send"]
    assert len(requests) == len(sends) == len(result.charges) >= 2
    for span in requests:
        assert span.parent is not None and span.parent.span_id == call.context.span_id
        assert span.kind == SpanKind.CLIENT and span.name == "chat scripted"
        r = span.attributes
        assert r is not None
        assert r["gen_ai.operation.name"] == "chat" and r["gen_ai.request.model"] == "scripted"
        assert r["gen_ai.request.max_tokens"] == 16 and r["gen_ai.response.model"] == "scripted-2024"
        assert r["gen_ai.request.seed"] >= 3  # seeded from the call's seed and the sample's index
        assert r["gen_ai.usage.input_tokens"] == 11 and r["gen_ai.usage.output_tokens"] == 6
        assert r["gen_ai.response.finish_reasons"] == ("stop",)
        assert r["adaptive.purpose"] == "generate" and r["adaptive.reserved_usd"] > r["adaptive.usd"] > 0
        assert span.status.status_code == StatusCode.UNSET
        # Within the call's interval, from its "send" to its "done".
        assert call.start_time <= span.start_time <= span.end_time <= call.end_time  # type: ignore[operator]
    rid = {s.attributes["adaptive.request_id"]: s for s in requests}  # type: ignore[index]
    for send in sends:
        done = next(
            e for e in result.trace if e.kind == "done" and e.data["request_id"] == send.data["request_id"]
        )
        span = rid[send.data["request_id"]]
        assert span.end_time - span.start_time == pytest.approx((done.t - send.t) * 1e9, abs=2000)  # type: ignore[operator]


@pytest.mark.asyncio
async def test_cancelled_requests_end_with_an_error_status_named_cancelled(
    exporter: InMemorySpanExporter,
) -> None:
    config = ControllerConfig(batch_as_n=False, max_batch=4, first_batch=4)
    async with Client(scripted(delay_after=3), controller=config) as client:
        result = await client.run(
            "Q?", strategy="adaptive", stop="vote-margin", budget=Budget(usd=1.0), seed=1, max_tokens=16
        )
    assert result.cancelled >= 1
    cancelled = [
        s for s in by_name(exporter.get_finished_spans(), "chat ") if s.status.status_code == StatusCode.ERROR
    ]
    assert len(cancelled) == result.cancelled
    for span in cancelled:
        assert span.status.description == "cancelled"
        assert span.attributes is not None and span.attributes["error.type"] == "cancelled"
        assert "adaptive.usd" in span.attributes  # still charged


@pytest.mark.asyncio
async def test_a_failed_request_and_a_failed_call_have_error_spans(exporter: InMemorySpanExporter) -> None:
    async with Client(scripted(fail_at=1)) as client:
        with pytest.raises(EndpointError, match="said no"):
            await client.run("Q?", budget=Budget(usd=1.0), max_tokens=16)
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "chat ")
    [call] = by_name(spans, "adaptive.run")
    for span in (request, call):
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description == "the server said no"
        assert span.attributes is not None and span.attributes["error.type"] == "EndpointError"
    assert call.attributes is not None and call.attributes["adaptive.stop_reason"] == "error"


@pytest.mark.asyncio
async def test_a_refusal_is_an_event_on_the_call_span(exporter: InMemorySpanExporter) -> None:
    async with Client(scripted()) as client:
        result = await client.run(
            "Q?", strategy="self-consistency", budget=Budget(tokens=3 * 40), max_tokens=16
        )
    [call] = by_name(exporter.get_finished_spans(), "adaptive.run")
    refusals = [e for e in call.events if e.name == "adaptive.refuse"]
    assert len(refusals) == sum(1 for e in result.trace if e.kind == "refuse") >= 1
    assert refusals[0].attributes is not None and refusals[0].attributes["adaptive.limit"] == "tokens"


@pytest.mark.asyncio
async def test_with_the_api_but_no_sdk_provider_nothing_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_tracer_provider(monkeypatch)  # the API's default: a proxy, every span a no-op
    built: list[object] = []
    monkeypatch.setattr(adaptive._tracing, "CallSpans", lambda *a: built.append(a))
    async with Client(scripted()) as client:
        result = await client.run("Q?", budget=Budget(usd=1.0), max_tokens=16)
    assert result.answer is not None and built == []


@pytest.mark.asyncio
async def test_without_opentelemetry_nothing_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` now fails
    monkeypatch.setattr(adaptive._tracing, "_otel", None)  # as in a process that never had it
    async with Client(scripted()) as client:
        result = await client.run("Q?", strategy="adaptive", budget=Budget(usd=1.0), max_tokens=16)
    assert result.answer == "7" and adaptive._tracing._otel is False
    assert adaptive._tracing.start_call("x", None, "e", object()) is None  # type: ignore[arg-type]


def test_importing_adaptive_imports_no_opentelemetry() -> None:
    code = "import sys, adaptive, adaptive_strategies; print('opentelemetry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.asyncio
async def test_a_tracing_failure_is_logged_and_never_ends_the_call(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: object, event: object) -> None:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(adaptive._tracing.CallSpans, "_on", broken)
    async with Client(scripted()) as client:
        result = await client.run("Q?", strategy="adaptive", budget=Budget(usd=1.0), max_tokens=16)
    assert result.answer == "7"
    warned = [r for r in caplog.records if "tracing: could not record" in r.getMessage()]
    assert len(warned) == 1  # once per call, then no more spans for it
    [call] = by_name(exporter.get_finished_spans(), "adaptive.run")
    assert call.attributes is not None and call.attributes["adaptive.stop_reason"] == result.stop_reason


@pytest.mark.asyncio
async def test_the_iterator_form_is_traced_under_the_callers_span(exporter: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("app")
    async with Client(scripted()) as client:
        with tracer.start_as_current_span("handler") as parent:
            async with client.stream("Q?", budget=Budget(usd=1.0), max_tokens=16) as call:
                kinds = [event.kind async for event in call]
    assert "send" in kinds
    [span] = by_name(exporter.get_finished_spans(), "adaptive.run")
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
