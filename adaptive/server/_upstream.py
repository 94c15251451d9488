"""The upstream: one SDK endpoint and `Client` per upstream model, prices, the model list.

Each upstream model gets one `OpenAIChat` (or `Anthropic`) endpoint and one `Client`, kept for
the server's lifetime, so connections are pooled and the controller's prior keeps learning
across requests. Prices come from genai-prices, else the config's `[prices]` table, else the
upstream's own `/v1/models` entry (`{"pricing": {"input_per_mtok", "output_per_mtok"}}`, as
`adaptive serve-sim` publishes); a model with none of them has no price, and a dollar budget
on it is refused (400 naming the model).
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import httpx

from .._client import Client
from .._controller import Controller
from .._prices import Price
from .._result import Result, TraceEvent
from ..endpoints import Anthropic, OpenAIChat, RetryPolicy
from ..endpoints._base import Endpoint
from ._config import ServerConfig

__all__ = ["Upstream", "metered"]

logger = logging.getLogger("adaptive.server")

#: The current request's event sink (set around each `Client.run` of the proxy).
_METER: contextvars.ContextVar[Callable[[TraceEvent], None] | None] = contextvars.ContextVar(
    "adaptive_server_meter", default=None
)
_MODELS_TTL = 60.0


class _MeteredController(Controller):
    """A controller that also hands every event, synchronously, to the request's meter.

    `Client.run(on_event=...)` delivers events from a task of its own, which a cancelled call
    (a client that disconnected, a shutdown) cancels with it; the proxy must still see the
    "cancel" events of that call to charge the tenant, so it subscribes where they are emitted.
    """

    async def run(self, *args: Any, subscribers: Sequence[Any] = (), **kwargs: Any) -> Result:
        meter = _METER.get()
        subs = (*subscribers, meter) if meter is not None else tuple(subscribers)
        return await super().run(*args, subscribers=subs, **kwargs)


class metered:  # lower case: used as a context manager, like contextlib's
    """Route the events of the `Client.run` calls made inside the block to `sink` (sync)."""

    def __init__(self, sink: Callable[[TraceEvent], None]) -> None:
        self._sink = sink
        self._token: contextvars.Token[Callable[[TraceEvent], None] | None] | None = None

    def __enter__(self) -> metered:
        self._token = _METER.set(self._sink)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _METER.reset(self._token)


def _pricing(entry: Any) -> Price | None:
    p = entry.get("pricing") if isinstance(entry, dict) else None
    if not isinstance(p, dict):
        return None
    i, o = p.get("input_per_mtok"), p.get("output_per_mtok")
    rates = [float(v) for v in (i, o) if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(rates) != 2 or not all(math.isfinite(v) and v >= 0 for v in rates):
        return None  # a malformed entry is no price (the model is then priced from nowhere)
    return Price(input=rates[0], output=rates[1])


class Upstream:
    """The endpoints, clients and model list of one upstream API.

    Args:
        config: The server's config (its `upstream` and `prices` tables are read).
        http_client: The HTTP client for `/models` look-ups (made and closed here if None).
    """

    def __init__(self, config: ServerConfig, http_client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        up = config.upstream
        self.url = up.url.rstrip("/")
        # Anthropic's base URL is the root; OpenAI-compatible ones end in /v1.
        self._models_url = self.url + ("/v1/models" if up.kind == "anthropic" else "/models")
        env = up.api_key_env or ("ANTHROPIC_API_KEY" if up.kind == "anthropic" else "OPENAI_API_KEY")
        self._key = os.environ.get(env) or None
        self._http = http_client or httpx.AsyncClient(timeout=up.timeout_seconds)
        self._own_http = http_client is None
        self._clients: dict[tuple[str, str | None], Client] = {}
        self._models: list[dict[str, Any]] | None = None
        self._models_at = -math.inf
        self._models_lock = anyio.Lock()

    def _auth(self, key: str | None) -> dict[str, str]:
        if not key:
            return {}
        if self.config.upstream.kind == "anthropic":
            return {"x-api-key": key, "anthropic-version": "2023-06-01"}
        return {"Authorization": f"Bearer {key}"}

    async def models(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The upstream's `/models` entries (cached for a minute; [] when it has no such route).

        A failure is logged as a warning and answers [] (the proxy still serves its aliases);
        the next call tries again.
        """
        async with self._models_lock:
            if not refresh and self._models is not None and time.monotonic() - self._models_at < _MODELS_TTL:
                return self._models
            try:
                resp = await self._http.get(self._models_url, headers=self._auth(self._key))
                resp.raise_for_status()
                data = resp.json().get("data")
                models = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
            except (httpx.HTTPError, ValueError, AttributeError, TypeError) as exc:
                logger.warning("upstream %s/models could not be read: %s", self.url, type(exc).__name__)
                return self._models or []
            self._models, self._models_at = models, time.monotonic()
            return models

    async def price(self, model: str) -> Price | None:
        """The price of `model`: genai-prices, else the config, else the upstream's model list."""
        found = Price.lookup(model, "anthropic" if self.config.upstream.kind == "anthropic" else None)
        if found is not None:
            return found
        if model in self.config.prices:
            return self.config.prices[model]
        for entry in await self.models():
            if entry.get("id") == model:
                return _pricing(entry)
        return None

    async def client(self, model: str, client_key: str | None = None) -> Client:
        """The `Client` for `model` (made on first use); per client key with pass-through."""
        pass_through = self.config.upstream.pass_through_key
        slot = (model, client_key if pass_through else None)
        found = self._clients.get(slot)
        if found is not None:
            return found
        price = await self.price(model)
        found = self._clients.get(slot)  # another request may have made it meanwhile
        if found is not None:
            return found
        key = client_key if pass_through else self._key
        up = self.config.upstream
        common: dict[str, Any] = {
            "base_url": self.url,
            "api_key": key or "",
            "price": price,
            "timeout": up.timeout_seconds,
            "retry": RetryPolicy(attempts=up.retry_attempts, initial_wait=0.2, max_wait=5.0),
            "max_concurrency": self.config.limits.max_concurrency,
            "stream": up.stream,
        }
        endpoint: Endpoint
        if up.kind == "anthropic":
            endpoint = Anthropic(model, **common)
        else:
            endpoint = OpenAIChat(model, prefill_params=False, **common)
        client = Client(endpoint)
        client.controller = _MeteredController(client.controller.config, client.controller.prior)
        self._clients[slot] = client
        return client

    async def aclose(self) -> None:
        """Close every client and the model-list HTTP client."""
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            await c.aclose()
        if self._own_http:
            await self._http.aclose()
