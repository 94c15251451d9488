from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from adaptive import ConfigError, Message, OpenAICompletions, Request, ResponseError, StreamError
from adaptive._ledger import prompt_token_bound
from adaptive.endpoints import RetryPolicy, UsageMeter
from adaptive.endpoints._base import set_meter

KEY = "sk-completions-SECRET-42"


class Recorder:
    def __init__(self, reply: httpx.Response) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def endpoint(reply: httpx.Response, **kw: Any) -> tuple[OpenAICompletions, Recorder, httpx.AsyncClient]:
    rec = Recorder(reply)
    client = httpx.AsyncClient(transport=httpx.MockTransport(rec))
    ep = OpenAICompletions(
        "base-model",
        base_url="http://lm.local:8000/v1",
        api_key=KEY,
        http_client=client,
        retry=RetryPolicy(attempts=2, initial_wait=0, max_wait=0),
        **kw,
    )
    return ep, rec, client


def text_answer(*texts: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "text_completion",
        "model": "base-model",
        "choices": [
            {"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in enumerate(texts)
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


@pytest.mark.asyncio
async def test_body_url_and_capabilities() -> None:
    ep, rec, client = endpoint(httpx.Response(200, json=text_answer(" 4")))
    assert (ep.supports_n, ep.supports_prefill, ep.supports_raw) == (True, False, True)
    resp = await ep.request(
        Request(prompt="2 + 2 =", n=1, max_tokens=3, temperature=0.0, stop=("\n",), seed=3)
    )
    assert str(rec.requests[0].url) == "http://lm.local:8000/v1/completions"
    assert rec.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert rec.bodies[0] == {
        "model": "base-model",
        "prompt": "2 + 2 =",
        "n": 1,
        "max_tokens": 3,
        "temperature": 0.0,
        "stop": ["\n"],
        "seed": 3,
    }
    assert resp.completions[0].text == " 4"
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(("logprobs", "top", "sent"), [(True, None, 0), (True, 3, 3), (False, 2, 2)])
async def test_logprobs_parameter(logprobs: bool, top: int | None, sent: int) -> None:
    ep, rec, client = endpoint(httpx.Response(200, json=text_answer("x")))
    await ep.request(Request(prompt="p", logprobs=logprobs, top_logprobs=top))
    assert rec.bodies[0]["logprobs"] == sent
    await client.aclose()


@pytest.mark.asyncio
async def test_parses_choices_logprobs_and_usage() -> None:
    body = text_answer(
        " four",
        " 4",
        usage={
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "completion_tokens_details": {"reasoning_tokens": 0},
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    )
    body["choices"][0]["logprobs"] = {
        "tokens": [" fo", "ur"],
        "token_logprobs": [-0.5, -0.1],
        "top_logprobs": [{" fo": -0.5, " four": -0.9}, {"ur": -0.1}],
        "text_offset": [0, 3],
    }
    body["choices"][1]["logprobs"] = {"tokens": [" 4"], "token_logprobs": [None], "top_logprobs": None}
    body["choices"][1]["finish_reason"] = "length"
    ep, _rec, client = endpoint(httpx.Response(200, json=body))
    resp = await ep.request(Request(prompt="two plus two is", n=2, top_logprobs=2))
    first, second = resp.completions
    assert first.logprobs is not None and second.logprobs is not None
    assert [(t.token, t.logprob) for t in first.logprobs] == [(" fo", -0.5), ("ur", -0.1)]
    assert first.logprobs[0].top == ((" fo", -0.5), (" four", -0.9))  # best first
    assert [(t.token, t.logprob) for t in second.logprobs] == [(" 4", 0.0)]
    assert (first.completion_tokens, second.completion_tokens) == (2, 1)
    assert second.finish_reason == "length"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.cached_prompt_tokens) == (
        5,
        3,
        2,
    )
    assert resp.usage_reported and resp.id == "cmpl-1"
    await client.aclose()


@pytest.mark.asyncio
async def test_missing_usage_estimated() -> None:
    ep, _rec, client = endpoint(httpx.Response(200, json=text_answer("abcdefghi")))
    req = Request(prompt="Continue:", max_tokens=100)
    resp = await ep.request(req)
    assert not resp.usage_reported
    assert resp.usage.prompt_tokens == prompt_token_bound(req)
    assert resp.usage.completion_tokens == math.ceil(9 / 4)
    await client.aclose()


@pytest.mark.asyncio
async def test_malformed_choice_is_response_error() -> None:
    ep, _rec, client = endpoint(httpx.Response(200, json={"choices": [{"index": 0, "text": None}]}))
    with pytest.raises(ResponseError, match="malformed"):
        await ep.request(Request(prompt="x"))
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (Request(messages=(Message(role="user", content="hi"),)), "raw prompt"),
        (Request(prompt="The answer", prefill=" is"), "prefill"),
    ],
)
async def test_requests_it_cannot_take(request_: Request, fragment: str) -> None:
    ep, rec, client = endpoint(httpx.Response(200, json=text_answer("x")))
    with pytest.raises(ConfigError, match=fragment):
        await ep.request(request_)
    with pytest.raises(ConfigError, match=fragment):
        async with ep.stream(request_):
            pass
    assert rec.requests == []
    await client.aclose()


def sse(*events: dict[str, Any] | str) -> httpx.Response:
    body = b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)
    return httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=body)


