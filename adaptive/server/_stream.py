"""A streamed answer (`"stream": true`): live progress, then the answer, as server-sent events.

Progress comes first, as it happens: one `chat.completion.chunk` with empty `choices` per
event of the call, carrying `{"adaptive": {"event": kind, "round": n, ...its data}}` (an OpenAI
client reads these as chunks without choices, as it reads the usage chunk). Then the answer
as standard chunks (role and content, then `finish_reason`), then one chunk with empty
`choices` carrying the receipt (and `usage` when `stream_options.include_usage` is set), then
`data: [DONE]`. A failure mid-stream is `data: {"error": {...}}`, which OpenAI clients raise.

The call, the progress pump and a watcher for the client's disconnect share one task group:
a client that goes away cancels the call (its spend is still charged) and nothing outlives
the response.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.types import Receive, Scope, Send

from .._result import Result, TraceEvent
from ._chat import Meter, finish_reason, receipt, usage_body
from ._errors import APIError
from ._request import ChatCall

__all__ = ["ChatStream"]


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n\n"


class ChatStream:
    """An ASGI response that runs the call while streaming its progress and answer.

    Args:
        call: The request.
        meter: The call's meter (its progress stream is set here).
        run: Runs the call; returns the result or raises `APIError`.
        cid / created: The completion's id and time.
        on_end: Called with the result or error once the stream ends (for the log line);
            with None if the client went away first.
    """

    def __init__(
        self,
        call: ChatCall,
        meter: Meter,
        run: Callable[[], Awaitable[Result]],
        cid: str,
        created: int,
        on_end: Callable[[Result | APIError | None], None],
    ) -> None:
        self.call = call
        self.meter = meter
        self.run = run
        self.cid = cid
        self.created = created
        self.on_end = on_end
        self.disconnected = False
        self._finished = False
        self._outcome: Result | APIError | None = None

    def _chunk(self, **fields: Any) -> dict[str, Any]:
        return {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.call.model,
            **fields,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        tx, rx = anyio.create_memory_object_stream[TraceEvent](math.inf)
        self.meter.progress = tx
        try:
            await self._run(receive, send, tx, rx)
        finally:
            self.on_end(None if self.disconnected else self._outcome)

    async def _run(
        self,
        receive: Receive,
        send: Send,
        tx: MemoryObjectSendStream[TraceEvent],
        rx: MemoryObjectReceiveStream[TraceEvent],
    ) -> None:
        outcome: Result | APIError | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, receive, tg.cancel_scope)
                pumped = anyio.Event()
                tg.start_soon(self._pump, rx, send, pumped, tg.cancel_scope)
                try:
                    outcome = await self.run()
                except APIError as exc:
                    outcome = exc
                finally:
                    tx.close()
                self._outcome = outcome
                await pumped.wait()
                await self._finish(outcome, send)
                tg.cancel_scope.cancel()  # the watcher
        except OSError:
            self.disconnected = True

    async def _watch(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if self._finished:  # the server sees the end of a complete response this way too
                    return
                self.disconnected = True
                scope.cancel()
                return

    async def _pump(
        self,
        rx: MemoryObjectReceiveStream[TraceEvent],
        send: Send,
        pumped: anyio.Event,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            async with rx:
                async for event in rx:
                    progress = {"event": event.kind, "round": event.round, **event.data}
                    await send(
                        {
                            "type": "http.response.body",
                            "body": _sse(self._chunk(choices=[], adaptive=progress)),
                            "more_body": True,
                        }
                    )
        except OSError:
            self.disconnected = True
            scope.cancel()
        finally:
            pumped.set()

    async def _finish(self, outcome: Result | APIError | None, send: Send) -> None:
        parts: list[bytes] = []
        if isinstance(outcome, APIError):
            parts.append(_sse(outcome.body()))
        elif isinstance(outcome, Result):
            delta = {"role": "assistant", "content": outcome.text or ""}
            parts.append(_sse(self._chunk(choices=[{"index": 0, "delta": delta, "finish_reason": None}])))
            parts.append(
                _sse(
                    self._chunk(choices=[{"index": 0, "delta": {}, "finish_reason": finish_reason(outcome)}])
                )
            )
            tail: dict[str, Any] = {"choices": [], "adaptive": receipt(outcome)}
            if self.call.include_usage:
                tail["usage"] = usage_body(outcome)
            parts.append(_sse(self._chunk(**tail)))
        parts.append(b"data: [DONE]\n\n")
        self._finished = True
        await send({"type": "http.response.body", "body": b"".join(parts), "more_body": False})
