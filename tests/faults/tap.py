"""The client side of the fault server's log: one sequence for both sides, and a transport tap.

Time cannot say what happened first on a loaded machine (a request can reach the server long
after the SDK sent it), so the harness orders events by `tick()`: one process-wide counter
that the SDK's side (this tap, in the driver's event loop) and the server (its own thread)
both draw from. `next()` on an `itertools.count` is atomic under the GIL, so the numbers are
unique and their order is the order in which the events happened.

`Tap.install(monkeypatch)` wraps `httpx.AsyncHTTPTransport.handle_async_request` (the SDK's
own pool transport; nothing of the SDK is changed). For every request that names a fault
trial it:

- stamps the send with `x-fault-sent: <tick>` (the server keeps it on the request's bill);
- reads the server's `x-fault-index` answer header (the request's index in the trial);
- counts the body bytes handed to the SDK, and records the tick at which the SDK closed the
  response cleanly: an answer all of whose bytes were handed over before a clean close was
  in the SDK's hands whole, usage included.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["Read", "Tap", "tick"]

_SEQ = itertools.count(1)


def tick() -> int:
    """The next number of the one sequence both sides share."""
    return next(_SEQ)


@dataclasses.dataclass(slots=True)
class Read:
    """How the SDK's side ended one answer.

    Attributes:
        handed: Body bytes handed to the SDK.
        closed: The tick at which the SDK closed the response without being cancelled
            (None: not closed, or the close was cut).
    """

    handed: int = 0
    closed: int | None = None

    def whole(self, size: int | None) -> bool:
        """Whether the SDK holds the whole answer of `size` bytes (all handed, closed cleanly)."""
        return size is not None and self.handed == size and self.closed is not None


class _TappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, read: Read) -> None:
        self._inner = inner
        self._read = read

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._read.handed += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()  # cancelled here: the SDK never had the answer in hand
        if self._read.closed is None:
            self._read.closed = tick()


class Tap:
    """What the SDK's side did with each fault-trial request: (trial, index) -> `Read`."""

    def __init__(self) -> None:
        self.reads: dict[tuple[str, int], Read] = {}

    def read(self, trial: str, index: int) -> Read:
        """How the SDK ended the answer to the trial's `index`-th request (empty: no answer seen)."""
        return self.reads.get((trial, index), Read())

    def install(self, monkeypatch: Any) -> None:
        original = httpx.AsyncHTTPTransport.handle_async_request
        reads = self.reads

        async def handle(transport: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
            trial = request.headers.get("x-fault-trial")
            if trial is None:
                return await original(transport, request)
            request.headers["x-fault-sent"] = str(tick())
            response = await original(transport, request)
            index = response.headers.get("x-fault-index")
            if index is not None:
                read = reads.setdefault((trial, int(index)), Read())
                response.stream = _TappedStream(response.stream, read)
            return response

        monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", handle)
