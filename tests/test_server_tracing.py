"""The proxy's spans: a SERVER span per chat request, parenting the call's adaptive.run span."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator

import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from otel_helpers import reset_tracer_provider
from proxy_helpers import QUESTION, sim_upstream

from adaptive import ConfigError
from adaptive.server import ServerConfig, start_proxy
from adaptive.server._tracing import configure_tracing

MESSAGES = [{"role": "user", "content": QUESTION}]
SERVER = "POST /v1/chat/completions"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with sim_upstream() as url:
        yield url


def server_spans(exporter: InMemorySpanExporter, n: int) -> list[ReadableSpan]:
    """The first `n` server spans, once ended (a span ends just after its response is sent)."""
    for _ in range(500):
        found = [s for s in exporter.get_finished_spans() if s.name == SERVER]
        if len(found) >= n:
            return found
        time.sleep(0.01)
    raise AssertionError(f"expected {n} server spans, got {exporter.get_finished_spans()}")


def children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


@pytest.mark.parametrize("stream", [False, True])
def test_the_request_span_parents_the_call_span(
    exporter: InMemorySpanExporter, upstream: str, stream: bool
) -> None:
    cfg = ServerConfig(upstream={"url": upstream}, tenants={"acme": {"keys": ["sk-acme"], "total_usd": 1.0}})
    with start_proxy(cfg) as p:
        client = openai.OpenAI(base_url=p.url + "/v1", api_key="sk-acme", max_retries=0)
        extra = {"adaptive": {"strategy": {"name": "self-consistency", "n": 3}}}
        if stream:
            list(
                client.chat.completions.create(
                    model="sim-reasoner", messages=MESSAGES, stream=True, extra_body=extra
                )
            )
        else:
            client.chat.completions.create(model="sim-reasoner", messages=MESSAGES, extra_body=extra)
        (server,) = server_spans(exporter, 1)
    spans = exporter.get_finished_spans()
    assert server.kind == SpanKind.SERVER and server.parent is None
    attrs = dict(server.attributes or {})
    assert attrs["http.request.method"] == "POST" and attrs["http.route"] == "/v1/chat/completions"
    assert attrs["http.response.status_code"] == 200 and attrs["adaptive.tenant"] == "acme"
    assert "sk-acme" not in str(attrs)
    (run,) = children(spans, server)
    assert run.name == "adaptive.run self-consistency" and run.kind == SpanKind.INTERNAL
    assert run.context is not None and server.context is not None
    assert run.context.trace_id == server.context.trace_id
    requests = children(spans, run)
    assert requests and all(s.kind == SpanKind.CLIENT for s in requests)
    assert attrs["adaptive.cost_usd"] == pytest.approx(dict(run.attributes or {})["adaptive.spent_usd"])


def test_an_incoming_traceparent_continues_the_callers_trace(
    exporter: InMemorySpanExporter, upstream: str
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with start_proxy(ServerConfig(upstream={"url": upstream})) as p:
        client = openai.OpenAI(base_url=p.url + "/v1", api_key="unused", max_retries=0)
        client.chat.completions.create(
            model="sim-reasoner",
            messages=MESSAGES,
            extra_headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        (server,) = server_spans(exporter, 1)
    assert server.context is not None and f"{server.context.trace_id:032x}" == trace_id
    assert server.parent is not None and f"{server.parent.span_id:016x}" == "00f067aa0ba902b7"


def test_a_refused_request_is_a_server_span_with_its_status(
    exporter: InMemorySpanExporter, upstream: str
) -> None:
    cfg = ServerConfig(upstream={"url": upstream}, tenants={"acme": {"keys": ["sk-acme"]}})
    with start_proxy(cfg) as p:
        client = openai.OpenAI(base_url=p.url + "/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="sim-reasoner", messages=MESSAGES)
        client.models.list()  # other routes get no span
        (server,) = server_spans(exporter, 1)
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 403
    assert server.status.status_code == StatusCode.UNSET  # a 4xx is the client's, not the server's
    assert not children(exporter.get_finished_spans(), server)  # nothing was run
    assert [s.name for s in exporter.get_finished_spans()] == [SERVER]


def test_configure_tracing_sets_the_global_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_tracer_provider(monkeypatch)
    provider = configure_tracing("console")
    try:
        assert trace.get_tracer_provider() is provider
        assert provider.resource.attributes["service.name"] == "adaptive-proxy"
    finally:
        provider.shutdown()


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.exporter") is not None, reason="an OTLP exporter is installed"
)
def test_otlp_without_its_exporter_says_what_to_install() -> None:
    with pytest.raises(ConfigError, match="pip install opentelemetry-exporter-otlp"):
        configure_tracing("otlp")
