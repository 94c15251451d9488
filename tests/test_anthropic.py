"""Anthropic Messages endpoint against an in-process mock transport (no network)."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from adaptive import (
    Anthropic,
    ConfigError,
    HTTPStatusError,
    Message,
    Price,
    RateLimitError,
    Request,
    ResponseError,
    ServerError,
    TransportError,
    Usage,
)
from adaptive._ledger import Ledger
from adaptive._prices import lookup_price
from adaptive.endpoints import RetryPolicy

KEY = "sk-ant-test-SECRET-0123456789"
NO_RETRY = RetryPolicy(attempts=1)
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.0, max_wait=0.0)

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    yield


def ok_body(
    text: str = "hello",
    *,
    stop_reason: str = "end_turn",
    usage: dict[str, Any] | None = None,
    content: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content if content is not None else [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage if usage is not None else {"input_tokens": 11, "output_tokens": 5},
    }


class Recorder:
    """A mock transport handler that records requests and answers from a script."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def body(self, i: int = -1) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.requests[i].content)
        return data


def make(
    recorder: Recorder, *, retry: RetryPolicy = NO_RETRY, **kwargs: Any
) -> tuple[Anthropic, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    kwargs.setdefault("api_key", KEY)
    return Anthropic("claude-test", http_client=client, retry=retry, **kwargs), client


def chat(*messages: tuple[str, str], **kwargs: Any) -> Request:
    return Request(messages=tuple(Message(role=r, content=c) for r, c in messages), **kwargs)


# -- request body and headers -----------------------------------------------------------


@pytest.mark.asyncio
async def test_body_headers_and_parameters() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body("hi there")))
    ep, client = make(rec, headers={"anthropic-beta": "feature-x"})
    request = chat(
        ("user", "What is 2+2?"),
        max_tokens=77,
        temperature=0.3,
        top_p=0.9,
        stop=("\n\n", "END"),
        seed=5,
        extra={"top_k": 40, "max_tokens": 99},
    )
    response = await ep.request(request)
    sent = rec.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["anthropic-beta"] == "feature-x"
    body = rec.body()
    assert body == {
        "model": "claude-test",
        "max_tokens": 99,  # Request.extra is merged last and wins
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["\n\n", "END"],
        "top_k": 40,
    }
    assert response.completions[0].text == "hi there"
    assert response.completions[0].finish_reason == "stop"
    assert response.id == "msg_01"
    assert response.usage == Usage(prompt_tokens=11, completion_tokens=5)
    assert response.usage_reported
    await client.aclose()


@pytest.mark.asyncio
async def test_optional_fields_are_omitted() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body()))
    ep, client = make(rec)
    await ep.request(chat(("user", "hi")))
    assert set(rec.body()) == {"model", "max_tokens", "messages"}
    await client.aclose()


@pytest.mark.asyncio
async def test_system_extraction_and_same_role_merge() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body()))
    ep, client = make(rec)
    await ep.request(
        chat(
            ("system", "Be brief."),
            ("developer", "Answer in French."),
            ("user", "part one"),
            ("user", "part two"),
            ("assistant", "ok"),
            ("user", "go on"),
        )
    )
    body = rec.body()
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [
        {"role": "user", "content": "part one\n\npart two"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "go on"},
    ]
    await client.aclose()


@pytest.mark.asyncio
async def test_prefill_is_a_trailing_assistant_message() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(" 4.")))
    ep, client = make(rec)
    response = await ep.request(chat(("user", "2+2?"), prefill="The answer is"))
    assert rec.body()["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    assert response.completions[0].text == " 4."  # only the continuation
    assert Anthropic.supports_prefill
    await client.aclose()


@pytest.mark.asyncio
async def test_prefill_trailing_whitespace_is_trimmed_and_not_repeated() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(" 4.")))
    ep, client = make(rec)
    response = await ep.request(chat(("user", "2+2?"), prefill="The answer is "))
    assert rec.body()["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    assert "The answer is " + response.completions[0].text == "The answer is 4."
    await client.aclose()


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (chat(("user", "x"), temperature=1.5), "temperature"),
        (chat(("user", "x"), logprobs=True), "logprobs"),
        (chat(("user", "x"), top_logprobs=3), "logprobs"),
        (Request(prompt="raw text"), "messages="),
        (chat(("user", "x"), ("tool", "result")), "tool"),
        (chat(("system", "only a system prompt")), "user message"),
        (chat(("user", "x"), ("assistant", "partial"), prefill="more"), "prefill"),
    ],
)
@pytest.mark.asyncio
async def test_unsupported_requests_raise_config_error(request_: Request, needle: str) -> None:
    rec = Recorder(httpx.Response(200, json=ok_body()))
    ep, client = make(rec)
    with pytest.raises(ConfigError, match=needle):
        await ep.request(request_)
    assert rec.requests == []  # refused before anything was sent
    await client.aclose()


