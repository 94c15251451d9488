from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest

from adaptive import (
    ConfigError,
    HTTPStatusError,
    Message,
    OpenAIChat,
    RateLimitError,
    Request,
    ResponseError,
    ServerError,
    StreamError,
    TransportError,
)
from adaptive._ledger import prompt_token_bound
from adaptive.endpoints import RetryPolicy, StreamEvent, UsageMeter
from adaptive.endpoints._base import set_meter

KEY = "sk-test-SECRET-0123456789abcdef"
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0, max_wait=0)


def chat_request(**kw: Any) -> Request:
    kw.setdefault(
        "messages", (Message(role="system", content="Be brief."), Message(role="user", content="2+2?"))
    )
    return Request(**kw)


def answer(*texts: str, usage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "model": "gpt-test",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
        **extra,
    }
    if usage is not None:
        body["usage"] = usage
    return body


class Recorder:
    """A MockTransport handler that records requests and answers from a queue or a function."""

    def __init__(self, *replies: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return reply(request) if callable(reply) else reply

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def endpoint(handler: Any, **kw: Any) -> tuple[OpenAIChat, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    kw.setdefault("api_key", KEY)
    kw.setdefault("base_url", "http://testserver/v1")
    kw.setdefault("retry", FAST_RETRY)
    return OpenAIChat("gpt-test", http_client=client, **kw), client


def ok(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=body)


# -- request bodies and headers ----------------------------------------------------------


@pytest.mark.asyncio
async def test_request_body_headers_and_url() -> None:
    rec = Recorder(ok(answer("4", usage={"prompt_tokens": 12, "completion_tokens": 1})))
    ep, client = endpoint(rec, headers={"X-Team": "blue"})
    req = chat_request(
        n=1,
        max_tokens=64,
        temperature=0.7,
        top_p=0.9,
        stop=("\n\n", "END"),
        seed=11,
        extra={"presence_penalty": 0.5, "user": "u1"},
    )
    await ep.request(req)
    (sent,) = rec.requests
    assert str(sent.url) == "http://testserver/v1/chat/completions"
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-team"] == "blue"
    assert rec.bodies[0] == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        "n": 1,
        "max_tokens": 64,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": ["\n\n", "END"],
        "seed": 11,
        "presence_penalty": 0.5,
        "user": "u1",
    }
    await client.aclose()


@pytest.mark.asyncio
async def test_optional_fields_left_out_and_max_tokens_field() -> None:
    rec = Recorder(ok(answer("4")))
    ep, client = endpoint(rec, max_tokens_field="max_completion_tokens")
    await ep.request(chat_request(max_tokens=5))
    body = rec.bodies[0]
    assert body["max_completion_tokens"] == 5
    for absent in ("max_tokens", "temperature", "top_p", "stop", "seed", "logprobs", "stream"):
        assert absent not in body
    await client.aclose()


@pytest.mark.asyncio
async def test_prefill_sent_as_final_assistant_message() -> None:
    rec = Recorder(ok(answer(" 4.")))
    ep, client = endpoint(rec)
    resp = await ep.request(chat_request(prefill="The answer is"))
    body = rec.bodies[0]
    assert body["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert resp.completions[0].text == " 4."
    # Without a prefill, or with prefill_params=False, the flags are not sent.
    await ep.request(chat_request())
    assert "continue_final_message" not in rec.bodies[1]
    assert len(rec.bodies[1]["messages"]) == 2
    ep2, client2 = endpoint(rec, prefill_params=False)
    await ep2.request(chat_request(prefill="So"))
    assert rec.bodies[2]["messages"][-1] == {"role": "assistant", "content": "So"}
    assert "continue_final_message" not in rec.bodies[2]
    await client.aclose()
    await client2.aclose()


@pytest.mark.asyncio
async def test_capabilities() -> None:
    ep, client = endpoint(Recorder(ok(answer("x"))))
    assert (ep.supports_n, ep.supports_prefill, ep.supports_raw) == (True, True, False)
    ep2, client2 = endpoint(Recorder(ok(answer("x"))), supports_n=False)
    assert ep2.supports_n is False
    assert OpenAIChat.supports_n is True  # the class default is untouched
    assert ep2.prompt_copies(chat_request(n=3)) == 3
    await client.aclose()
    await client2.aclose()


# -- parsing -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_n_choices_logprobs_and_detailed_usage() -> None:
    def lp(token: str, value: float) -> dict[str, Any]:
        return {"token": token, "logprob": value, "bytes": list(token.encode()), "top_logprobs": []}

    body = answer(
        "4",
        "four",
        usage={
            "prompt_tokens": 30,
            "completion_tokens": 50,
            "total_tokens": 80,
            "completion_tokens_details": {"reasoning_tokens": 40},
            "prompt_tokens_details": {"cached_tokens": 16},
        },
    )
    body["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": "4",
                "logprob": -0.1,
                "top_logprobs": [{"token": "4", "logprob": -0.1}, {"token": "5", "logprob": -2.5}],
            }
        ]
    }
    body["choices"][1]["logprobs"] = {"content": [lp("fo", -0.5), lp("ur", -0.25)]}
    body["choices"][1]["finish_reason"] = "length"
    rec = Recorder(ok(body))
    ep, client = endpoint(rec)
    resp = await ep.request(chat_request(n=2, logprobs=True, top_logprobs=2))
    sent = rec.bodies[0]
    assert (sent["n"], sent["logprobs"], sent["top_logprobs"]) == (2, True, 2)
    assert resp.model == "gpt-test" and resp.id == "chatcmpl-1"
    assert resp.usage_reported
    u = resp.usage
    assert (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens, u.cached_prompt_tokens) == (
        30,
        50,
        40,
        16,
    )
    first, second = resp.completions
    assert (first.text, first.index, first.finish_reason) == ("4", 0, "stop")
    assert (second.text, second.index, second.finish_reason) == ("four", 1, "length")
    assert first.logprobs is not None and first.logprobs[0].top == (("4", -0.1), ("5", -2.5))
    assert second.logprobs is not None and [t.token for t in second.logprobs] == ["fo", "ur"]
    assert second.mean_logprob() == pytest.approx(-0.375)
    # completion_tokens: from logprobs when present.
    assert (first.completion_tokens, second.completion_tokens) == (1, 2)
    await client.aclose()


