"""OpenTelemetry in the proxy: a server span per chat request, parenting the call's spans.

`ServerSpans` wraps the ASGI app. Each `POST /v1/chat/completions` is one span of kind SERVER
named ``POST /v1/chat/completions``, with the HTTP semantic-convention attributes
(`http.request.method`, `http.route`, `url.path`, `url.scheme`, `server.address`,
`server.port`, `network.protocol.version`, `http.response.status_code`; `error.type` and
status ERROR for a 5xx) and the proxy's own (`adaptive.tenant`, the tenant's name, never its
key; `adaptive.cost_usd`; `adaptive.samples`; `adaptive.stop_reason`). It is the current span
while the call runs, so the SDK's ``adaptive.run`` span (adaptive/_tracing.py) and its request
spans are its children. An incoming W3C `traceparent` header makes it a child of the caller's
trace (the global propagator of opentelemetry-api).

Spans go to the global tracer provider, as in the SDK: embed `create_app` in a process that
sets one, or let `adaptive serve --otel console|otlp` set one up (`configure_tracing`). With
no provider (or without opentelemetry at all) a request costs one check and builds nothing.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._exceptions import ConfigError
from .._tracing import _api, tracer

__all__ = ["ServerSpans", "annotate", "configure_tracing"]

ROUTE = "/v1/chat/completions"


def _tracer() -> tuple[Any, Any] | None:
    """`(opentelemetry.trace, tracer)`, or None when no SDK provider would record anything."""
    return tracer("adaptive.server")


class ServerSpans:
    """ASGI middleware: one SERVER span around each chat request (see the module docstring).

    Args:
        app: The app it wraps.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ROUTE or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        found = _tracer()
        if found is None:
            await self.app(scope, receive, send)
            return
        trace, tracer = found
        from opentelemetry import propagate

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        server = scope.get("server") or (None, None)
        attrs = {
            "http.request.method": "POST",
            "http.route": ROUTE,
            "url.path": ROUTE,
            "url.scheme": scope.get("scheme", "http"),
            "server.address": server[0],
            "server.port": server[1],
            "network.protocol.version": scope.get("http_version"),
        }
        span = tracer.start_span(
            f"POST {ROUTE}",
            context=propagate.extract(headers),
            kind=trace.SpanKind.SERVER,
            attributes={k: v for k, v in attrs.items() if v is not None},
        )

        async def traced_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                span.set_attribute("http.response.status_code", status)
                if status >= 500:  # server spans: only 5xx is the server's error
                    span.set_attribute("error.type", str(status))
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
            await send(message)

        with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
            await self.app(scope, receive, traced_send)


def annotate(tenant: str, status: int, cost_usd: float, samples: int, stop: str) -> None:
    """Put a call's outcome on the current server span (nothing when tracing is off)."""
    trace = _api()
    if trace is None:
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attributes(
        {
            "adaptive.tenant": tenant,
            "adaptive.cost_usd": cost_usd,
            "adaptive.samples": samples,
            "adaptive.stop_reason": stop or "-",
            "adaptive.status": status,
        }
    )


Exporter = Literal["console", "otlp"]


def configure_tracing(exporter: Exporter) -> Any:
    """Set the global tracer provider for `adaptive serve --otel` and return it (to shut down).

    "console" prints each finished span as JSON on stderr (opentelemetry-sdk alone); "otlp"
    sends them with OTLP (opentelemetry-exporter-otlp, HTTP or gRPC, configured by the standard
    `OTEL_EXPORTER_OTLP_*` variables). The service name is `OTEL_SERVICE_NAME`, else
    "adaptive-proxy".

    Raises:
        ConfigError: A package it needs is not installed (the message names it).
    """
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigError(
            "--otel needs the OpenTelemetry SDK: pip install 'adaptive-ttc[otel]' opentelemetry-sdk"
        ) from None
    out: Any
    if exporter == "console":
        out = ConsoleSpanExporter(out=sys.stderr)
    else:
        # Optional packages (not dependencies): the HTTP exporter first, then gRPC.
        for module in (
            "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        ):
            try:
                out = importlib.import_module(module).OTLPSpanExporter()
                break
            except ImportError:
                continue
        else:
            raise ConfigError("--otel otlp needs an OTLP exporter: pip install opentelemetry-exporter-otlp")
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "adaptive-proxy"}
    provider = TracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(BatchSpanProcessor(out))
    trace.set_tracer_provider(provider)
    return provider
