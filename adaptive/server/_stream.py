"""A streamed answer (`"stream": true`): live progress, then the answer, as server-sent events.

Progress comes first, as it happens: one `chat.completion.chunk` with empty `choices` per
event of the call, carrying `{"adaptive": {"event": kind, "round": n, ...its data}}` (an OpenAI
client reads these as chunks without choices, as it reads the usage chunk). Then the answer
as standard chunks (role and content, then `finish_reason`), then one chunk with empty
`choices` carrying the receipt (and `usage` when `stream_options.include_usage` is set), then
`data: [DONE]`. A failure mid-stream is `data: {"error": {...}}`, which OpenAI clients raise;
a call that fails before its first request is sent (a budget too small for one request) gets
a plain JSON error with its own status instead, as the 200 is only sent with that request.

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
        self._started = False
        self._outcome: Result | APIError | None = None

    def _chunk(self, **fields: Any) -> dict[str, Any]:
        return {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.call.model,
            **fields,
        }

    async def _start(self, send: Send) -> None:
        if not self._started:
            self._started = True
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            held: list[TraceEvent] = []
            async with rx:
                async for event in rx:
                    # The 200 goes out with the first request sent: a call refused before that
                    # (a budget too small for one request, a tenant's total that cannot hold
                    # its first request) still gets its own status.
                    if not self._started and event.kind != "send":
                        held.append(event)
                        continue
                    await self._start(send)
                    for e in (*held, event):
                        progress = {"event": e.kind, "round": e.round, **e.data}
                        await send(
                            {
                                "type": "http.response.body",
                                "body": _sse(self._chunk(choices=[], adaptive=progress)),
                                "more_body": True,
                            }
                        )
                    held.clear()
        except OSError:
            self.disconnected = True
            scope.cancel()
        finally:
            pumped.set()

    async def _finish(self, outcome: Result | APIError | None, send: Send) -> None:
        if isinstance(outcome, APIError) and not self._started:
            self._finished = True
            body = json.dumps(outcome.body(), default=str).encode()
            headers = [(b"content-type", b"application/json")]
            headers += [(k.lower().encode(), v.encode()) for k, v in outcome.headers.items()]
            await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await self._start(send)
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