@pytest.mark.asyncio
async def test_completion_tokens_from_usage_only_for_single_answers() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 7}
    rec = Recorder(ok(answer("a", usage=usage)), ok(answer("a", "b", usage=usage)))
    ep, client = endpoint(rec)
    single = await ep.request(chat_request())
    assert single.completions[0].completion_tokens == 7
    double = await ep.request(chat_request(n=2))
    assert [c.completion_tokens for c in double.completions] == [None, None]
    assert double.usage.completion_tokens == 7
    await client.aclose()


@pytest.mark.asyncio
async def test_missing_usage_is_estimated_and_flagged() -> None:
    long_text = "x" * 400  # 400 bytes -> 100 tokens, capped by max_tokens below
    rec = Recorder(ok(answer("héllo", long_text)))
    ep, client = endpoint(rec)
    req = chat_request(n=2, max_tokens=60)
    resp = await ep.request(req)
    assert not resp.usage_reported
    assert resp.usage.prompt_tokens == prompt_token_bound(req)
    assert resp.usage.completion_tokens == math.ceil(len("héllo".encode()) / 4) + 60
    assert all(c.completion_tokens is None for c in resp.completions)
    await client.aclose()


@pytest.mark.asyncio
async def test_null_content_is_empty_text() -> None:
    body = answer("x", usage={"prompt_tokens": 1, "completion_tokens": 1})
    body["choices"][0]["message"]["content"] = None
    ep, client = endpoint(Recorder(ok(body)))
    assert (await ep.request(chat_request())).completions[0].text == ""
    await client.aclose()


