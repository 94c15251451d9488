"""The Starlette app: routes, authentication, limits and the one log line per request.

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._result import Result
from ._auth import authenticate, bearer_key
from ._chat import Meter, Outcome, completion_body, execute, format_cost, new_id, preflight
from ._config import ServerConfig
from ._errors import APIError, from_exception
from ._request import ADAPTIVE_PREFIX, ChatCall, parse_chat
from ._stream import ChatStream
from ._tenants import TenantAccounts
from ._tracing import ServerSpans, annotate
from ._upstream import Upstream

__all__ = ["ProxyState", "create_app"]

logger = logging.getLogger("adaptive.server")

# How long shutdown waits for cancelled calls to book their charges and log their line.
_UNWIND_SECONDS = 5.0


class ProxyState:
    """What the routes share: config, upstream, tenants' accounts, and the calls in flight."""

    def __init__(self, config: ServerConfig, accounts: TenantAccounts | None = None) -> None:
        self.config = config
        # Accounts made here from the config (a Redis client) are closed with the app.
        self.owns_accounts = accounts is None
        self.accounts: TenantAccounts = accounts if accounts is not None else _accounts(config)
        self.upstream = Upstream(config)
        self.in_flight = 0
        self._idle: anyio.Event | None = None

    def enter(self) -> None:
        """A call starts."""
        self.in_flight += 1

    def leave(self) -> None:
        """A call ended (answered, failed, or cancelled and settled)."""
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def idle(self) -> None:
        """Wait until no call is in flight."""
        if self.in_flight:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()


def _log(tenant: str, call: ChatCall | None, model: str, outcome: Outcome) -> None:
    annotate(tenant, outcome.status, outcome.cost_usd, outcome.samples, outcome.stop)
    logger.info(
        "chat tenant=%s model=%s strategy=%s status=%d cost_usd=%.9f samples=%d stop=%s%s",
        tenant,
        model,
        call.strategy_name if call is not None else "-",
        outcome.status,
        outcome.cost_usd,
        outcome.samples,
        outcome.stop or "-",
        f" note={outcome.note}" if outcome.note else "",
    )


async def _body(request: Request, limit: int) -> Any:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise APIError(
            413,
            f"the request body is {length} bytes; this server takes at most {limit}",
            code="body_too_large",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(
                413, f"the request body is over {limit} bytes, this server's limit", code="body_too_large"
            )
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise APIError(400, "the body is not valid JSON", code="invalid_json") from None


def _headers(result: Result) -> dict[str, str]:
    return {
        "x-adaptive-cost-usd": format_cost(result.cost_usd),
        "x-adaptive-samples": str(result.generated),
        "x-adaptive-stop-reason": result.stop_reason,
    }


def _accounts(config: ServerConfig) -> TenantAccounts:
    """The tenants' accounts the config asks for: in memory, or on a shared Redis."""
    if config.ledger.redis_url is None:
        return TenantAccounts()
    from ..ledger._redis import RedisBackend

    backend = RedisBackend(
        config.ledger.redis_url, prefix=config.ledger.prefix, lease_seconds=config.ledger.lease_seconds
    )
    return TenantAccounts(backend)


def create_app(config: ServerConfig, *, accounts: TenantAccounts | None = None) -> Starlette:
    """The proxy as an ASGI app (serve it with uvicorn; `adaptive serve` does).

    Args:
        config: The server's configuration.
        accounts: Where tenants' totals live (default: from `config.ledger`, this process's
            memory unless a Redis URL is given). One passed in is not closed by the app.
    """
    state = ProxyState(config, accounts)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ping = getattr(state.accounts.backend, "ping", None)
        if config.tenants and ping is not None:
            await ping()  # an unreachable Redis stops the server at startup, saying so
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                # uvicorn cancels the calls still running past the grace, then shuts the app
                # down without waiting for them: let them settle their charges and log first.
                with anyio.move_on_after(_UNWIND_SECONDS):
                    await state.idle()
                await state.upstream.aclose()
                if state.owns_accounts:
                    await state.accounts.aclose()

    async def chat(request: Request) -> Response:
        tenant = "-"
        call: ChatCall | None = None
        model = "-"
        outcome = Outcome()
        try:
            key = bearer_key(request.headers)
            tenant = authenticate(key, config.tenants)
            body = await _body(request, config.limits.max_body_bytes)
            if isinstance(body, dict) and isinstance(body.get("model"), str):
                model = body["model"]
            call = parse_chat(body, config)
        except APIError as exc:
            outcome.status = exc.status
            _log(tenant, call, model, outcome)
            return exc.response()
        meter = Meter()
        cid, created = new_id()
        client_key = key if config.upstream.pass_through_key else None
        the_call = call

        async def run() -> Result:
            return await execute(
                config=config,
                upstream=state.upstream,
                accounts=state.accounts,
                tenant=tenant,
                call=the_call,
                client_key=client_key,
                meter=meter,
                outcome=outcome,
            )

        if call.stream:
            try:
                await preflight(
                    config=config,
                    upstream=state.upstream,
                    accounts=state.accounts,
                    tenant=tenant,
                    call=call,
                    client_key=client_key,
                )
            except APIError as exc:
                outcome.status = exc.status
                _log(tenant, call, model, outcome)
                return exc.response()
        if state.in_flight >= config.limits.max_concurrency:  # checked and entered with no await between
            busy = APIError(
                429,
                f"the server is at its limit of {config.limits.max_concurrency} calls in flight: "
                "retry shortly",
                type="rate_limit_error",
                code="server_busy",
                headers={"Retry-After": "1"},
            )
            outcome.status = busy.status
            _log(tenant, call, model, outcome)
            return busy.response()
        state.enter()
        if call.stream:

            def on_end(end: Result | APIError | None) -> None:
                state.leave()
                outcome.status = 200 if isinstance(end, Result) else end.status if end is not None else 499
                if end is None:
                    outcome.note = "client disconnected; in-flight requests cancelled and charged"
                _log(tenant, call, model, outcome)

            stream = ChatStream(call, meter, run, cid, created, on_end)
            return _StreamResponse(stream)
        return await _answer(request, run, call, cid, created, state, tenant, model, outcome)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": await _model_list(state)})

    async def model(request: Request) -> Response:
        wanted = request.path_params["model_id"]
        for m in await _model_list(state):
            if m["id"] == wanted:
                return JSONResponse(m)
        return APIError(
            404, f"no model {wanted!r}: GET /v1/models lists them", code="model_not_found", param="model"
        ).response()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "in_flight": state.in_flight})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", model, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
        # Outermost: the server span is current while the call (and its spans) runs.
        middleware=[Middleware(ServerSpans)],
    )
    app.state.proxy = state
    return app


