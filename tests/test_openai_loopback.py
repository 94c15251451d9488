"""End to end: OpenAIChat / OpenAICompletions against a fake OpenAI server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakehttp import HTTPRequest, HTTPResponse, HTTPServer, SSEResponse, serve

from adaptive import Budget, HTTPStatusError, Message, OpenAIChat, OpenAICompletions, Request, StreamError
from adaptive._ledger import Ledger
from adaptive.endpoints import RetryPolicy, UsageMeter
from adaptive.endpoints._base import set_meter

KEY = "sk-loopback-key"


def reply_words(prompt: str, index: int) -> list[str]:
    """The fake model's deterministic answer, word by word."""
    return [f"#{index}", "heard", *prompt.split()[-3:]]


class FakeOpenAI:
    def __init__(self) -> None:
        self.calls = 0
        self.app = HTTPServer(
            {("POST", "/v1/chat/completions"): self.chat, ("POST", "/v1/completions"): self.completions}
        )

    async def chat(self, req: HTTPRequest) -> HTTPResponse | SSEResponse:
        return self.answer(req, chat=True)

    async def completions(self, req: HTTPRequest) -> HTTPResponse | SSEResponse:
        return self.answer(req, chat=False)

    def answer(self, req: HTTPRequest, *, chat: bool) -> HTTPResponse | SSEResponse:
        self.calls += 1
        if req.headers.get("authorization") != f"Bearer {KEY}":
            return HTTPResponse.json({"error": {"message": "bad key", "code": "invalid_api_key"}}, status=401)
        body = req.json()
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        n = body.get("n", 1)
        answers = [reply_words(prompt, i)[: body["max_tokens"]] for i in range(n)]
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": sum(len(a) for a in answers),
            "prompt_tokens_details": {"cached_tokens": 1},
        }
        if not body.get("stream"):
            choices = [
                {"index": i, "finish_reason": "stop", **self.content(" ".join(a), chat, delta=False)}
                for i, a in enumerate(answers)
            ]
            return HTTPResponse.json(
                {"id": "fake-1", "model": body["model"], "choices": choices, "usage": usage}
            )

        async def events() -> AsyncIterator[str]:
            sent = 0
            for i, words in enumerate(answers):
                for j, word in enumerate(words):
                    if "CUT" in prompt and sent == 2:
                        raise RuntimeError("the fake server drops the connection")
                    text = word if j == 0 else " " + word
                    choice = {"index": i, "finish_reason": None, **self.content(text, chat, delta=True)}
                    yield json.dumps({"id": "fake-s", "model": body["model"], "choices": [choice]})
                    sent += 1
                done = {"index": i, "finish_reason": "stop", **self.content("", chat, delta=True)}
                yield json.dumps({"id": "fake-s", "choices": [done]})
            yield json.dumps({"id": "fake-s", "choices": [], "usage": usage})
            yield "[DONE]"

        return SSEResponse(events())

    @staticmethod
    def content(text: str, chat: bool, *, delta: bool) -> dict[str, Any]:
        if not chat:
            return {"text": text}
        return {"delta": {"content": text}} if delta else {"message": {"role": "assistant", "content": text}}


def chat_req(text: str, **kw: Any) -> Request:
    return Request(messages=(Message(role="user", content=text),), **kw)


@pytest.mark.asyncio
async def test_chat_and_completions_against_a_real_server() -> None:
    fake = FakeOpenAI()
    async with serve(fake.app) as server:
        base = server.url + "/v1"
        async with (
            OpenAIChat("fake-chat", base_url=base, api_key=KEY) as chat,
            OpenAIChat("fake-chat", base_url=base, api_key=KEY, stream=True) as chat_streamed,
            OpenAICompletions("fake-lm", base_url=base, api_key=KEY) as lm,
            OpenAICompletions("fake-lm", base_url=base, api_key=KEY, stream=True) as lm_streamed,
        ):
            req = chat_req("please say the magic words", n=3)
            plain = await chat.request(req)
            streamed = await chat_streamed.request(req)
            expected = [" ".join(reply_words("please say the magic words", i)) for i in range(3)]
            assert [c.text for c in plain.completions] == expected
            assert [c.text for c in streamed.completions] == expected
            assert plain.usage == streamed.usage
            assert (plain.usage.prompt_tokens, plain.usage.completion_tokens) == (5, 15)
            assert plain.usage.cached_prompt_tokens == 1

            raw = Request(prompt="Once upon a time", max_tokens=2)
            a = await lm.request(raw)
            b = await lm_streamed.request(raw)
            assert a.completions[0].text == b.completions[0].text == "#0 heard"
            assert a.usage.completion_tokens == b.usage.completion_tokens == 2
            assert "127.0.0.1" in chat.name and KEY not in repr(chat)

            # The ledger settles what the server reported.
            ledger = Ledger(Budget(tokens=10_000))
            reservation = ledger.reserve(req, chat.price, endpoint=chat.name)
            charge = ledger.settle(reservation, await chat.request(req))
            assert charge.usage.total_tokens == 20 and ledger.spent_tokens == 20
            assert ledger.reserved_tokens == 0


@pytest.mark.asyncio
async def test_public_stream_against_a_real_server() -> None:
    fake = FakeOpenAI()
    async with (
        serve(fake.app) as server,
        OpenAIChat("fake-chat", base_url=server.url + "/v1", api_key=KEY) as chat,
    ):
        async with chat.stream(chat_req("one two three")) as events:
            deltas = [e.text async for e in events if e.kind == "delta"]
        assert "".join(deltas) == " ".join(reply_words("one two three", 0))
        assert events.response is not None and events.response.usage.completion_tokens == 5
        # Stopping after the first delta, then streaming again on the same endpoint.
        async with chat.stream(chat_req("four five six")) as events:
            first = await events.__anext__()
            assert first.text == "#0"
            partial = events.partial()
        assert partial.completions[0].text == "#0"
        again = await chat.request(chat_req("seven"))
        assert again.completions[0].text == "#0 heard seven"


@pytest.mark.asyncio
async def test_cut_stream_and_bad_key_against_a_real_server() -> None:
    fake = FakeOpenAI()
    async with serve(fake.app) as server:
        base = server.url + "/v1"
        retry = RetryPolicy(attempts=3, initial_wait=0, max_wait=0)
        async with OpenAIChat("fake-chat", base_url=base, api_key=KEY, stream=True, retry=retry) as chat:
            meter = UsageMeter()
            token = set_meter(meter)
            try:
                with pytest.raises(StreamError) as info:
                    await chat.request(chat_req("CUT here please"))
            finally:
                token.var.reset(token)
            partial = info.value.partial
            assert partial.completions[0].text == "#0 heard"
            assert partial.usage.completion_tokens == 2
            assert meter.usage == partial.usage
            calls = fake.calls
            assert calls == 1  # a stream that spent tokens is not retried
            # The endpoint still works after a dropped connection.
            assert (await chat.request(chat_req("fine"))).completions[0].text == "#0 heard fine"
            assert all(shard.busy == 0 for shard in chat._own)
        async with OpenAIChat("fake-chat", base_url=base, api_key="sk-wrong", retry=retry) as bad:
            with pytest.raises(HTTPStatusError) as err:
                await bad.request(chat_req("hello"))
            assert err.value.status_code == 401 and "bad key" in str(err.value)
            assert "sk-wrong" not in str(err.value)
            assert fake.calls == calls + 2  # 401 was not retried