# -- errors ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (httpx.Response(200, content=b"<html>oops</html>"), "not JSON"),
        (httpx.Response(200, json={"id": "x", "object": "chat.completion"}), "choices"),
        (httpx.Response(200, json={"choices": []}), "choices"),
        (httpx.Response(200, json=[1, 2]), "choices"),
        (httpx.Response(200, json={"choices": [{"index": 0}]}), "malformed"),
        (httpx.Response(200, json={"choices": [{"message": {"content": 5}}]}), "malformed"),
        (
            httpx.Response(
                200, json={"error": {"message": "model overloaded, try later", "code": "overloaded"}}
            ),
            "model overloaded, try later",
        ),
    ],
)
async def test_unusable_2xx_answers_raise_response_error(reply: httpx.Response, fragment: str) -> None:
    rec = Recorder(reply)
    ep, client = endpoint(rec)
    with pytest.raises(ResponseError) as info:
        await ep.request(chat_request())
    assert fragment in str(info.value)
    assert not isinstance(info.value, StreamError)
    assert len(rec.requests) == 1  # never retried
    await client.aclose()


@pytest.mark.asyncio
async def test_429_with_retry_after_is_retried_then_succeeds() -> None:
    limited = httpx.Response(
        429, headers={"Retry-After": "0"}, json={"error": {"message": "slow down", "type": "rate_limit"}}
    )
    rec = Recorder(limited, ok(answer("4", usage={"prompt_tokens": 3, "completion_tokens": 1})))
    ep, client = endpoint(rec, retry=RetryPolicy(attempts=3, initial_wait=5, max_wait=5))
    with anyio.fail_after(4):  # a Retry-After of 0 must win over the 5 s backoff
        resp = await ep.request(chat_request())
    assert resp.completions[0].text == "4"
    assert len(rec.requests) == 2
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
async def test_rate_limit_error_keeps_status_body_and_retry_after(
    headers: dict[str, str], expected: float | None
) -> None:
    reply = httpx.Response(429, headers=headers, json={"error": {"message": "quota"}})
    rec = Recorder(reply)
    ep, client = endpoint(rec, retry=RetryPolicy(attempts=1))
    with pytest.raises(RateLimitError) as info:
        await ep.request(chat_request())
    assert info.value.status_code == 429
    assert info.value.retry_after == expected
    assert "quota" in info.value.body and "quota" in str(info.value)
    await client.aclose()


@pytest.mark.asyncio
async def test_400_is_not_retried() -> None:
    rec = Recorder(httpx.Response(400, json={"error": {"message": "max_tokens is too large", "code": "bad"}}))
    ep, client = endpoint(rec)
    with pytest.raises(HTTPStatusError) as info:
        await ep.request(chat_request())
    assert type(info.value) is HTTPStatusError
    assert info.value.status_code == 400
    assert "max_tokens is too large" in str(info.value)
    assert len(rec.requests) == 1
    await client.aclose()


@pytest.mark.asyncio
async def test_5xx_retried_until_attempts_run_out() -> None:
    rec = Recorder(httpx.Response(503, text="upstream down"))
    ep, client = endpoint(rec)
    with pytest.raises(ServerError) as info:
        await ep.request(chat_request())
    assert info.value.status_code == 503 and info.value.body == "upstream down"
    assert len(rec.requests) == FAST_RETRY.attempts
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("exc", "fragment"),
    [(httpx.ConnectError("connection refused"), "transport error"), (httpx.ReadTimeout("slow"), "timed out")],
)
async def test_transport_failures_become_transport_error(exc: Exception, fragment: str) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise exc

    ep, client = endpoint(handler)
    with pytest.raises(TransportError) as info:
        await ep.request(chat_request())
    assert fragment in str(info.value)
    assert info.value.endpoint == ep.name
    assert calls == FAST_RETRY.attempts
    assert ep._injected_shard is not None and ep._injected_shard.busy == 0
    await client.aclose()


@pytest.mark.asyncio
async def test_transport_error_then_success() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.RemoteProtocolError("server hung up")
        return ok(answer("fine"))

    ep, client = endpoint(handler)
    assert (await ep.request(chat_request())).completions[0].text == "fine"
    assert calls == 2
    await client.aclose()