# -- parsing ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_usage_with_cache_tokens_sums_into_prompt_tokens() -> None:
    usage = {
        "input_tokens": 20,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 300,
        "output_tokens": 42,
    }
    rec = Recorder(httpx.Response(200, json=ok_body(usage=usage)))
    price = Price(input=1.0, output=2.0, cached_input=0.1, cache_write=1.25)
    ep, client = make(rec, price=price)
    response = await ep.request(chat(("user", "hi")))
    assert response.usage == Usage(
        prompt_tokens=1320, completion_tokens=42, cached_prompt_tokens=1000, cache_write_tokens=300
    )
    assert response.completions[0].completion_tokens == 42
    # Each kind of input token is billed at its own rate ($/MTok -> $/token: / 1e6).
    expected = (20 * 1.0 + 1000 * 0.1 + 300 * 1.25 + 42 * 2.0) / 1e6
    assert ep.price is not None
    assert ep.price.cost_usd(response.usage) == pytest.approx(expected, rel=1e-12)
    await client.aclose()


@pytest.mark.asyncio
async def test_null_cache_fields_count_as_zero() -> None:
    usage = {
        "input_tokens": 9,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
        "output_tokens": 3,
    }
    rec = Recorder(httpx.Response(200, json=ok_body(usage=usage)))
    ep, client = make(rec)
    response = await ep.request(chat(("user", "hi")))
    assert response.usage == Usage(prompt_tokens=9, completion_tokens=3)
    await client.aclose()


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "refusal"),
    ],
)
@pytest.mark.asyncio
async def test_stop_reason_mapping(stop_reason: str, finish: str) -> None:
    rec = Recorder(httpx.Response(200, json=ok_body(stop_reason=stop_reason)))
    ep, client = make(rec)
    response = await ep.request(chat(("user", "hi")))
    assert response.completions[0].finish_reason == finish
    await client.aclose()


@pytest.mark.asyncio
async def test_thinking_blocks_are_skipped_but_counted() -> None:
    content = [
        {"type": "thinking", "thinking": "let me think", "signature": "sig"},
        {"type": "text", "text": "Four"},
        {"type": "redacted_thinking", "data": "xxx"},
        {"type": "text", "text": " it is."},
    ]
    usage = {"input_tokens": 5, "output_tokens": 80}
    rec = Recorder(httpx.Response(200, json=ok_body(content=content, usage=usage)))
    ep, client = make(rec)
    response = await ep.request(chat(("user", "2+2?")))
    assert response.completions[0].text == "Four it is."
    assert response.extra["thinking_blocks"] == 2
    assert response.usage.completion_tokens == 80  # thinking already included by Anthropic
    await client.aclose()


@pytest.mark.asyncio
async def test_missing_usage_is_estimated_and_flagged() -> None:
    body = ok_body("abc")
    del body["usage"]
    rec = Recorder(httpx.Response(200, json=body))
    ep, client = make(rec)
    request = chat(("user", "hello"), max_tokens=50)
    response = await ep.request(request)
    assert not response.usage_reported
    ledger = Ledger()
    assert response.usage.prompt_tokens == ledger.prompt_tokens(request)
    assert response.usage.completion_tokens == len(b"abc")
    await client.aclose()


@pytest.mark.asyncio
async def test_fan_out_of_n_sums_usage() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body("x")))
    ep, client = make(rec)
    response = await ep.request(chat(("user", "hi"), n=3))
    assert len(rec.requests) == 3
    assert [c.index for c in response.completions] == [0, 1, 2]
    assert response.usage == Usage(prompt_tokens=33, completion_tokens=15)
    assert ep.prompt_copies(chat(("user", "hi"), n=3)) == 3
    await client.aclose()


# -- errors and retries -----------------------------------------------------------------


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.asyncio
async def test_429_is_rate_limit_error_with_retry_after() -> None:
    rec = Recorder(
        httpx.Response(429, json=error_body("rate_limit_error", "slow down"), headers={"retry-after": "3"})
    )
    ep, client = make(rec)
    with pytest.raises(RateLimitError) as info:
        await ep.request(chat(("user", "hi")))
    assert info.value.status_code == 429
    assert info.value.retry_after == 3.0
    assert "slow down" in str(info.value)
    await client.aclose()


@pytest.mark.parametrize("status", [500, 503, 529])
@pytest.mark.asyncio
async def test_5xx_and_overloaded_are_server_errors(status: int) -> None:
    rec = Recorder(httpx.Response(status, json=error_body("overloaded_error", "Overloaded")))
    ep, client = make(rec)
    with pytest.raises(ServerError) as info:
        await ep.request(chat(("user", "hi")))
    assert info.value.status_code == status
    assert "Overloaded" in info.value.body
    await client.aclose()


