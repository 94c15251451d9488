"""The iterator form of a call: `async with client.stream(prompt, ...) as call: async for event in call`.

The call runs in a task group owned by the `async with` block (never by an async generator,
which cannot own a task group across `yield` under anyio's structured concurrency). Its events
reach the loop through an unbounded queue: exactly `Result.trace`, in order, the loop ending
when the call ends; `call.result` is then the call's `Result`, the same one `client.run` gives.

Breaking out of the loop early stops watching, not the call: leaving the block waits for the
call to finish, so what is sent, charged and answered is exactly what `run` would do (bound
the wait with the budget's `seconds`). An exception raised in the block (or a cancellation of
the caller) cancels the call instead, as a deadline would: requests in flight are cancelled
and charged, and the exception propagates; nothing is left running after the block.

A call that fails raises its error (one typed error, with `error.receipt` when money was
spent) at the end of the loop, or on leaving the block when the loop was left early.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from anyio.from_thread import BlockingPortal

from ._events import Subscriber
from ._exceptions import ConfigError
from ._result import Result, TraceEvent

# Returned by `Client.stream`; not a top-level name (adaptive.__all__ is curated and capped).
__all__ = ["LiveCall", "SyncLiveCall"]

Start = Callable[[Subscriber], Awaitable[Result]]


class LiveCall:
    """One call in progress: an async context manager, and an async iterator of its events.

    Made by `Client.stream` (its arguments were checked there, before anything is sent).

    Example:
        >>> async with client.stream("2 + 2?", budget=Budget(usd=0.01)) as call:  # doctest: +SKIP
        ...     async for event in call:
        ...         print(event.kind, event.data)
        >>> call.result.answer                                                    # doctest: +SKIP
    """

    def __init__(self, start: Start) -> None:
        self._start = start
        self._send, self._receive = anyio.create_memory_object_stream[TraceEvent](math.inf)
        self._group: TaskGroup | None = None
        self._result: Result | None = None
        self._error: Exception | None = None
        self._raised = False  # the error already left through the loop
        self._state = "new"  # new -> running -> closed

    @property
    def result(self) -> Result:
        """The call's result, once it has finished (after the loop ends, or after the block).

        Raises:
            ConfigError: The call has not finished yet, or was cancelled (the block raised).
            AdaptiveError: The call failed: its own error, with `error.receipt`.
        """
        if self._result is not None:
            return self._result
        if self._error is not None:
            raise self._error
        if self._state == "closed":
            raise ConfigError(
                "this call was cancelled (its async with block raised or was cancelled): it has no result"
            )
        raise ConfigError(
            "the call has not finished: read call.result after the `async for` loop ends "
            "or after the `async with client.stream(...)` block"
        )

    async def _run(self) -> None:
        try:
            with self._send:  # closed when the call ends: the loop then ends
                self._result = await self._start(self._send.send_nowait)
        except Exception as exc:  # delivered through the loop or the block, never as a group
            self._error = exc

    async def __aenter__(self) -> LiveCall:
        if self._state != "new":
            raise ConfigError("a call from client.stream(...) runs once: make another for another call")
        self._state = "running"
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._run)
        return self

    def __aiter__(self) -> LiveCall:
        return self

    async def __anext__(self) -> TraceEvent:
        if self._state != "running":
            raise ConfigError("iterate over a call inside its `async with client.stream(...) as call:` block")
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            if self._error is not None and not self._raised:
                self._raised = True
                raise self._error from None
            raise StopAsyncIteration from None

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group = self._group
        assert group is not None
        body_failed = exc is not None and exc is not self._error
        if body_failed:  # the caller's own exception or cancellation: stop the call
            group.cancel_scope.cancel()
        try:
            await group.__aexit__(None, None, None)
        finally:
            self._state = "closed"
            self._receive.close()
        if not body_failed and self._error is not None and not self._raised:
            self._raised = True
            raise self._error


class SyncLiveCall:
    """The blocking form of `LiveCall`, made by `SyncClient.stream`.

    `with client.stream(prompt, ...) as call: for event in call: ...`, then `call.result`;
    the same rules as `LiveCall` (the call runs on the `SyncClient`'s event loop).
    """

    def __init__(self, portal: BlockingPortal, call: LiveCall) -> None:
        self._portal = portal
        self._call = call
        self._cm: AbstractContextManager[LiveCall] | None = None

    @property
    def result(self) -> Result:
        """As `LiveCall.result`."""
        return self._call.result

    def __enter__(self) -> SyncLiveCall:
        cm = self._portal.wrap_async_context_manager(self._call)
        cm.__enter__()
        self._cm = cm
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        cm, self._cm = self._cm, None
        if cm is None:
            return None
        return cm.__exit__(et, exc, tb)

    def __iter__(self) -> Iterator[TraceEvent]:
        return self

    def __next__(self) -> TraceEvent:
        try:
            return self._portal.call(self._call.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None