class _StreamResponse(Response):
    """Hands the ASGI call to `ChatStream`."""

    def __init__(self, stream: ChatStream) -> None:
        super().__init__()
        self._stream = stream

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._stream(scope, receive, send)


async def _answer(
    request: Request,
    run: Any,
    call: ChatCall,
    cid: str,
    created: int,
    state: ProxyState,
    tenant: str,
    model: str,
    outcome: Outcome,
) -> Response:
    """Run a non-streamed call while watching for the client to go away."""
    box: list[Result | APIError] = []
    disconnected = False

    async def work(scope: anyio.CancelScope) -> None:
        try:
            box.append(await run())
        except APIError as exc:
            box.append(exc)
        except Exception as exc:  # a bug: still one OpenAI-style answer, logged with its trace
            logger.exception("chat call failed")
            box.append(from_exception(exc))
        scope.cancel()

    async def watch(scope: anyio.CancelScope) -> None:
        nonlocal disconnected
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                disconnected = True
                scope.cancel()
                return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, tg.cancel_scope)
            tg.start_soon(work, tg.cancel_scope)
    except BaseException:
        outcome.status = 499
        outcome.note = outcome.note or "cancelled (shutdown); in-flight requests charged"
        _log(tenant, call, model, outcome)
        raise
    finally:
        state.leave()
    if disconnected and not box:
        outcome.status = 499
        outcome.note = "client disconnected; in-flight requests cancelled and charged"
        _log(tenant, call, model, outcome)
        return Response(status_code=499)
    end = box[0]
    if isinstance(end, APIError):
        outcome.status = end.status
        _log(tenant, call, model, outcome)
        return end.response()
    outcome.status = 200
    _log(tenant, call, model, outcome)
    return JSONResponse(completion_body(call, end, cid, created), headers=_headers(end))


async def _model_list(state: ProxyState) -> list[dict[str, Any]]:
    """The aliases, then `adaptive/<m>` and `<m>` for every upstream model."""
    created = int(time.time())
    out: list[dict[str, Any]] = []
    for name, alias in state.config.aliases.items():
        out.append(
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "adaptive",
                "adaptive": {"model": alias.model, "strategy": alias.strategy},
            }
        )
    for m in await state.upstream.models():
        mid = m["id"]
        out.append(
            {
                "id": ADAPTIVE_PREFIX + mid,
                "object": "model",
                "created": created,
                "owned_by": "adaptive",
                "adaptive": {"model": mid, "strategy": state.config.default_strategy},
            }
        )
        entry = {k: v for k, v in m.items() if k in ("id", "object", "created", "owned_by", "pricing")}
        entry.setdefault("object", "model")
        entry.setdefault("created", created)
        entry.setdefault("owned_by", "upstream")
        out.append(entry)
    return out
