"""Anthropic streaming against a fake Messages server on 127.0.0.1 (the real event stream)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from fakehttp import HTTPRequest, HTTPResponse, HTTPServer, SSEResponse, serve

from adaptive import (
    Anthropic,
    Budget,
    Client,
    ControllerConfig,
    Message,
    Price,
    Request,
    StreamError,
)
from adaptive._ledger import Ledger, prompt_token_bound
from adaptive._prices import PICO
from adaptive._tokens import estimate_tokens
from adaptive.endpoints import HTTPSettings, RetryPolicy, UsageMeter
from adaptive.endpoints._base import set_meter

KEY = "sk-ant-loopback-SECRET"
PRICE = Price(input=1.0, output=5.0)
RETRY = RetryPolicy(attempts=3, initial_wait=0, max_wait=0)
WORDS = ["The", " answer", " is", " 42."]
THOUGHTS = ["Let me add ", "six and seven, ", "times six."]
OUTPUT_TOKENS = 40  # what the fake bills: thinking and text together, as Anthropic does
# Two text deltas arrived before an error, a cut or a stall: counted as at least a token a
# delta, or the byte estimate when that is more.
STREAMED = max(2, estimate_tokens(len("".join(WORDS[:2]).encode())))
USAGE_IN = {"input_tokens": 12, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 5}


def event(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


class FakeAnthropic:
    """Answers `POST /v1/messages` like the Messages API; the prompt picks a script.

    "THINK" adds a thinking block, "ERROR" sends an `error` event after two text deltas,
    "CUT" drops the connection after two text deltas, "STALL" stops sending after two.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: list[dict[str, Any]] = []
        self.app = HTTPServer({("POST", "/v1/messages"): self.messages})

    async def messages(self, req: HTTPRequest) -> HTTPResponse | SSEResponse:
        self.calls += 1
        if req.headers.get("x-api-key") != KEY:
            error = {"type": "error", "error": {"type": "authentication_error", "message": "bad key"}}
            return HTTPResponse.json(error, status=401)
        body = req.json()
        self.bodies.append(body)
        prompt = body["messages"][-1]["content"]
        if not body.get("stream"):
            content = [{"type": "text", "text": "".join(WORDS)}]
            if "THINK" in prompt:
                content.insert(0, {"type": "thinking", "thinking": "".join(THOUGHTS), "signature": "sig"})
            return HTTPResponse.json(
                {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": content,
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {**USAGE_IN, "output_tokens": OUTPUT_TOKENS},
                }
            )
        return SSEResponse(self.events(body["model"], prompt))

    async def events(self, model: str, prompt: str) -> AsyncIterator[str]:
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**USAGE_IN, "output_tokens": 1},
        }
        yield event("message_start", message=message)
        index = 0
        if "THINK" in prompt:
            yield event("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""})
            for thought in THOUGHTS:
                delta = {"type": "thinking_delta", "thinking": thought}
                yield event("content_block_delta", index=0, delta=delta)
            yield event(
                "content_block_delta", index=0, delta={"type": "signature_delta", "signature": "c2ln"}
            )
            yield event("content_block_stop", index=0)
            index = 1
        yield event("content_block_start", index=index, content_block={"type": "text", "text": ""})
        yield event("ping")
        for sent, word in enumerate(WORDS):
            if sent == 2:
                if "ERROR" in prompt:
                    yield event("error", error={"type": "overloaded_error", "message": "Overloaded"})
                    return
                if "CUT" in prompt:
                    raise RuntimeError("the fake server drops the connection")
                if "STALL" in prompt:
                    await anyio.sleep(60)  # until the client gives up (the test server stops it)
            yield event("content_block_delta", index=index, delta={"type": "text_delta", "text": word})
        yield event("content_block_stop", index=index)
        delta = {"stop_reason": "end_turn", "stop_sequence": None}
        yield event("message_delta", delta=delta, usage={"output_tokens": OUTPUT_TOKENS})
        yield event("message_stop")


def chat(text: str, **kw: Any) -> Request:
    return Request(messages=(Message(role="user", content=text),), **kw)


@pytest.mark.asyncio
async def test_a_full_stream_assembles_text_usage_and_finish_reason() -> None:
    fake = FakeAnthropic()
    async with serve(fake.app) as server:
        settings = HTTPSettings(base_url=server.url, api_key=KEY, retry=RETRY)
        async with (
            Anthropic("claude-fake", settings=settings) as plain,
            Anthropic("claude-fake", settings=settings, stream=True) as streamed,
        ):
            assert not plain.stream_responses  # off unless asked, like the OpenAI endpoints
            meter = UsageMeter()
            token = set_meter(meter)
            try:
                response = await streamed.request(chat("what is it?"))
            finally:
                token.var.reset(token)
            assert fake.bodies[-1]["stream"] is True
            completion = response.completions[0]
            assert completion.text == "The answer is 42."
            assert completion.finish_reason == "stop"
            assert completion.completion_tokens == OUTPUT_TOKENS
            assert response.usage_reported and response.model == "claude-fake" and response.id == "msg_fake"
            usage = response.usage
            assert (usage.prompt_tokens, usage.completion_tokens) == (20, OUTPUT_TOKENS)
            assert (usage.cached_prompt_tokens, usage.cache_write_tokens) == (5, 3)
            assert usage.reasoning_tokens == 0
            assert meter.usage == usage and meter.samples == 1
            # The same answer without streaming: the same text and usage.
            same = await plain.request(chat("what is it?"))
            assert same.completions[0].text == completion.text and same.usage == usage

            async with streamed.stream(chat("again")) as events:
                deltas = [e.text async for e in events if e.kind == "delta"]
            assert deltas == WORDS
            assert events.response is not None and events.response.usage == usage


@pytest.mark.asyncio
async def test_thinking_deltas_count_as_reasoning_within_the_output() -> None:
    fake = FakeAnthropic()
    async with (
        serve(fake.app) as server,
        Anthropic("claude-fake", base_url=server.url, api_key=KEY, stream=True) as claude,
    ):
        response = await claude.request(chat("THINK about it"))
        assert response.completions[0].text == "The answer is 42."  # thinking is not the answer
        assert response.extra["thinking_blocks"] == 1
        usage = response.usage
        assert usage.completion_tokens == OUTPUT_TOKENS
        thought_bytes = len("".join(THOUGHTS).encode())
        assert usage.reasoning_tokens == -(-thought_bytes // 4)  # estimate_tokens of the text
        assert 0 < usage.reasoning_tokens < usage.completion_tokens
        # The non-streamed answer reports the same reasoning estimate.
        async with Anthropic("claude-fake", base_url=server.url, api_key=KEY) as plain_claude:
            plain = await plain_claude.request(chat("THINK"))
        assert plain.usage.reasoning_tokens == usage.reasoning_tokens


@pytest.mark.asyncio
async def test_an_error_event_mid_stream_is_a_stream_error_with_the_partial() -> None:
    fake = FakeAnthropic()
    async with (
        serve(fake.app) as server,
        Anthropic("claude-fake", base_url=server.url, api_key=KEY, stream=True, retry=RETRY) as claude,
    ):
        with pytest.raises(StreamError) as info:
            await claude.request(chat("ERROR please"))
        assert "overloaded_error" in str(info.value) and "Overloaded" in str(info.value)
        assert KEY not in str(info.value)
        partial = info.value.partial
        assert partial.completions[0].text == "The answer"
        assert partial.completions[0].finish_reason == "cancelled"
        assert partial.usage.prompt_tokens == 20 and partial.usage.completion_tokens == STREAMED
        assert not partial.usage_reported
        assert fake.calls == 1  # a stream that spent tokens is not retried


@pytest.mark.asyncio
async def test_a_cut_stream_keeps_what_arrived_and_the_endpoint_recovers() -> None:
    fake = FakeAnthropic()
    async with (
        serve(fake.app) as server,
        Anthropic("claude-fake", base_url=server.url, api_key=KEY, stream=True, retry=RETRY) as claude,
    ):
        meter = UsageMeter()
        token = set_meter(meter)
        try:
            with pytest.raises(StreamError, match="cut off") as info:
                await claude.request(chat("CUT here"))
        finally:
            token.var.reset(token)
        partial = info.value.partial
        assert partial.completions[0].text == "The answer"
        assert meter.usage == partial.usage and meter.samples == 1
        assert meter.prompt_reported  # message_start carried the input count before the cut
        assert fake.calls == 1
        assert (await claude.request(chat("fine"))).completions[0].text == "The answer is 42."
        assert all(shard.busy == 0 for shard in claude._own)


@pytest.mark.asyncio
async def test_a_deadline_mid_stream_charges_what_was_streamed() -> None:
    fake = FakeAnthropic()
    async with (
        serve(fake.app) as server,
        Anthropic("claude-fake", base_url=server.url, api_key=KEY, price=PRICE, stream=True) as claude,
    ):
        client = Client(claude, controller=ControllerConfig(batch_as_n=False))
        request = chat("STALL now", max_tokens=500)
        with anyio.fail_after(10):
            result = await client.run("STALL now", budget=Budget(seconds=0.5, usd=1.0), max_tokens=500)
        assert result.stop_reason == "deadline"
        [charge] = result.charges
        assert charge.status == "cancelled" and charge.estimated
        # Charged the exact prompt (from message_start) and the two deltas that arrived ...
        assert (charge.usage.prompt_tokens, charge.usage.completion_tokens) == (20, STREAMED)
        assert result.cost_usd == pytest.approx(charge.usd)
        assert charge.usd == pytest.approx((20 * 1.0 + STREAMED * 5.0) / 1e6)
        # ... far less than the worst case the ledger reserved for it.
        worst_pico, _ = Ledger().worst_case(request, PRICE)
        assert charge.usd * PICO < worst_pico / 10
        assert prompt_token_bound(request) >= 20
