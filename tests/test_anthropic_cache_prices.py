"""Anthropic's 1-hour and 5-minute cache writes are read apart and priced apart."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from loopback_wire import ANTHROPIC, scripted, sse

from adaptive import Price, ResponseError, Usage
from adaptive._prices import lookup_price

SONNET = Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75, cache_write_1h=6.0)


def usage_1h() -> dict[str, Any]:
    # The probe: 1,000 prompt tokens written to the 1-hour cache, 40 output tokens.
    return {
        "input_tokens": 0,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 40,
    }


def test_a_1h_write_costs_the_1h_rate() -> None:
    usage = Usage(
        prompt_tokens=1000, completion_tokens=40, cache_write_tokens=1000, cache_write_1h_tokens=1000
    )
    assert SONNET.cost_usd(usage) == pytest.approx(0.00660)  # was 0.00435: priced as 5-minute writes
    five = usage.model_copy(update={"cache_write_1h_tokens": 0})
    assert SONNET.cost_usd(five) == pytest.approx(0.00435)


def test_the_worst_case_covers_a_1h_write() -> None:
    assert SONNET.worst_case_pico(1000, 0) == 1000 * 6 * 10**6


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_anthropic_reads_the_cache_creation_split(stream: bool) -> None:
    async with scripted() as (fake, url), ANTHROPIC.endpoint(url, stream=stream, price=SONNET) as ep:
        if stream:
            events = ANTHROPIC.events(["hi"], {"input_tokens": 0, "output_tokens": 40})
            events[0]["message"]["usage"] = {**usage_1h(), "output_tokens": 1}
            fake.reply = lambda req: sse(events)
        else:
            fake.reply = lambda req: ANTHROPIC.answer(["hi"], usage_1h(), stream=False)
        response = await ep.request(ANTHROPIC.request(max_tokens=64))
    assert response.usage == Usage(
        prompt_tokens=1000, completion_tokens=40, cache_write_tokens=1000, cache_write_1h_tokens=1000
    )
    assert SONNET.cost_usd(response.usage) == pytest.approx(0.00660)


@pytest.mark.asyncio
async def test_a_split_that_does_not_add_up_is_refused() -> None:
    bad = {
        **usage_1h(),
        "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 1000},
    }
    async with scripted() as (fake, url), ANTHROPIC.endpoint(url) as ep:
        fake.reply = lambda req: ANTHROPIC.answer(["hi"], bad, stream=False)
        with pytest.raises(ResponseError, match="cache_creation"):
            await ep.request(ANTHROPIC.request())


def test_genai_prices_gives_the_1h_rate() -> None:
    price = lookup_price("claude-sonnet-4-5", "anthropic")
    assert price is not None and price.cache_write_1h == pytest.approx(6.0)
    assert price.cache_write == pytest.approx(3.75)


def test_an_anthropic_model_without_a_1h_rate_gets_twice_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from genai_prices import data_snapshot

    prices = SimpleNamespace(input_mtok=Decimal(2), output_mtok=Decimal(10), cache_write_mtok=Decimal("2.5"))
    info = SimpleNamespace(get_prices=lambda when: prices)
    snapshot = SimpleNamespace(find_provider_model=lambda *a: (None, info))
    monkeypatch.setattr(data_snapshot, "get_snapshot", lambda: snapshot)
    lookup_price.cache_clear()
    try:
        price = lookup_price("claude-future", "anthropic")
        other = lookup_price("some-model", "openai")
    finally:
        lookup_price.cache_clear()
    assert price is not None and price.cache_write_1h == pytest.approx(4.0)
    assert other is not None and other.cache_write_1h is None  # defaults to cache_write


def test_a_user_price_without_a_1h_rate_uses_its_cache_write_rate() -> None:
    price = Price(input=3.0, output=15.0, cache_write=3.75)
    usage = Usage(prompt_tokens=1000, cache_write_tokens=1000, cache_write_1h_tokens=1000)
    assert price.cost_usd(usage) == pytest.approx(0.00375)


@pytest.mark.asyncio
async def test_non_streamed_thinking_is_reported_as_reasoning() -> None:
    body = {
        "content": [{"type": "thinking", "thinking": "let me think " * 20}, {"type": "text", "text": "4"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 90},
    }
    from fakehttp import HTTPResponse

    async with scripted() as (fake, url), ANTHROPIC.endpoint(url) as ep:
        fake.reply = lambda req: HTTPResponse.json(body)
        response = await ep.request(ANTHROPIC.request(max_tokens=128))
    assert response.completions[0].text == "4"
    assert 0 < response.usage.reasoning_tokens <= response.usage.completion_tokens == 90
