"""Retries after an attempt the server may have billed ask the request's meter first.

A connection lost after the request was sent (or a malformed 200 body) may have been billed
in full; the endpoint's retry loop calls the installed `UsageMeter.before_retry` before
retrying such an attempt, and raises the attempt's error when it refuses. An attempt that
billed nothing (an HTTP error status, no connection made) is retried without asking.
"""

from __future__ import annotations

import pytest
from fakehttp import HTTPRequest, HTTPResponse
from loopback_wire import CHAT, dropping, refused_url, scripted

from adaptive import ServerError, TransportError
from adaptive.endpoints import RetryPolicy, UsageMeter
from adaptive.endpoints._base import set_meter


class _Meter(UsageMeter):
    def __init__(self, allow: bool) -> None:
        super().__init__()
        self.allow = allow
        self.asked: list[BaseException] = []

    def before_retry(self, error: BaseException) -> bool:
        self.asked.append(error)
        return self.allow


def test_the_default_meter_allows_a_retry() -> None:
    assert UsageMeter().before_retry(TransportError("x")) is True


@pytest.mark.asyncio
@pytest.mark.parametrize("allow", [False, True])
async def test_a_transport_error_after_sending_asks_the_meter_before_retrying(allow: bool) -> None:
    meter = _Meter(allow)
    token = set_meter(meter)
    try:
        retry = RetryPolicy(attempts=3, initial_wait=0.0)
        async with dropping() as url, CHAT.endpoint(url, retry=retry) as ep:
            with pytest.raises(TransportError) as info:
                await ep.request(CHAT.request(n=5))
    finally:
        token.var.reset(token)
    assert info.value.usage is None
    # Refused: asked once, raised at once. Allowed: asked before each of the two retries.
    assert len(meter.asked) == (2 if allow else 1)
    assert all(isinstance(e, TransportError) and e.usage is None for e in meter.asked)


@pytest.mark.asyncio
async def test_an_attempt_that_billed_nothing_is_retried_without_asking() -> None:
    meter = _Meter(False)
    token = set_meter(meter)
    try:
        url = await refused_url()  # never connected: usage is Usage()
        async with CHAT.endpoint(url, retry=RetryPolicy(attempts=2, initial_wait=0.0)) as ep:
            with pytest.raises(TransportError):
                await ep.request(CHAT.request())
        async with (
            scripted() as (fake, url),
            CHAT.endpoint(url, retry=RetryPolicy(attempts=2, initial_wait=0.0)) as ep,
        ):
            seen = 0

            def reply(req: HTTPRequest) -> HTTPResponse:
                nonlocal seen
                seen += 1
                return HTTPResponse.json({"error": {"message": "boom"}}, status=500)

            fake.reply = reply
            with pytest.raises(ServerError):
                await ep.request(CHAT.request())
            assert seen == 2
    finally:
        token.var.reset(token)
    assert meter.asked == []
