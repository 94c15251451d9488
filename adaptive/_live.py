"""Live events: a call's trace handed to the caller as it happens, and to the `adaptive` logger.

`client.run(..., on_event=callback)` passes every event of the call (the same `TraceEvent`s
that end up in `Result.trace`, in the same order) to `callback` while the call runs. The
callback may be sync or async. It runs in a task of its own, fed through an unbounded queue,
so a slow callback never slows the call, never changes what is sent, and never changes what
is charged. When the call ends, its remaining events are delivered for up to
`DRAIN_SECONDS`; whatever is still queued then is dropped, with a WARNING on the `adaptive`
logger saying how many. A callback that raises is logged (WARNING, with the traceback) and
keeps receiving the later events; the call goes on.

Logging follows the library convention: everything goes to `logging.getLogger("adaptive")`
(and its children), and the library configures no handler. DEBUG: each event, with its
data; INFO: one summary line per call; WARNING: overruns, estimated charges, fallbacks a
strategy took (`Result.warnings`), and callback failures. A request's "send" and "done" lines
name it by its `request_id` (`#3`). Events carry endpoint names and
figures only, never credentials.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from ._callables import is_async_callable
from ._result import TraceEvent

if TYPE_CHECKING:
    from ._result import Result

__all__ = ["DRAIN_SECONDS", "EventCallback", "deliver_events", "log_event", "log_result", "logger"]

logger = logging.getLogger("adaptive")

#: How long a call, once finished, waits for its callback to take the events still queued.
DRAIN_SECONDS = 5.0

EventCallback = Callable[[TraceEvent], None] | Callable[[TraceEvent], Awaitable[None]]
"""What `on_event` takes: a sync or async callable of one `TraceEvent`."""


def log_event(event: TraceEvent) -> None:
    """The logging subscriber every call has: DEBUG per event, WARNING for what needs a look."""
    data = event.data
    if event.kind == "overrun":
        logger.warning(
            "overrun: %s reported %s tokens / %s sample(s), reserved %s / %s; the call stops",
            data.get("endpoint"),
            data.get("reported_tokens"),
            data.get("reported_samples"),
            data.get("reserved_tokens"),
            data.get("reserved_samples"),
        )
    elif event.kind in ("done", "cancel", "error") and data.get("estimated"):
        logger.warning(
            "estimated charge: %s %s booked $%s at an upper bound (usage not reported in full)",
            data.get("endpoint"),
            event.kind,
            data.get("usd"),
        )
    if not logger.isEnabledFor(logging.DEBUG):  # formatting every event costs more than the check
        return
    if event.kind == "send":
        logger.debug(
            "t=%.4f round %d send #%s to %s (%s, n=%s, max_tokens=%s): reserved $%s, %s tokens",
            event.t,
            event.round,
            data.get("request_id"),
            data.get("endpoint"),
            data.get("purpose"),
            data.get("n"),
            data.get("max_tokens"),
            data.get("usd"),
            data.get("tokens"),
        )
    elif event.kind == "done":
        logger.debug(
            "t=%.4f round %d done #%s from %s: answers %s, finish %s, %s+%s tokens, booked $%s%s",
            event.t,
            event.round,
            data.get("request_id"),
            data.get("endpoint"),
            data.get("answers"),
            data.get("finish_reasons"),
            data.get("input_tokens"),
            data.get("output_tokens"),
            data.get("usd"),
            " (estimated)" if data.get("estimated") else "",
        )
    else:
        logger.debug("t=%.4f round %d %s %s", event.t, event.round, event.kind, dict(data))


def log_result(result: Result) -> None:
    """INFO: one line per finished call; WARNING: each fallback its strategy took."""
    for warning in result.warnings:
        logger.warning("fallback: %s", warning)
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "%s: answer %r after %d sample(s), %d round(s), $%.6f, %.3f s; stopped: %s",
            result.strategy,
            result.answer,
            len(result.samples),
            result.rounds,
            result.cost_usd,
            result.elapsed_s,
            result.stop_reason,
        )


class deliver_events:
    """An async context: a subscriber that queues events, and a task that feeds `callback`.

    Args:
        callback: The caller's `on_event`.
        drain_seconds: How long to wait, on exit, for the events still queued (default:
            `DRAIN_SECONDS`).
    """

    def __init__(self, callback: EventCallback, drain_seconds: float | None = None) -> None:
        self.callback = callback
        self.drain_seconds = DRAIN_SECONDS if drain_seconds is None else drain_seconds
        self._send, self._receive = anyio.create_memory_object_stream[TraceEvent](math.inf)
        self._drained = anyio.Event()
        self._group = anyio.create_task_group()
        self.dropped = 0

    def subscriber(self, event: TraceEvent) -> None:
        """Queue `event` for the callback (never blocks: the queue is unbounded)."""
        self._send.send_nowait(event)

    async def _feed(self) -> None:
        is_async = is_async_callable(self.callback)
        try:
            async with self._receive:
                async for event in self._receive:
                    try:
                        out = self.callback(event)
                        if is_async or inspect.isawaitable(out):
                            await out  # type: ignore[misc]
                    except Exception:  # the caller's bug must not end the call: logged, go on
                        logger.warning("on_event callback raised on a %r event", event.kind, exc_info=True)
        finally:
            self._drained.set()

    async def __aenter__(self) -> deliver_events:
        await self._group.__aenter__()
        self._group.start_soon(self._feed)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._send.close()  # the feed ends once it has taken what is queued
        try:
            with anyio.move_on_after(self.drain_seconds):
                await self._drained.wait()
            if not self._drained.is_set():
                self.dropped = self._receive.statistics().current_buffer_used
                logger.warning(
                    "on_event callback still busy %.1f s after the call ended: %d event(s) dropped",
                    self.drain_seconds,
                    self.dropped,
                )
        finally:
            if not self._drained.is_set():  # nothing is left running after the call returns
                self._group.cancel_scope.cancel()
            await self._group.__aexit__(None, None, None)