@pytest.mark.asyncio
async def test_api_key_never_in_repr_or_errors() -> None:
    echoed = {"error": {"message": f"Incorrect API key provided: {KEY}.", "code": "invalid_api_key"}}
    rec = Recorder(httpx.Response(401, json=echoed))
    ep, client = endpoint(rec)
    for text in (repr(ep), ep.name, str(vars(ep).get("_headers")), repr(ep._headers)):
        assert KEY not in text
    with pytest.raises(HTTPStatusError) as info:
        await ep.request(chat_request())
    err = info.value
    assert err.status_code == 401
    assert "API key" in str(err)  # the hint says what to fix
    for text in (str(err), repr(err), err.body, err.endpoint):
        assert KEY not in text
    assert "***" in err.body
    # A 200 error body that echoes the key is scrubbed too.
    rec2 = Recorder(ok({"error": {"message": f"key {KEY} revoked"}}))
    ep2, client2 = endpoint(rec2)
    with pytest.raises(ResponseError) as info2:
        await ep2.request(chat_request())
    assert KEY not in str(info2.value) and "revoked" in str(info2.value)
    await client.aclose()
    await client2.aclose()


def test_no_api_key_sends_no_authorization(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rec = Recorder(ok(answer("x")))

    async def main() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(rec))
        ep = OpenAIChat("local-model", base_url="http://127.0.0.1:9/v1", http_client=client, retry=FAST_RETRY)
        await ep.request(chat_request())
        await client.aclose()

    anyio.run(main)
    assert "authorization" not in rec.requests[0].headers


@pytest.mark.asyncio
async def test_env_var_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-host:8000/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    rec = Recorder(ok(answer("x")))
    client = httpx.AsyncClient(transport=httpx.MockTransport(rec))
    ep = OpenAIChat("m", http_client=client, retry=FAST_RETRY)
    await ep.request(chat_request())
    assert str(rec.requests[0].url) == "http://env-host:8000/v1/chat/completions"
    assert rec.requests[0].headers["authorization"] == "Bearer sk-from-env"
    assert "env-host:8000" in ep.name and "sk-from-env" not in repr(ep)
    # Explicit arguments win over the environment.
    ep2 = OpenAIChat("m", base_url="http://other/v1", api_key="sk-arg", http_client=client, retry=FAST_RETRY)
    await ep2.request(chat_request())
    assert str(rec.requests[1].url) == "http://other/v1/chat/completions"
    assert rec.requests[1].headers["authorization"] == "Bearer sk-arg"
    await client.aclose()


def test_default_base_url_is_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    ep = OpenAIChat("gpt-4o-mini", api_key=KEY)
    assert ep._url == "https://api.openai.com/v1/chat/completions"
    assert ep.name == "OpenAIChat(gpt-4o-mini)"
    assert ep.price is not None  # looked up with provider "openai"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"base_url": "ftp://x/v1"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"max_tokens_field": "max_new_tokens"}, "max_tokens_field"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_bad_configuration_raises_config_error(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        OpenAIChat("m", api_key=KEY, **kwargs)


@pytest.mark.asyncio
async def test_raw_prompt_is_refused() -> None:
    rec = Recorder(ok(answer("x")))
    ep, client = endpoint(rec)
    with pytest.raises(ConfigError, match="OpenAICompletions"):
        await ep.request(Request(prompt="Once upon"))
    assert rec.requests == []
    await client.aclose()


# -- client lifetime ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_injected_client_is_never_closed() -> None:
    rec = Recorder(ok(answer("x")))
    ep, client = endpoint(rec)
    async with ep:
        await ep.request(chat_request())
    await ep.aclose()
    assert not client.is_closed
    await ep.request(chat_request())  # still usable
    await client.aclose()


@pytest.mark.asyncio
async def test_own_clients_are_closed() -> None:
    ep = OpenAIChat("m", base_url="http://127.0.0.1:9/v1", api_key=KEY, timeout=5, max_concurrency=20)
    async with ep:
        pool = ep._pool()
        assert ep._pool() is pool
        # Small connection pools (at most 8 connections each) that together allow 20.
        assert len(pool) == 3
        assert all(s.client.timeout.read == 5 for s in pool)
        assert not any(s.client.is_closed for s in pool)
    assert all(s.client.is_closed for s in pool)
    ep2 = OpenAIChat("m", base_url="http://127.0.0.1:9/v1", api_key=KEY, max_concurrency=1)
    (shard,) = ep2._pool()
    await ep2.aclose()
    assert shard.client.is_closed
    await ep2.aclose()  # idempotent


