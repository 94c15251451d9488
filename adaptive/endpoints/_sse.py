"""Reading a server-sent-events answer into `StreamEvent`s, for every provider.

`StreamEvents` owns the connection of one streamed answer: it reads the events (httpx-sse),
hands each one's data to the provider's `StreamDecoder` (the wire format), turns a cut
connection, an error event or a malformed event into a `StreamError` that carries what
arrived, and keeps the task's `UsageMeter` up to date after every event, so a request
cancelled part-way is charged the usage counted so far.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

import anyio
import httpx
from httpx_sse import EventSource, SSEError

from .._exceptions import AdaptiveError, ResponseError, StreamError
from .._models import Request, Response, Usage
from ._base import current_meter, detach
from ._checks import WireError

__all__ = ["ServerSaid", "StreamDecoder", "StreamEvent", "StreamEvents"]

_DRAIN_SECONDS = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a streamed answer.

    Attributes:
        kind: "delta" (new text for choice `index`) or "done" (the last event).
        index: Which choice the text belongs to.
        text: The new text of a "delta" ("" for "done").
        response: The assembled `Response`, on the "done" event only.
    """

    kind: Literal["delta", "done"]
    index: int = 0
    text: str = ""
    response: Response | None = None


class ServerSaid(Exception):
    """An error event inside a stream (raised by a decoder; its text is the server's)."""


class StreamDecoder(Protocol):
    """A provider's stream format: what each event's data means.

    `feed` raises `ServerSaid` for an error event, `WireError` for an event that fails the
    answer checks (`_checks`: usage, choice indices), and any of AttributeError, TypeError,
    KeyError or ValueError for a malformed one. `build(complete=True)` raises `WireError`
    when the whole answer fails them (such as too few choices).

    Attributes:
        end_marker: What ends a whole answer in this format (named in errors).
    """

    end_marker: str

    def feed(self, data: str, deltas: list[tuple[int, str]]) -> bool:
        """Read one event's data, appending (choice, text) deltas; True when it ends the answer."""
        ...

    def complete(self) -> bool:
        """Whether what arrived is a whole answer even though the end marker never came."""
        ...

    def usage(self) -> Usage:
        """The reported usage once the server sent it, else the usage counted so far."""
        ...

    def reported(self) -> bool:
        """Whether `usage()` is what the server reported (not counted by us)."""
        ...

    def prompt_reported(self) -> bool:
        """Whether the prompt count in `usage()` is the server's (not the byte bound)."""
        ...

    def started(self) -> int:
        """How many completions have received any output so far."""
        ...

    def build(self, *, complete: bool) -> Response:
        """The `Response` so far (`complete=False`: unfinished ones say "cancelled")."""
        ...