@pytest.mark.asyncio
async def test_other_4xx_keeps_status_and_body_and_is_not_retried() -> None:
    raw = json.dumps(error_body("invalid_request_error", "max_tokens: too large"))
    rec = Recorder(httpx.Response(400, text=raw))
    ep, client = make(rec, retry=FAST_RETRY)
    with pytest.raises(HTTPStatusError) as info:
        await ep.request(chat(("user", "hi")))
    assert type(info.value) is HTTPStatusError
    assert info.value.status_code == 400
    assert info.value.body == raw
    assert "invalid_request_error" in str(info.value)
    assert len(rec.requests) == 1
    await client.aclose()


@pytest.mark.asyncio
async def test_529_is_retried_then_succeeds() -> None:
    rec = Recorder(
        httpx.Response(529, json=error_body("overloaded_error", "Overloaded")),
        httpx.Response(200, json=ok_body("finally")),
    )
    ep, client = make(rec, retry=FAST_RETRY)
    response = await ep.request(chat(("user", "hi")))
    assert response.completions[0].text == "finally"
    assert len(rec.requests) == 2
    await client.aclose()


@pytest.mark.asyncio
async def test_transport_error_is_wrapped() -> None:
    rec = Recorder(httpx.ConnectError("connection refused"))
    ep, client = make(rec)
    with pytest.raises(TransportError, match="ConnectError"):
        await ep.request(chat(("user", "hi")))
    await client.aclose()


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json=error_body("overloaded_error", "Overloaded")),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"type": "message", "usage": {"input_tokens": 1, "output_tokens": 1}}),
        httpx.Response(200, json=ok_body(usage={"input_tokens": -1, "output_tokens": 2})),
    ],
)
@pytest.mark.asyncio
async def test_unusable_2xx_answers_are_response_errors(reply: httpx.Response) -> None:
    rec = Recorder(reply)
    ep, client = make(rec, retry=FAST_RETRY)
    with pytest.raises(ResponseError):
        await ep.request(chat(("user", "hi")))
    assert len(rec.requests) == 1  # not retryable
    await client.aclose()


# -- secrets, environment, client lifetime ----------------------------------------------


def _all_text(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    parts.append(str(getattr(exc, "body", "")))
    return "\n".join(parts)


@pytest.mark.asyncio
async def test_api_key_never_in_repr_or_errors() -> None:
    echo = json.dumps(error_body("authentication_error", f"invalid x-api-key {KEY}"))
    rec = Recorder(httpx.Response(401, text=echo))
    ep, client = make(rec)
    assert KEY not in repr(ep)
    assert KEY not in ep.name
    with pytest.raises(HTTPStatusError) as status_info:
        await ep.request(chat(("user", "hi")))
    assert KEY not in _all_text(status_info.value)
    assert "authentication_error" in str(status_info.value)

    rec.answers = [httpx.ConnectError(f"failed while sending {KEY}")]
    with pytest.raises(TransportError) as transport_info:
        await ep.request(chat(("user", "hi")))
    assert KEY not in _all_text(transport_info.value)
    assert transport_info.value.__cause__ is None  # the httpx request (with headers) is not chained
    with pytest.raises(TypeError):
        ep.__getstate__()
    await client.aclose()


@pytest.mark.asyncio
async def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key-42")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/proxy/")
    rec = Recorder(httpx.Response(200, json=ok_body()))
    client = httpx.AsyncClient(transport=httpx.MockTransport(rec))
    ep = Anthropic("claude-test", http_client=client, retry=NO_RETRY)
    await ep.request(chat(("user", "hi")))
    assert str(rec.requests[0].url) == "http://127.0.0.1:9/proxy/v1/messages"
    assert rec.requests[0].headers["x-api-key"] == "env-key-42"
    assert "127.0.0.1" in ep.name
    await client.aclose()


def test_missing_api_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        Anthropic("claude-test")


@pytest.mark.parametrize(
    "kwargs",
    [{"base_url": "not a url"}, {"timeout": 0.0}, {"max_concurrency": 0}],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Anthropic("claude-test", api_key=KEY, **kwargs)


def test_price_lookup_uses_anthropic_provider_and_explicit_price_wins() -> None:
    model = "claude-sonnet-4-5"
    assert Anthropic(model, api_key=KEY).price == lookup_price(model, "anthropic")
    explicit = Price(input=1.0, output=1.0)
    assert Anthropic(model, api_key=KEY, price=explicit).price == explicit


@pytest.mark.asyncio
async def test_injected_client_is_not_closed() -> None:
    rec = Recorder(httpx.Response(200, json=ok_body()))
    ep, client = make(rec)
    async with ep:
        await ep.request(chat(("user", "hi")))
    assert not client.is_closed
    await client.aclose()


@pytest.mark.asyncio
async def test_own_client_is_closed_by_aclose() -> None:
    ep = Anthropic("claude-test", api_key=KEY)
    async with ep:
        own = ep._pool()[0].client  # created lazily; no request is sent
        assert not own.is_closed
    assert own.is_closed
    # A later use opens a fresh client, which aclose() closes too.
    again = ep._pool()[0].client
    assert again is not own
    await ep.aclose()
    assert again.is_closed
