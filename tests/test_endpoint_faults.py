"""Whatever a server does, an endpoint raises one typed adaptive error that holds no secret.

A sweep of server faults per endpoint (streamed and not, fanned out and not): the error is an
`AdaptiveError`, never an `ExceptionGroup` or a bare KeyError/httpx error; walking it (its
attributes, args, str, repr and the whole cause/context chain) never finds the API key, and
neither do log records with every logger at DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from fakehttp import HTTPRequest, HTTPResponse, SSEResponse
from loopback_wire import (
    ANTHROPIC,
    CHAT,
    CHAT_FAN_OUT,
    KEY,
    KINDS,
    Kind,
    dropping,
    refused_url,
    scripted,
    sse,
)

from adaptive import AdaptiveError, EndpointError, ServerError, Usage
from adaptive.endpoints import PartialResponseError


def echo_key(status: int) -> Callable[[HTTPRequest], HTTPResponse]:
    """An error answer that echoes the credentials back (some proxies do)."""

    def reply(req: HTTPRequest) -> HTTPResponse:
        said = req.headers.get("authorization") or req.headers.get("x-api-key")
        return HTTPResponse.json({"error": {"message": f"rejected {said}", "type": "x"}}, status=status)

    return reply


def faults(kind: Kind, stream: bool) -> dict[str, Callable[[HTTPRequest], HTTPResponse | SSEResponse]]:
    ok_usage = kind.usage(5, 3)
    out: dict[str, Callable[[HTTPRequest], HTTPResponse | SSEResponse]] = {
        "401": echo_key(401),
        "429": echo_key(429),
        "500": echo_key(500),
        "not-json": lambda req: HTTPResponse(body=b"<html>oops " + KEY.encode() + b"</html>"),
        "json-list": lambda req: HTTPResponse.json([1, 2]),
        "json-null": lambda req: HTTPResponse.json(None),
        "deep-json": lambda req: HTTPResponse(body=b"[" * 100_000 + b"]" * 100_000),
        "wrong-types": lambda req: HTTPResponse.json(
            {"choices": "x", "content": {"a": 1}, "usage": [1], "type": "message"}
        ),
        "content-not-text": lambda req: HTTPResponse.json(
            {
                "choices": [{"index": 0, "message": {"content": 5}, "text": 5}],
                "content": [{"type": "text", "text": 5}],
            }
        ),
        "negative-usage": lambda req: kind.answer(["hi"], kind.usage(-1, 3), stream=stream),
        "bool-usage": lambda req: kind.answer(["hi"], kind.usage(True, 3), stream=stream),
        "cut-stream": lambda req: sse(kind.events(["hi there"], ok_usage)[:3], cut=True),
        "garbage-events": lambda req: sse(["{not json", "[1]", '"x"']),
        "error-event": lambda req: sse([{"type": "error", "error": {"type": "overloaded", "message": KEY}}]),
        "events-wrong-types": lambda req: sse(
            [{"choices": [{"index": "zero", "delta": 5}]}, {"type": "content_block_delta", "delta": "x"}]
        ),
    }
    return out


FAULTS = list(faults(CHAT, False))
SWEEP_KINDS = [*KINDS, CHAT_FAN_OUT]


def walk(obj: Any, found: list[str], seen: set[int], depth: int = 0) -> None:
    """Collect every string reachable from `obj` (attributes, items, chain) into `found`."""
    if id(obj) in seen or depth > 12:
        return
    seen.add(id(obj))
    if isinstance(obj, str | bytes):
        found.append(obj if isinstance(obj, str) else obj.decode("latin-1"))
        return
    if isinstance(obj, int | float | bool) or obj is None:
        return
    try:
        found.append(repr(obj))
        found.append(str(obj))
    except Exception:  # an odd object whose repr fails is not what is tested
        pass
    if isinstance(obj, BaseException):
        for link in (obj.__cause__, obj.__context__, *obj.args):
            walk(link, found, seen, depth + 1)
    if isinstance(obj, Mapping):
        for k, v in list(obj.items()):
            walk(k, found, seen, depth + 1)
            walk(v, found, seen, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            walk(v, found, seen, depth + 1)
    for name in ("raw",):  # httpx.Headers keep the real values here (their repr masks them)
        if hasattr(obj, name) and not callable(getattr(obj, name)):
            walk(getattr(obj, name), found, seen, depth + 1)
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        walk(attrs, found, seen, depth + 1)
    for slot in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, slot):
            walk(getattr(obj, slot), found, seen, depth + 1)


def assert_no_key(error: BaseException) -> None:
    found: list[str] = []
    walk(error, found, set())
    leaks = [s for s in found if KEY in s]
    assert not leaks, f"the API key is reachable from {type(error).__name__}: {leaks[0][:200]}"


async def provoke(
    kind: Kind, stream: bool, reply: Callable[..., Any] | None, where: str = "scripted"
) -> Exception:
    """Send one request against a fault; return what it raised."""
    n = 2 if kind.fan_out else 1
    try:
        if where == "refused":
            async with kind.endpoint(await refused_url(), stream=stream) as ep:
                await ep.request(kind.request(n=n))
        elif where == "dropped":
            async with dropping() as url, kind.endpoint(url, stream=stream) as ep:
                await ep.request(kind.request(n=n))
        else:
            async with scripted() as (fake, url), kind.endpoint(url, stream=stream) as ep:
                assert reply is not None
                fake.reply = reply
                await ep.request(kind.request(n=n))
    except Exception as exc:
        return exc
    pytest.fail("the fault raised nothing")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", SWEEP_KINDS, ids=lambda k: k.name + ("-fan-out" if k.fan_out else ""))
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", [*FAULTS, "refused", "dropped"])
async def test_every_server_fault_is_one_typed_error_without_the_key(
    kind: Kind, stream: bool, fault: str
) -> None:
    if fault in ("refused", "dropped"):
        error = await provoke(kind, stream, None, where=fault)
    else:
        error = await provoke(kind, stream, faults(kind, stream)[fault])
    assert isinstance(error, AdaptiveError), f"{fault} leaked {type(error).__name__}: {error}"
    assert not isinstance(error, BaseExceptionGroup)
    assert isinstance(error, EndpointError)
    if kind.fan_out:
        assert isinstance(error, PartialResponseError)
    assert_no_key(error)


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_logs_never_hold_the_key(caplog: pytest.LogCaptureFixture, stream: bool) -> None:
    loggers = [logging.getLogger(name) for name in ("", "httpx", "httpcore", "adaptive", "anyio")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            for kind in SWEEP_KINDS:
                for fault, reply in faults(kind, stream).items():
                    await provoke(kind, stream, reply)
                    assert fault
                await provoke(kind, stream, None, where="refused")
                # and a success
                async with scripted() as (fake, url), kind.endpoint(url, stream=stream) as ep:
                    fake.reply = lambda req, k=kind: k.answer(["hi", "ho"][:1], k.usage(5, 3), stream=stream)
                    await ep.request(kind.request())
    finally:
        for lg, level in zip(loggers, old, strict=True):
            lg.setLevel(level)
    assert caplog.records, "DEBUG logging captured nothing: the test would prove nothing"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        assert KEY not in text, f"the key is in a log record of {record.name}: {text[:200]}"


# -- fan-out --------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [ANTHROPIC, CHAT_FAN_OUT], ids=["anthropic", "chat-supports_n=False"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_partly_failed_fan_out_is_one_error_with_what_succeeded(kind: Kind, stream: bool) -> None:
    async with scripted() as (fake, url), kind.endpoint(url, stream=stream) as ep:
        seen = 0

        def reply(req: HTTPRequest) -> HTTPResponse | SSEResponse:
            nonlocal seen
            seen += 1
            if seen == 2:
                return HTTPResponse.json({"error": {"message": "boom"}}, status=500)
            return kind.answer([f"answer {seen}"], kind.usage(5, 3), stream=stream)

        fake.reply = reply
        with pytest.raises(PartialResponseError) as info:
            await ep.request(kind.request(n=3))
    error = info.value
    assert isinstance(error, EndpointError) and not isinstance(error, BaseExceptionGroup)
    assert len(error.partial.completions) == 2
    assert [c.index for c in error.partial.completions] == [0, 1]
    # Two sub-requests were billed: their usage travels with the error.
    assert error.partial.usage == Usage(prompt_tokens=10, completion_tokens=6)
    assert len(error.errors) == 1 and isinstance(error.errors[0], ServerError)
    assert error.usage == error.partial.usage  # a 500 bills nothing
    assert "1 of the 3" in str(error) and "ServerError" in str(error)
    assert error.__cause__ is error.errors[0]


@pytest.mark.asyncio
async def test_a_fan_out_whose_usage_is_unknown_says_so() -> None:
    kind = ANTHROPIC
    async with scripted() as (fake, url), kind.endpoint(url) as ep:
        seen = 0

        def reply(req: HTTPRequest) -> HTTPResponse:
            nonlocal seen
            seen += 1
            usage = kind.usage(-1 if seen == 1 else 5, 3)
            response = kind.answer(["x"], usage, stream=False)
            assert isinstance(response, HTTPResponse)
            return response

        fake.reply = reply
        with pytest.raises(PartialResponseError) as info:
            await ep.request(kind.request(n=2))
    assert info.value.usage is None  # one sub-request's usage failed the checks
    assert info.value.partial.usage == Usage(prompt_tokens=5, completion_tokens=3)


# -- fan-out: each sub-response against its own share of the bound --------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [ANTHROPIC, CHAT_FAN_OUT], ids=["anthropic", "chat-supports_n=False"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", ["inflated-prompt", "over-max-tokens", "inflated-and-one-omitted"])
async def test_a_fanned_out_sub_response_over_its_share_is_not_hidden_in_the_sum(
    kind: Kind, stream: bool, fault: str
) -> None:
    from adaptive._ledger import prompt_token_bound

    request = kind.request(n=5, max_tokens=16)
    single = request.model_copy(update={"n": 1})
    bound = prompt_token_bound(single)
    async with scripted() as (fake, url), kind.endpoint(url, stream=stream) as ep:
        seen = 0

        def reply(req: HTTPRequest) -> HTTPResponse | SSEResponse:
            nonlocal seen
            seen += 1
            if seen == 1:  # one sub-request lies; the four others are honest
                if fault == "over-max-tokens":
                    return kind.answer(["long"], kind.usage(5, 40), stream=stream)
                return kind.answer(["x"], kind.usage(2 * bound, 3), stream=stream)
            if seen == 2 and fault == "inflated-and-one-omitted":
                return kind.answer(["y"], None, stream=stream)
            return kind.answer(["x"], kind.usage(5, 3), stream=stream)

        fake.reply = reply
        response = await ep.request(request)
    assert len(response.completions) == 5
    # The fanned-out request reserved 5 prompts of `bound` and 5 x max_tokens: the merged
    # usage exceeds that, so the ledger books an overrun (a plain sum would fit it).
    assert response.usage_reported
    assert (
        response.usage.prompt_tokens > 5 * bound
        if fault != "over-max-tokens"
        else response.usage.completion_tokens > 5 * 16
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [ANTHROPIC, CHAT_FAN_OUT], ids=["anthropic", "chat-supports_n=False"])
async def test_a_fan_out_overrun_stops_the_call(kind: Kind) -> None:
    from adaptive_strategies import SelfConsistency

    from adaptive import Budget, Client

    async with scripted() as (fake, url), kind.endpoint(url) as ep:
        seen = 0

        def reply(req: HTTPRequest) -> HTTPResponse | SSEResponse:
            nonlocal seen
            seen += 1
            return kind.answer(["42"], kind.usage(5, 40 if seen == 1 else 3), stream=False)

        fake.reply = reply
        async with Client(ep) as client:
            result = await client.run(
                "Say hi", strategy=SelfConsistency(n=5), budget=Budget(samples=5), max_tokens=16
            )
    assert result.stop_reason == "overrun"


@pytest.mark.asyncio
async def test_an_anthropic_stream_past_max_tokens_counts_past_it() -> None:
    # Cut before message_delta reports the output: every delta is at least a token, so 12
    # deltas for max_tokens=4 count 12 (an overrun the ledger must see), not max_tokens.
    kind = ANTHROPIC
    events: list[Any] = [
        {"type": "message_start", "message": {"id": "m", "content": [], "usage": kind.usage(5, 1)}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "w"}}
        for _ in range(12)
    ]
    async with scripted() as (fake, url), kind.endpoint(url, stream=True) as ep:
        fake.reply = lambda req: sse(events, cut=True)
        with pytest.raises(EndpointError) as info:
            await ep.request(kind.request(max_tokens=4))
    partial = getattr(info.value, "partial", None)
    assert partial is not None and partial.usage.completion_tokens == 12
    assert info.value.usage is not None and info.value.usage.completion_tokens == 12
