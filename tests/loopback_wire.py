"""A scripted loopback server for the three HTTP endpoints, and answers in each wire format.

Each test sets `server.reply` (HTTPRequest -> HTTPResponse | SSEResponse); `Kind` makes an
endpoint of one kind pointed at it and builds well-formed (or deliberately broken) answers.
Shared by the answer-check, fault-sweep and secrets tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
from fakehttp import HTTPRequest, HTTPResponse, HTTPServer, SSEResponse, serve

from adaptive import Anthropic, Message, OpenAIChat, OpenAICompletions, Price, Request
from adaptive.endpoints import HTTPEndpoint, RetryPolicy

KEY = "sk-SECRET-loopback-5f3a9c"
PRICE = Price(input=1.0, output=2.0)
Reply = Callable[[HTTPRequest], HTTPResponse | SSEResponse]


class Scripted:
    """Answers every endpoint path with `reply(request)`; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.reply: Reply = lambda req: HTTPResponse.json({"error": {"message": "no reply set"}}, 500)

        async def handle(req: HTTPRequest) -> HTTPResponse | SSEResponse:
            self.calls += 1
            return self.reply(req)

        paths = ("/v1/chat/completions", "/v1/completions", "/v1/messages")
        self.app = HTTPServer({("POST", p): handle for p in paths})


@contextlib.asynccontextmanager
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    """A running `Scripted` server and its base URL."""
    fake = Scripted()
    async with serve(fake.app) as server:
        yield fake, server.url


@contextlib.asynccontextmanager
async def dropping() -> AsyncIterator[str]:
    """A server that accepts a connection and closes it without answering; its base URL."""

    async def drop(stream: anyio.abc.SocketStream) -> None:
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    error: Exception | None = None
    async with listener, anyio.create_task_group() as tg:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, drop)
        try:
            yield f"http://127.0.0.1:{port}"
        except Exception as exc:
            error = exc  # re-raised below, so the caller's error is not wrapped in a group
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error


async def refused_url() -> str:
    """A loopback URL nothing listens on (a port just freed)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return f"http://127.0.0.1:{port}"


def sse(events: list[Any], *, cut: bool = False) -> SSEResponse:
    """An event stream of `events` (dicts as JSON, strings as they are); `cut` drops it at the end."""

    async def gen() -> AsyncIterator[str]:
        for e in events:
            yield e if isinstance(e, str) else json.dumps(e)
        if cut:
            raise RuntimeError("the fake server drops the connection")

    return SSEResponse(gen())


@dataclasses.dataclass(frozen=True)
class Kind:
    """One endpoint kind: how to make it and how its answers look."""

    name: str
    fan_out: bool = False  # OpenAIChat(supports_n=False)

    @property
    def anthropic(self) -> bool:
        return self.name == "anthropic"

    def endpoint(self, base: str, *, stream: bool = False, **kw: Any) -> HTTPEndpoint:
        kw.setdefault("retry", RetryPolicy(attempts=1))
        kw.setdefault("price", PRICE)
        if self.anthropic:
            return Anthropic("claude-test", base_url=base, api_key=KEY, stream=stream, **kw)
        if self.name == "completions":
            return OpenAICompletions("m", base_url=base + "/v1", api_key=KEY, stream=stream, **kw)
        return OpenAIChat(
            "m", base_url=base + "/v1", api_key=KEY, stream=stream, supports_n=not self.fan_out, **kw
        )

    def request(self, n: int = 1, max_tokens: int = 16) -> Request:
        if self.name == "completions":
            return Request(prompt="Say hi", n=n, max_tokens=max_tokens)
        return Request(messages=(Message(role="user", content="Say hi"),), n=n, max_tokens=max_tokens)

    # -- complete answers ---------------------------------------------------------------
    def usage(self, prompt: Any = 5, completion: Any = 3) -> dict[str, Any]:
        if self.anthropic:
            return {"input_tokens": prompt, "output_tokens": completion}
        return {"prompt_tokens": prompt, "completion_tokens": completion}

    def body(self, texts: list[str], usage: dict[str, Any] | None, indices: list[int] | None = None) -> Any:
        if self.anthropic:
            out: dict[str, Any] = {
                "id": "msg_1",
                "type": "message",
                "content": [{"type": "text", "text": texts[0]}],
                "stop_reason": "end_turn",
            }
            if usage is not None:
                out["usage"] = usage
            return out
        idx = indices if indices is not None else list(range(len(texts)))
        if self.name == "completions":
            choices = [
                {"index": i, "text": t, "finish_reason": "stop"} for i, t in zip(idx, texts, strict=True)
            ]
        else:
            choices = [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in zip(idx, texts, strict=True)
            ]
        out = {"id": "x", "model": "m", "choices": choices}
        if usage is not None:
            out["usage"] = usage
        return out

    # -- streamed answers ---------------------------------------------------------------
    def events(
        self, texts: list[str], usage: dict[str, Any] | None, indices: list[int] | None = None
    ) -> list[Any]:
        if self.anthropic:
            start_usage = {"input_tokens": usage["input_tokens"], "output_tokens": 1} if usage else None
            delta_usage = {"output_tokens": usage["output_tokens"]} if usage else None
            message: dict[str, Any] = {"id": "msg_1", "model": "claude-test", "content": []}
            if start_usage is not None:
                message["usage"] = start_usage
            out: list[Any] = [
                {"type": "message_start", "message": message},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": texts[0]},
                },
                {"type": "content_block_stop", "index": 0},
            ]
            delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
            if delta_usage is not None:
                delta["usage"] = delta_usage
            out += [delta, {"type": "message_stop"}]
            return out
        idx = indices if indices is not None else list(range(len(texts)))
        chunks: list[Any] = []
        for i, t in zip(idx, texts, strict=True):
            for word in t.split(" "):
                piece = (
                    {"text": word + " "} if self.name == "completions" else {"delta": {"content": word + " "}}
                )
                chunks.append(
                    {"id": "s", "model": "m", "choices": [{"index": i, "finish_reason": None, **piece}]}
                )
            end = {"text": ""} if self.name == "completions" else {"delta": {}}
            chunks.append({"id": "s", "choices": [{"index": i, "finish_reason": "stop", **end}]})
        if usage is not None:
            chunks.append({"id": "s", "choices": [], "usage": usage})
        return [*chunks, "[DONE]"]

    def answer(
        self,
        texts: list[str],
        usage: dict[str, Any] | None,
        *,
        stream: bool,
        indices: list[int] | None = None,
    ) -> HTTPResponse | SSEResponse:
        if stream:
            return sse(self.events(texts, usage, indices))
        return HTTPResponse.json(self.body(texts, usage, indices))


CHAT = Kind("chat")
COMPLETIONS = Kind("completions")
ANTHROPIC = Kind("anthropic")
CHAT_FAN_OUT = Kind("chat", fan_out=True)
KINDS = [CHAT, COMPLETIONS, ANTHROPIC]
