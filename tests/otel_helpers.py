"""OpenTelemetry in tests: a fresh global tracer provider per test, spans kept in memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


def reset_tracer_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the global provider (the API lets it be set once per process; each test sets its own)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


def in_memory_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A global SDK provider whose spans land in the exporter yielded; shut down afterwards."""
    reset_tracer_provider(monkeypatch)
    out = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(out))
    trace.set_tracer_provider(provider)
    yield out
    provider.shutdown()
