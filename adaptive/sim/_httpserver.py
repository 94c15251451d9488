"""A small HTTP/1.1 server on anyio, for loopback use: tests, benchmarks, simulated models.

It speaks just enough HTTP for JSON APIs and server-sent events: keep-alive connections,
`Content-Length` request bodies, fixed-length or chunked (SSE) responses. It is meant for
127.0.0.1, not for the open internet: there is no TLS and limits are generous.

Example:
    >>> async def hello(req: HTTPRequest) -> HTTPResponse:
    ...     return HTTPResponse.json({"hello": req.path})
    >>> app = HTTPServer({("GET", "/hello"): hello})
    >>> with run_in_thread(app) as server:  # doctest: +SKIP
    ...     httpx.get(server.url + "/hello").json()
    {'hello': '/hello'}

Inside async code use `async with serve(app) as server: ...`; the server stops, and every
connection it holds is closed, when the block exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = [
    "HTTPRequest",
    "HTTPResponse",
    "HTTPServer",
    "Handler",
    "RunningServer",
    "SSEResponse",
    "run_in_thread",
    "serve",
    "serve_forever",
]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclasses.dataclass(frozen=True, slots=True)
class HTTPRequest:
    """One parsed request.

    Attributes:
        method: Upper-case method ("GET", "POST", ...).
        path: The path without the query string.
        query: The raw query string ("" when absent).
        headers: Header names lower-cased; a repeated header keeps its last value.
        body: The request body.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """Decode the body as JSON (raises `ValueError` when it is not JSON)."""
        return json.loads(self.body)


@dataclasses.dataclass(slots=True)
class HTTPResponse:
    """A complete response with a fixed-length body."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HTTPResponse:
        """Make a response whose body is `obj` as compact JSON."""
        body = json.dumps(obj, separators=(",", ":")).encode()
        return cls(status=status, body=body, headers=dict(headers or {}))


@dataclasses.dataclass(slots=True)
class SSEResponse:
    """A server-sent-events response: each item of `events` is sent as one `data:` event.

    The body is sent chunked so the connection stays usable afterwards. If `events` raises,
    the connection is dropped without the closing chunk, which a client sees as a stream cut
    off part-way (useful to test that case).
    """

    events: AsyncIterable[str]
    status: int = 200
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


Handler = Callable[[HTTPRequest], Awaitable[HTTPResponse | SSEResponse]]
"""An async function that answers one request."""


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> HTTPResponse:
    return HTTPResponse.json({"error": {"message": message, "code": status}}, status=status)


def _head(status: int, headers: Mapping[str, str], extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n", extra]
    lines.extend(f"{k}: {v}\r\n" for k, v in headers.items())
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class HTTPServer:
    """Routes requests to handlers by exact (method, path).

    Args:
        routes: Handlers keyed by (method, path), e.g. `{("POST", "/v1/chat/completions"): h}`.

    An unknown path gets 404 and a known path with another method 405, both as JSON error
    bodies; a request that cannot be parsed gets 400 and the connection is closed; a handler
    that raises gets 500.
    """

    def __init__(self, routes: Mapping[tuple[str, str], Handler]) -> None:
        self.routes = {(m.upper(), p): h for (m, p), h in routes.items()}
        self._paths = {p for _, p in self.routes}

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one connection until the client closes it or asks to close."""
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            while True:
                try:
                    request, keep_alive = await self._read(reader)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    return  # the client went away between or during requests
                except _BadRequest as exc:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await self._write(stream, _error(exc.status, str(exc)), keep_alive=False)
                    return
                response = await self._dispatch(request)
                try:
                    if isinstance(response, SSEResponse):
                        if not await self._write_sse(stream, response):
                            return
                    else:
                        await self._write(stream, response, keep_alive=keep_alive)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                if not keep_alive:
                    return

    async def _dispatch(self, request: HTTPRequest) -> HTTPResponse | SSEResponse:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            if request.path in self._paths:
                return _error(405, f"method {request.method} not allowed on {request.path}")
            return _error(404, f"no route for {request.method} {request.path}")
        try:
            return await handler(request)
        except Exception as exc:  # a broken handler must not take the server down
            return _error(500, f"handler failed: {type(exc).__name__}: {exc}")

    async def _read(self, reader: BufferedByteReceiveStream) -> tuple[HTTPRequest, bool]:
        try:
            head = await reader.receive_until(b"\r\n\r\n", _MAX_HEAD)
        except anyio.DelimiterNotFound:
            raise _BadRequest(431, "request head too large") from None
        try:
            text = head.decode("latin-1")
            request_line, *header_lines = text.split("\r\n")
            method, target, version = request_line.split(" ")
        except ValueError:
            raise _BadRequest(400, "malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise _BadRequest(400, f"unsupported protocol {version!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, f"malformed header line {line!r}")
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise _BadRequest(501, "chunked request bodies are not supported: send Content-Length")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _BadRequest(400, f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > _MAX_BODY:
            raise _BadRequest(413, "request body too large")
        body = await reader.receive_exactly(length) if length else b""
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        path, _, query = target.partition("?")
        return HTTPRequest(method.upper(), path, query, headers, body), keep_alive

    async def _write(self, stream: anyio.abc.ByteStream, response: HTTPResponse, *, keep_alive: bool) -> None:
        extra = (
            f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
        )
        await stream.send(_head(response.status, response.headers, extra) + response.body)

    async def _write_sse(self, stream: anyio.abc.ByteStream, response: SSEResponse) -> bool:
        """Send an event stream; False when it was cut (the connection must then close)."""
        extra = "Content-Type: text/event-stream\r\nCache-Control: no-store\r\nTransfer-Encoding: chunked\r\n"
        await stream.send(_head(response.status, response.headers, extra))
        events = response.events
        try:
            async for data in events:
                event = "".join(f"data: {line}\n" for line in data.split("\n")).encode() + b"\n"
                await stream.send(b"%x\r\n%s\r\n" % (len(event), event))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise
        except Exception:
            return False  # the event source failed: drop the connection mid-body
        finally:
            # An async generator left part-way must be closed here, not by the GC later.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        await stream.send(b"0\r\n\r\n")
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class RunningServer:
    """Where a started server listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:51234"."""
        return f"http://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def serve(app: HTTPServer, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RunningServer]:
    """Serve `app` while the block runs (port 0 picks a free port).

    Example:
        >>> async with serve(app) as server:  # doctest: +SKIP
        ...     await client.get(server.url + "/hello")
    """
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    error: Exception | None = None
    async with listener, anyio.create_task_group() as tg:
        bound = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, app.handle)
        try:
            yield RunningServer(host, bound)
        except Exception as exc:
            error = exc  # re-raised below, so the caller's error is not wrapped in a group
        finally:
            tg.cancel_scope.cancel()  # stop accepting and drop open connections
    if error is not None:
        raise error


@contextlib.contextmanager
def run_in_thread(app: HTTPServer, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
    """Serve `app` from a background thread while the block runs, for synchronous code."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(app, host, port)) as server,
    ):
        yield server


def serve_forever(
    app: HTTPServer,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    on_ready: Callable[[RunningServer], None] | None = None,
) -> None:
    """Serve `app` until interrupted; `on_ready` is called once the port is bound."""

    async def main() -> None:
        async with serve(app, host, port) as server:
            if on_ready is not None:
                on_ready(server)
            await anyio.sleep_forever()

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
