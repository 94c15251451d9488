"""Scripted fake servers for tests: plain handler functions, served by Starlette on uvicorn.

A handler takes an `HTTPRequest` (method, path, query, lower-cased headers, body bytes) and
returns an `HTTPResponse` (any status and bytes, even broken JSON) or an `SSEResponse` (each
item one `data:` event). An `SSEResponse` whose event source raises drops the connection
part-way through the body, which a client sees as a stream cut off mid-answer.

Example:
    >>> async def hello(req: HTTPRequest) -> HTTPResponse:
    ...     return HTTPResponse.json({"hello": req.path})
    >>> with run_in_thread(HTTPServer({("GET", "/hello"): hello})) as server:  # doctest: +SKIP
    ...     httpx.get(server.url + "/hello").json()
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from adaptive.sim import RunningServer, run_app_in_thread, serve_app

__all__ = [
    "HTTPRequest",
    "HTTPResponse",
    "HTTPServer",
    "Handler",
    "RunningServer",
    "SSEResponse",
    "run_in_thread",
    "serve",
]

serve = serve_app
run_in_thread = run_app_in_thread


@dataclasses.dataclass(frozen=True, slots=True)
class HTTPRequest:
    """One request as a handler sees it."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (`ValueError` when it is not JSON)."""
        return json.loads(self.body)


@dataclasses.dataclass(slots=True)
class HTTPResponse:
    """A complete response: any status, any bytes."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HTTPResponse:
        """`obj` as compact JSON."""
        body = json.dumps(obj, separators=(",", ":")).encode()
        return cls(status=status, body=body, headers=dict(headers or {}))


@dataclasses.dataclass(slots=True)
class SSEResponse:
    """A server-sent-events response: each item of `events` is sent as one `data:` event."""

    events: AsyncIterable[str]
    status: int = 200
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


Handler = Callable[[HTTPRequest], Awaitable[HTTPResponse | SSEResponse]]


class SourceFailed(Exception):
    """Raised out of the app to make uvicorn drop the connection mid-body."""


def _error(status: int, message: str) -> Response:
    body = json.dumps({"error": {"message": message, "code": status}}).encode()
    return Response(body, status, media_type="application/json")


def _event_bytes(events: AsyncIterable[str]) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        try:
            async for data in events:
                yield "".join(f"data: {line}\n" for line in data.split("\n")).encode() + b"\n"
        except Exception as exc:
            raise SourceFailed(f"the event source failed: {exc!r}") from exc
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    return gen()


class HTTPServer:
    """An ASGI app routing by exact (method, path) to handlers (404 / 405 / 500 as JSON errors)."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler]) -> None:
        by_path: dict[str, dict[str, Handler]] = {}
        for (method, path), handler in routes.items():
            by_path.setdefault(path, {})[method.upper()] = handler
        self.app = Starlette(
            routes=[Route(p, self._endpoint(hs), methods=list(hs)) for p, hs in by_path.items()],
            exception_handlers={HTTPException: self._http_error},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    @staticmethod
    async def _http_error(req: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return _error(405, f"method {req.method} not allowed on {req.url.path}")
        return _error(exc.status_code, f"no route for {req.method} {req.url.path}")

    @staticmethod
    def _endpoint(handlers: Mapping[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(req: Request) -> Response:
            request = HTTPRequest(
                method=req.method,
                path=req.url.path,
                query=req.url.query,
                headers={k.lower(): v for k, v in req.headers.items()},
                body=await req.body(),
            )
            try:
                reply = await handlers[req.method](request)
            except Exception as exc:  # a broken handler must not take the server down
                return _error(500, f"handler failed: {type(exc).__name__}: {exc}")
            if isinstance(reply, SSEResponse):
                headers = {"cache-control": "no-store", **reply.headers}
                return StreamingResponse(
                    _event_bytes(reply.events), reply.status, headers, media_type="text/event-stream"
                )
            return Response(reply.body, reply.status, dict(reply.headers), media_type=reply.content_type)

        return endpoint