def piece(text: str, index: int = 0, finish: str | None = None, lp: float | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
    if lp is not None:
        choice["logprobs"] = {"tokens": [text], "token_logprobs": [lp], "top_logprobs": [{text: lp}]}
    return {"id": "cmpl-s", "model": "base-model", "choices": [choice]}


@pytest.mark.asyncio
async def test_streaming_assembles_text_logprobs_and_usage() -> None:
    usage = {"id": "cmpl-s", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}
    reply = sse(
        piece(" 1", lp=-0.1),
        piece(" 2", index=1, lp=-0.2),
        piece(" 3", lp=-0.3),
        piece("", finish="stop"),
        piece("", index=1, finish="length"),
        usage,
        "[DONE]",
    )
    ep, rec, client = endpoint(reply, stream=True)
    resp = await ep.request(Request(prompt="Count:", n=2, logprobs=True))
    assert rec.bodies[0]["stream"] is True and rec.bodies[0]["logprobs"] == 0
    assert [c.text for c in resp.completions] == [" 1 3", " 2"]
    assert [c.finish_reason for c in resp.completions] == ["stop", "length"]
    first = resp.completions[0]
    assert first.logprobs is not None and [t.logprob for t in first.logprobs] == [-0.1, -0.3]
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (4, 3)
    await client.aclose()


@pytest.mark.asyncio
async def test_stream_cut_off_keeps_counted_usage() -> None:
    ep, _rec, client = endpoint(sse(piece(" a", lp=-1.0), piece(" b", lp=-1.0)), stream=True)
    req = Request(prompt="Letters:", max_tokens=20, logprobs=True)
    meter = UsageMeter()
    token = set_meter(meter)
    try:
        with pytest.raises(StreamError) as info:
            await ep.request(req)
    finally:
        token.var.reset(token)
    partial = info.value.partial
    assert partial.completions[0].text == " a b"
    assert partial.usage.completion_tokens == 2  # from the logprob tokens
    assert partial.usage.prompt_tokens == prompt_token_bound(req)
    assert meter.usage == partial.usage
    await client.aclose()


@pytest.mark.asyncio
async def test_public_stream() -> None:
    ep, _rec, client = endpoint(sse(piece("Once"), piece(" upon"), piece("", finish="stop"), "[DONE]"))
    async with ep.stream(Request(prompt="Tell me a story.")) as events:
        got = [(e.kind, e.text) async for e in events]
    assert got == [("delta", "Once"), ("delta", " upon"), ("done", "")]
    assert events.response is not None and events.response.completions[0].text == "Once upon"
    await client.aclose()
