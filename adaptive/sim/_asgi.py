"""Run an ASGI app (Starlette) on uvicorn at 127.0.0.1, with the limits a loopback server needs.

This is the one way adaptive starts an HTTP server: the simulated model server, the test fakes
and the benchmarks all go through it. It needs the server extra
(`pip install 'adaptive-ttc[server]'`: starlette and uvicorn).

What the limits buy (`ServerLimits`):

- a request head must arrive whole within `head_timeout` seconds of the connection opening (or
  of the previous response), so idle or trickling connections (slowloris) are closed; uvicorn
  itself only times out a connection that has already answered a request;
- a request body must arrive within `body_timeout` (else 408) and be at most `max_body_bytes`
  (else 413, before the app sees it);
- an idle keep-alive connection closes after `keep_alive` seconds;
- at most `max_connections` connections and requests at once (more get 503), so running out
  of file descriptors degrades into refusals instead of a crash;
- stopping waits at most `graceful_shutdown` seconds for answers in flight.

Example:
    >>> from starlette.applications import Starlette
    >>> with run_app_in_thread(Starlette()) as server:  # doctest: +SKIP
    ...     httpx.get(server.url + "/missing").status_code
    404

Inside async code (asyncio) use `async with serve_app(app) as server: ...`; the server stops,
and every connection it holds is closed, when the block exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import anyio
import anyio.from_thread
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .._exceptions import ConfigError

__all__ = ["RunningServer", "ServerLimits", "run_app_in_thread", "serve_app", "serve_app_forever"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_START_TIMEOUT = 10.0
# How long stopping may take beyond the graceful period before uvicorn is told to force-exit.
_STOP_MARGIN = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class ServerLimits:
    """Timeouts and limits of a served app (see the module doc for what each one stops).

    Attributes:
        head_timeout: Seconds for a whole request head to arrive on a waiting connection.
        body_timeout: Seconds for a whole request body to arrive (408 after).
        keep_alive: Seconds an idle keep-alive connection stays open after a response.
        max_body_bytes: Largest request body accepted (413 above).
        max_connections: Connections (and requests) served at once (503 above).
        graceful_shutdown: Seconds stopping waits for answers in flight before cancelling them.

    Raises:
        ConfigError: A time is not positive and finite, or a limit is below 1.
    """

    head_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024
    max_connections: int = 1000
    graceful_shutdown: float = 2.0

    def __post_init__(self) -> None:
        for name in ("head_timeout", "body_timeout", "keep_alive", "graceful_shutdown"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ConfigError(f"ServerLimits.{name} must be a positive number of seconds, got {value!r}")
        for name in ("max_body_bytes", "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServerLimits.{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class RunningServer:
    """Where a started server listens.

    Attributes:
        host: The interface it is bound to.
        port: The bound port (the real one when 0 was asked for).
    """

    host: str
    port: int
    _state: Any = dataclasses.field(default=None, repr=False, compare=False)

    def connections(self) -> list[tuple[str, int]]:
        """(host, port) of each client connection the server holds open now.

        Callable from any thread (e.g. a test checking that clients closed their connections).
        """
        if self._state is None:
            return []
        # One C-level copy of the set, so a connection opening meanwhile cannot break it.
        return [p.client for p in list(self._state.connections) if p.client]

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:51234"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


# -- the read limits -----------------------------------------------------------------------


def _protocol(head_timeout: float) -> type[asyncio.Protocol]:
    """The h11 protocol of uvicorn, with a deadline for every request head."""

    class HeadTimeoutH11(H11Protocol):
        # uvicorn times out a connection only while it is idle after a response (keep-alive),
        # and stops that timer at the first byte of the next request: a connection that never
        # completes a request head would otherwise be held forever. So the head has a deadline
        # from the connection's start, or from the first byte of each later request.
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and self._waiting_for_head():
                self._arm_head_timer()
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._cancel_head_timer()  # idle again: uvicorn's keep-alive timer takes over

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(head_timeout, self._head_expired)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if self._waiting_for_head() and not self.transport.is_closing():
                self.transport.close()  # no whole request head in time: drop the connection

    return HeadTimeoutH11


async def _refuse(send: Send, status: int, message: str, kind: str) -> None:
    # The error shape is OpenAI's (`error.message`), with Anthropic's top-level `type` too,
    # so either kind of client reads the reason.
    body = json.dumps(
        {"type": "error", "error": {"message": message, "type": kind, "param": None, "code": status}}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, limit: int) -> None:
    message = f"the request body is over {limit} bytes: send a smaller one"
    await _refuse(send, 413, message, "request_too_large")


class _BodyLimits:
    """ASGI middleware: reads the whole body first, within a size limit and a deadline.

    The app then gets the buffered body, so a slow or oversized upload never reaches it.
    """

    def __init__(self, app: ASGIApp, limits: ServerLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(send, limit)
                return
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left before sending its request
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        await _too_large(send, limit)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            seconds = self.limits.body_timeout
            await _refuse(send, 408, f"the request body did not arrive within {seconds}s", "request_timeout")
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # afterwards: the disconnect, for streaming responses

        await self.app(scope, replay, send)


# -- starting and stopping -----------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside a caller's event loop: it leaves signal handling to the caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def serve_app(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, limits: ServerLimits | None = None
) -> AsyncIterator[RunningServer]:
    """Serve `app` on uvicorn while the block runs (asyncio only; port 0 picks a free port).

    Args:
        app: An ASGI app, e.g. a `starlette.applications.Starlette`.
        host: Interface to bind.
        port: TCP port; 0 picks a free one (reported as `RunningServer.port`).
        limits: Timeouts and limits (default `ServerLimits()`).

    Raises:
        OSError: The port cannot be bound (busy, or the host is not this machine's).
        RuntimeError: uvicorn did not start.
    """
    limits = limits if limits is not None else ServerLimits()
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        _BodyLimits(app, limits),
        http=_protocol(limits.head_timeout),
        lifespan="off",
        log_config=None,  # the application's logging setup stays as it is
        access_log=False,
        timeout_keep_alive=max(1, math.ceil(limits.keep_alive)),
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=max(1, math.ceil(limits.graceful_shutdown)),
    )
    server = _EmbeddedServer(config)
    done = anyio.Event()
    failure: list[BaseException] = []

    # uvicorn runs shielded from the caller's cancellation: a cancelled block still stops it
    # through its own shutdown (below), which closes its listener and connections; cancelled
    # part-way, it would leave them registered with the event loop.
    shield = anyio.CancelScope(shield=True)

    async def run() -> None:
        try:
            with shield:
                await server.serve([sock])
        except (Exception, SystemExit) as exc:  # uvicorn exits on a startup failure
            failure.append(exc)
        finally:
            done.set()

    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            try:
                with anyio.fail_after(_START_TIMEOUT):
                    while not server.started:
                        if done.is_set():
                            why = failure[0] if failure else "it exited"
                            raise RuntimeError(f"uvicorn did not start: {why}")
                        await anyio.sleep(0.002)
                yield RunningServer(host, bound, server.server_state)
            except BaseException as exc:
                error = exc  # re-raised below, so the caller's error is not wrapped in a group
            finally:
                # Stop accepting, close idle connections, let answers in flight finish (bounded).
                server.should_exit = True
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(limits.graceful_shutdown + _STOP_MARGIN):
                        await done.wait()
                    if not done.is_set():
                        server.force_exit = True
                        with anyio.move_on_after(_STOP_MARGIN):
                            await done.wait()
                    if not done.is_set():  # uvicorn is stuck: cancel it and close what it holds
                        shield.cancel()
                        for listener in server.servers:
                            listener.close()
                        for connection in list(server.server_state.connections):
                            connection.shutdown()
                tg.cancel_scope.cancel()
    finally:
        sock.close()
    if error is not None:
        raise error
    if failure:
        raise RuntimeError(f"the server failed: {failure[0]!r}") from failure[0]


@contextlib.contextmanager
def run_app_in_thread(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, *, limits: ServerLimits | None = None
) -> Iterator[RunningServer]:
    """Serve `app` from a background thread while the block runs, for synchronous code.

    The thread (an event loop of its own) is stopped and joined when the block exits.
    """
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve_app(app, host, port, limits=limits)) as server,
    ):
        yield server


def serve_app_forever(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: ServerLimits | None = None,
    on_ready: Callable[[RunningServer], None] | None = None,
) -> None:
    """Serve `app` until Ctrl-C or SIGTERM; `on_ready` is called once the port is bound.

    Either signal stops the server gracefully (answers in flight finish, bounded by
    `limits.graceful_shutdown`) and the function returns.
    """

    async def main() -> None:
        async with serve_app(app, host, port, limits=limits) as server:
            if on_ready is not None:
                on_ready(server)
            if threading.current_thread() is not threading.main_thread():
                await anyio.sleep_forever()  # signals reach the main thread only
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