@pytest.mark.asyncio
async def test_requests_go_to_the_least_busy_client() -> None:
    ep = OpenAIChat("m", base_url="http://127.0.0.1:9/v1", api_key=KEY, max_concurrency=16)
    async with ep:
        first, second = ep._pool()
        picked = [ep._pick() for _ in range(4)]
        assert [p is first for p in picked] == [True, False, True, False]
        assert (first.busy, second.busy) == (2, 2)


def test_own_clients_are_renewed_for_a_new_event_loop() -> None:
    ep = OpenAIChat("m", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    seen: list[list[Any]] = []

    async def grab() -> None:
        seen.append(ep._pool())
        seen.append(ep._pool())

    anyio.run(grab)
    anyio.run(grab)
    anyio.run(ep.aclose)
    assert seen[0] is seen[1]
    assert seen[2] is seen[3] and seen[2] is not seen[0]


# -- fan-out when the server cannot do n --------------------------------------------------


@pytest.mark.asyncio
async def test_supports_n_false_fans_out_single_requests() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        seed = json.loads(request.content)["seed"]
        return ok(answer(f"seed {seed}", usage={"prompt_tokens": 10, "completion_tokens": 2}))

    rec = Recorder(reply)
    ep, client = endpoint(rec, supports_n=False)
    resp = await ep.request(chat_request(n=3, seed=100))
    assert sorted(b["seed"] for b in rec.bodies) == [100, 101, 102]
    assert all(b["n"] == 1 for b in rec.bodies)
    assert [c.index for c in resp.completions] == [0, 1, 2]
    assert sorted(c.text for c in resp.completions) == ["seed 100", "seed 101", "seed 102"]
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (30, 6)
    await client.aclose()


# -- streaming ---------------------------------------------------------------------------


def chunk(
    index: int = 0, content: str | None = None, finish: str | None = None, **delta: Any
) -> dict[str, Any]:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    return {
        "id": "chatcmpl-s",
        "model": "gpt-test",
        "choices": [{"index": index, "delta": d, "finish_reason": finish}],
    }


def sse_body(*events: dict[str, Any] | str) -> bytes:
    out = [b": keep-alive comment\n\n"]
    for e in events:
        data = e if isinstance(e, str) else json.dumps(e)
        out.append(f"data: {data}\n\n".encode())
    return b"".join(out)


def sse(*events: dict[str, Any] | str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse_body(*events))


USAGE_CHUNK = {
    "id": "chatcmpl-s",
    "choices": [],
    "usage": {
        "prompt_tokens": 20,
        "completion_tokens": 9,
        "completion_tokens_details": {"reasoning_tokens": 5},
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}


@pytest.mark.asyncio
async def test_streamed_request_is_assembled() -> None:
    rec = Recorder(
        sse(
            chunk(0, "", role="assistant"),
            chunk(0, reasoning_content="thinking..."),
            chunk(0, "The "),
            chunk(1, "Four"),
            chunk(0, "answer is 4"),
            chunk(0, finish="stop"),
            chunk(1, finish="stop"),
            USAGE_CHUNK,
            "[DONE]",
        )
    )
    ep, client = endpoint(rec, stream=True)
    meter = UsageMeter()
    token = set_meter(meter)
    try:
        resp = await ep.request(chat_request(n=2))
    finally:
        token.var.reset(token)
    body = rec.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert rec.requests[0].headers["accept"] == "text/event-stream"
    assert [c.text for c in resp.completions] == ["The answer is 4", "Four"]
    assert [c.finish_reason for c in resp.completions] == ["stop", "stop"]
    assert resp.usage_reported and resp.id == "chatcmpl-s" and resp.model == "gpt-test"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (20, 9)
    assert (resp.usage.reasoning_tokens, resp.usage.cached_prompt_tokens) == (5, 4)
    assert meter.usage == resp.usage  # the meter ends on the reported usage
    assert meter.samples == 2
    assert meter.prompt_reported and meter.streams == 1  # the prompt count is the server's
    await client.aclose()


@pytest.mark.asyncio
async def test_stream_with_logprobs_and_without_usage() -> None:
    def with_lp(c: dict[str, Any], *tokens: tuple[str, float]) -> dict[str, Any]:
        c["choices"][0]["logprobs"] = {
            "content": [
                {"token": t, "logprob": v, "top_logprobs": [{"token": t, "logprob": v}]} for t, v in tokens
            ]
        }
        return c

    rec = Recorder(
        sse(
            with_lp(chunk(0, "ab"), ("a", -0.5), ("b", -1.0)),
            with_lp(chunk(0, "c"), ("c", -0.25)),
            chunk(0, finish="length"),
            "[DONE]",
        )
    )
    ep, client = endpoint(rec, stream=True)
    req = chat_request(logprobs=True, top_logprobs=1)
    resp = await ep.request(req)
    (c,) = resp.completions
    assert c.text == "abc" and c.finish_reason == "length"
    assert c.logprobs is not None and [t.token for t in c.logprobs] == ["a", "b", "c"]
    assert c.logprobs[0].top == (("a", -0.5),)
    assert c.completion_tokens == 3
    assert not resp.usage_reported
    assert resp.usage.prompt_tokens == prompt_token_bound(req)
    assert resp.usage.completion_tokens == 3
    await client.aclose()


@pytest.mark.asyncio
async def test_stream_cut_off_raises_stream_error_with_partial_usage() -> None:
    rec = Recorder(sse(chunk(0, "The answer"), chunk(0, " is"), chunk(0, " 4")))
    ep, client = endpoint(rec, stream=True)
    req = chat_request(max_tokens=100)
    meter = UsageMeter()
    token = set_meter(meter)
    try:
        with pytest.raises(StreamError) as info:
            await ep.request(req)
    finally:
        token.var.reset(token)
    err = info.value
    assert "[DONE]" in str(err)
    partial = err.partial
    assert partial is not None and not partial.usage_reported
    assert partial.completions[0].text == "The answer is 4"
    assert partial.completions[0].finish_reason == "cancelled"
    assert partial.usage.prompt_tokens == prompt_token_bound(req)
    # At least a token per chunk, or about 4 bytes per token if that is more.
    assert partial.usage.completion_tokens == max(3, math.ceil(len(b"The answer is 4") / 4))
    assert meter.usage == partial.usage and meter.samples == 1
    assert not meter.prompt_reported  # the prompt count is the byte bound: no usage came
    assert len(rec.requests) == 1  # tokens were spent: never retried
    await client.aclose()


@pytest.mark.asyncio
async def test_stream_ending_after_finish_without_done_is_complete() -> None:
    rec = Recorder(sse(chunk(0, "ok"), chunk(0, finish="stop")))
    ep, client = endpoint(rec, stream=True)
    resp = await ep.request(chat_request())
    assert resp.completions[0].text == "ok" and resp.completions[0].finish_reason == "stop"
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("events", "fragment"),
    [
        ((chunk(0, "half"), {"error": {"message": "GPU on fire"}}), "GPU on fire"),
        ((chunk(0, "half"), "{not json"), "malformed"),
    ],
)
async def test_error_inside_stream(events: tuple[Any, ...], fragment: str) -> None:
    ep, client = endpoint(Recorder(sse(*events)), stream=True)
    with pytest.raises(StreamError) as info:
        await ep.request(chat_request())
    assert fragment in str(info.value)
    assert info.value.partial.completions[0].text == "half"
    await client.aclose()


@pytest.mark.asyncio
async def test_stream_status_errors_and_wrong_content_type() -> None:
    rec = Recorder(
        httpx.Response(429, headers={"Retry-After": "0"}), sse(chunk(0, "x", finish="stop"), "[DONE]")
    )
    ep, client = endpoint(rec, stream=True)
    assert (await ep.request(chat_request())).completions[0].text == "x"
    assert len(rec.requests) == 2
    ep2, client2 = endpoint(Recorder(ok(answer("plain json"))), stream=True)
    with pytest.raises(ResponseError, match="not an event stream"):
        await ep2.request(chat_request())
    await client.aclose()
    await client2.aclose()


@pytest.mark.asyncio
async def test_public_stream_yields_deltas_then_response() -> None:
    rec = Recorder(
        sse(
            chunk(0, "", role="assistant"),
            chunk(0, "Hel"),
            chunk(0, "lo"),
            chunk(0, finish="stop"),
            USAGE_CHUNK,
            "[DONE]",
        )
    )
    ep, client = endpoint(rec)  # stream=False: stream() streams anyway
    events: list[StreamEvent] = []
    async with ep.stream(chat_request()) as stream:
        async for event in stream:
            events.append(event)
    assert [(e.kind, e.index, e.text) for e in events] == [
        ("delta", 0, "Hel"),
        ("delta", 0, "lo"),
        ("done", 0, ""),
    ]
    final = events[-1].response
    assert final is not None and final is stream.response
    assert final.completions[0].text == "Hello" and final.usage.prompt_tokens == 20
    assert rec.bodies[0]["stream"] is True
    await client.aclose()


class SlowStream(httpx.AsyncByteStream):
    """An SSE body that sends some chunks, then waits until released (or cancelled)."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.release = anyio.Event()
        self.waiting = anyio.Event()  # set once the client has consumed `first` and asks for more
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        self.waiting.set()
        await self.release.wait()
        yield self.rest

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.asyncio
async def test_stopping_a_stream_part_way_closes_it_and_keeps_partial() -> None:
    body = SlowStream(
        sse_body(chunk(0, "one"), chunk(0, " two")), sse_body(chunk(0, finish="stop"), "[DONE]")
    )
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body))
    ep, client = endpoint(rec)
    meter = UsageMeter()
    token = set_meter(meter)
    try:
        async with ep.stream(chat_request(max_tokens=50)) as stream:
            async for event in stream:
                if event.text == " two":
                    break
            partial = stream.partial()
    finally:
        token.var.reset(token)
    assert body.closed
    assert ep._injected_shard is not None and ep._injected_shard.busy == 0
    assert partial.completions[0].text == "one two"
    assert partial.completions[0].finish_reason == "cancelled"
    assert partial.usage.completion_tokens == 2
    assert meter.usage == partial.usage
    assert stream.response is None
    await client.aclose()


@pytest.mark.asyncio
async def test_cancelled_streaming_request_leaves_usage_in_meter() -> None:
    body = SlowStream(sse_body(chunk(0, "a"), chunk(0, "b"), chunk(0, "c")), sse_body("[DONE]"))
    rec = Recorder(httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body))
    ep, client = endpoint(rec, stream=True)
    req = chat_request(max_tokens=50)
    meter = UsageMeter()
    with anyio.CancelScope() as scope:
        token = set_meter(meter)
        try:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    await ep.request(req)

                tg.start_soon(run)
                await body.waiting.wait()
                scope.cancel()
        finally:
            token.var.reset(token)
    assert scope.cancelled_caught
    assert ep._injected_shard is not None and ep._injected_shard.busy == 0
    assert meter.usage is not None
    assert (meter.usage.prompt_tokens, meter.usage.completion_tokens) == (prompt_token_bound(req), 3)
    assert body.closed
    await client.aclose()


@pytest.mark.asyncio
async def test_fanned_out_streams_add_up_in_one_meter() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        seed = json.loads(request.content)["seed"]
        usage = {"id": "u", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": seed}}
        return sse(chunk(0, "x" * seed), chunk(0, finish="stop"), usage, "[DONE]")

    ep, client = endpoint(Recorder(reply), stream=True, supports_n=False)
    meter = UsageMeter()
    token = set_meter(meter)
    try:
        resp = await ep.request(chat_request(n=3, seed=1))
    finally:
        token.var.reset(token)
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (30, 1 + 2 + 3)
    assert meter.usage == resp.usage and meter.samples == 3
    with pytest.raises(ConfigError, match="supports_n=False"):
        async with ep.stream(chat_request(n=2)):
            pass
    await client.aclose()


@pytest.mark.asyncio
async def test_max_concurrency_bounds_requests_in_flight() -> None:
    in_flight = peak = 0
    gate = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if peak == 2:
            gate.set()
        await gate.wait()  # hold the first two until both are in flight
        in_flight -= 1
        return ok(answer("x"))

    ep, client = endpoint(handler, max_concurrency=2)
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(ep.request, chat_request())
    assert peak == 2
    assert ep.limiter.borrowed_tokens == 0
    await client.aclose()
