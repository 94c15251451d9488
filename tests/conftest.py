"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_helpers import in_memory_spans
from redis_server import redis_url


@pytest.fixture(scope="session")
def redis() -> Iterator[str]:
    """A real Redis's URL: CI's (ADAPTIVE_TEST_REDIS_URL), else one started here; else a skip."""
    with redis_url() as url:
        if url is None:
            pytest.skip("no Redis: set ADAPTIVE_TEST_REDIS_URL or put redis-server on PATH")
        yield url


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Every span of the test, from a fresh global OpenTelemetry SDK provider."""
    yield from in_memory_spans(monkeypatch)