class StreamEvents:
    """The events of one streamed answer (an async iterator of `StreamEvent`).

    Made by an HTTP endpoint's `stream()`; `partial()` gives the `Response` assembled so far and
    `response` the complete one once the "done" event has been seen.
    """

    def __init__(
        self,
        decoder: StreamDecoder,
        request: Request,
        response: httpx.Response,
        *,
        name: str,
        scrub: Callable[[str], str],
        release: Callable[[], None],
    ) -> None:
        self._decoder = decoder
        self._request = request
        self._http = response
        self._name = name
        self._scrub = scrub
        self._release: Callable[[], None] | None = release
        self._sse = EventSource(response).aiter_sse()
        self._pending: deque[StreamEvent] = deque()
        self._deltas: list[tuple[int, str]] = []
        self._events = 0
        self._state: Literal["open", "done", "closed"] = "open"
        self.response: Response | None = None
        # Usage this stream has added to the task's meter (shared by fanned-out requests).
        self._meter = current_meter()
        self._metered = Usage()
        self._metered_samples = 0
        self._metered_prompt_reported = False
        if self._meter is not None:
            self._meter.streams += 1
        self._publish()  # the server accepted the prompt: count it from now on

    def __aiter__(self) -> StreamEvents:
        return self

    async def __anext__(self) -> StreamEvent:
        try:
            while not self._pending:
                if self._state != "open":
                    if self._state == "done":
                        await self._drain()
                    raise StopAsyncIteration
                await self._pull()
        except AdaptiveError as exc:
            detach(exc)  # no chain back to the httpx request and its credentials
            raise
        return self._pending.popleft()

    def usage(self) -> Usage:
        """Return the reported usage if the server sent it, else the usage counted so far."""
        return self._decoder.usage()

    def partial(self) -> Response:
        """Return the `Response` assembled so far (unfinished choices: finish_reason "cancelled")."""
        return self._decoder.build(complete=False)

    # -- metering -------------------------------------------------------------------------
    def _publish(self) -> None:
        meter = self._meter
        if meter is None:
            return
        new, old = self._decoder.usage(), self._metered
        base = meter.usage or Usage()
        meter.usage = Usage(
            prompt_tokens=base.prompt_tokens + new.prompt_tokens - old.prompt_tokens,
            completion_tokens=base.completion_tokens + new.completion_tokens - old.completion_tokens,
            reasoning_tokens=base.reasoning_tokens + new.reasoning_tokens - old.reasoning_tokens,
            cached_prompt_tokens=base.cached_prompt_tokens
            + new.cached_prompt_tokens
            - old.cached_prompt_tokens,
            cache_write_tokens=base.cache_write_tokens + new.cache_write_tokens - old.cache_write_tokens,
            cache_write_1h_tokens=base.cache_write_1h_tokens
            + new.cache_write_1h_tokens
            - old.cache_write_1h_tokens,
        )
        started = self._decoder.started()
        meter.samples += started - self._metered_samples
        self._metered, self._metered_samples = new, started
        if not self._metered_prompt_reported and self._decoder.prompt_reported():
            self._metered_prompt_reported = True
            meter.prompts_reported += 1

    # -- reading --------------------------------------------------------------------------
    def _cut(self, why: str) -> StreamError:
        self._state = "closed"
        return StreamError(
            f"{self._name}: the stream was cut off after {self._events} events ({why}); "
            "the partial answer and its counted usage are in .partial",
            endpoint=self._name,
            partial=self.partial(),
        )

    def _invalid(self, exc: WireError) -> ResponseError:
        self._state = "closed"
        return ResponseError(
            f"{self._name}: the streamed answer fails validation after {self._events} events: "
            f"{self._scrub(str(exc))}",
            endpoint=self._name,
            usage=exc.usage,
            choices=exc.choices,
        )

    def _finish(self) -> None:
        try:
            response = self._decoder.build(complete=True)
        except WireError as exc:
            raise self._invalid(exc) from None
        self._state = "done"
        self.response = response
        self._publish()
        self._pending.append(StreamEvent("done", response=self.response))

    async def _pull(self) -> None:
        try:
            event = await self._sse.__anext__()
        except StopAsyncIteration:
            if self._decoder.complete():
                self._finish()
                return
            raise self._cut(f"it ended without {self._decoder.end_marker}") from None
        except SSEError as exc:  # an httpx.TransportError subclass: caught first
            self._state = "closed"
            raise ResponseError(f"{self._name}: not an event stream ({exc})", endpoint=self._name) from None
        except httpx.HTTPError as exc:
            raise self._cut(f"{type(exc).__name__}: {self._scrub(str(exc))}") from None
        except Exception as exc:  # anything else the connection raised is still a cut stream
            raise self._cut(f"unexpected {type(exc).__name__}: {self._scrub(str(exc))[:300]}") from None
        data = event.data
        if not data:
            return  # keep-alive comments and empty events carry nothing
        self._events += 1
        deltas = self._deltas
        try:
            ended = self._decoder.feed(data, deltas)
        except ServerSaid as exc:
            raise self._cut(f"the server sent an error: {self._scrub(str(exc))}") from None
        except WireError as exc:
            raise self._invalid(exc) from None
        except Exception as exc:  # KeyError, TypeError ... on a malformed event: never untyped
            raise self._cut(f"malformed event: {type(exc).__name__}: {self._scrub(str(exc))[:300]}") from None
        finally:
            self._publish()
        for index, text in deltas:
            self._pending.append(StreamEvent("delta", index, text))
        deltas.clear()
        if ended:
            self._finish()

    async def _drain(self) -> None:
        # Read what follows the end marker (normally just the end of the body) so the
        # connection can go back to the pool; a server that keeps it open is not waited for.
        self._state = "closed"
        with anyio.move_on_after(_DRAIN_SECONDS), contextlib.suppress(httpx.HTTPError, SSEError):
            async for _ in self._sse:
                pass

    async def aclose(self) -> None:
        """Close the connection (the server stops generating); idempotent."""
        if self._state == "open":
            self._state = "closed"
        with anyio.CancelScope(shield=True):
            try:
                await self._sse.aclose()
                await self._http.aclose()
            finally:
                release, self._release = self._release, None
                if release is not None:
                    release()
