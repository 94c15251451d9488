"""The one HTTP layer under the providers: settings, URL and auth, errors, retries, pool.

`HTTPSettings` holds what every HTTP provider takes (declared once; `HTTPSettingsArgs` is the
same list as keyword arguments, so providers accept `**settings` and mypy still checks each
one). `HTTPEndpoint` turns them into a working endpoint: it checks the base URL, sends the
auth headers, keeps the API key out of every message, maps HTTP statuses and transport
failures onto the typed error tree, retries per the `RetryPolicy`, pools connections per
event loop and closes them in `aclose()`. A provider only says how a request becomes a body,
how a body becomes a `Response`, and how its event stream is decoded (`_sse.StreamDecoder`).

Streaming (server-sent events) is used in two ways:

* `stream=True`: `request()` streams under the hood and returns the assembled `Response`;
  meanwhile the task's `UsageMeter` (see `current_meter`) holds the usage counted so far, so
  a request cancelled part-way is charged what it used rather than its worst case.
* `async with endpoint.stream(request) as events: async for event in events: ...` yields
  `StreamEvent`s (text deltas, then one "done" event carrying the `Response`); leaving the
  block early closes the connection, and `events.partial()` gives what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, TypedDict, Unpack

import anyio
import anyio.lowlevel
import httpx
from pydantic import ConfigDict, Field, field_validator

from .._exceptions import (
    AdaptiveError,
    ClientClosedError,
    ConfigError,
    EndpointError,
    HTTPStatusError,
    RateLimitError,
    ResponseError,
    ServerError,
    TransportError,
)
from .._models import HiddenInputError, Request, Response, Usage, ValidatedModel
from .._prices import Price
from ._base import BaseEndpoint, RetryPolicy, detach, retry_after
from ._checks import WireError
from ._sse import StreamDecoder, StreamEvents

__all__ = ["HTTPEndpoint", "HTTPSettings", "HTTPSettingsArgs", "WireError"]

# httpcore's pool scans every connection (for each idle one) whenever a request starts or
# ends: quadratic in the pool size, ~3 ms of CPU per request at 64 connections. Several small
# pools, each request on the least busy one, keep that cost small.
_SHARD_CONNECTIONS = 8
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# A fresh object per event-loop run: tells when the endpoint's own client belongs to a dead loop.
_LOOP_MARK: anyio.lowlevel.RunVar[object] = anyio.lowlevel.RunVar("adaptive_http_loop")


class HTTPSettingsArgs(TypedDict, total=False):
    """`HTTPSettings` as keyword arguments (see it for what each one means)."""

    base_url: str | None
    api_key: str | None
    http_client: httpx.AsyncClient | None
    price: Price | None
    provider: str | None
    max_concurrency: int
    retry: RetryPolicy | None
    timeout: float
    headers: Mapping[str, str] | None
    stream: bool


class HTTPSettings(ValidatedModel):
    """What every HTTP provider takes, validated once (a bad value raises `ConfigError`).

    Args:
        base_url: API root; None means the provider's environment variable, then its default.
        api_key: The key; None means the provider's environment variable. It never appears in
            a repr or an error message.
        http_client: An `httpx.AsyncClient` to use; it is never closed by the endpoint and its
            own timeout applies. Without one the endpoint makes (and `aclose()` closes) its own.
        price: Overrides the price looked up in genai-prices ($ per million tokens).
        provider: Provider id for the price lookup (each provider has a sensible default).
        max_concurrency: Requests in flight at once through the endpoint.
        retry: Retry policy for 429, 5xx and transport errors (default `RetryPolicy()`).
        timeout: Seconds for connect/read/write of the endpoint's own client.
        headers: Extra HTTP headers sent with every request.
        stream: Stream every answer (server-sent events) and assemble it; the task's
            `UsageMeter` then tracks usage while the answer arrives. Off by default for every
            provider: some proxies and servers do not stream, and a plain answer is cheaper to
            parse; turn it on so that a request the controller cancels is charged what it
            streamed rather than its reserved worst case.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    base_url: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    http_client: httpx.AsyncClient | None = Field(default=None, repr=False)
    price: Price | None = None
    provider: str | None = None
    max_concurrency: int = Field(default=64, ge=1, strict=True)
    retry: RetryPolicy | None = None
    # Strict: "5" or True is a mistake to report, not a value to coerce.
    timeout: float = Field(default=60.0, gt=0, allow_inf_nan=False, strict=True)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    stream: bool = Field(default=False, strict=True)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_base_url(value, "https://api.example.com/v1")
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _no_headers(cls, value: Any) -> Any:
        return {} if value is None else dict(value) if isinstance(value, Mapping) else value

    @classmethod
    def of(cls, settings: HTTPSettings | None, args: Mapping[str, Any]) -> HTTPSettings:
        """`settings` (or the defaults) with `args` laid over them, validated together."""
        if settings is not None and not isinstance(settings, HTTPSettings):
            raise ConfigError(f"settings must be an HTTPSettings, got {type(settings).__name__}")
        unknown = sorted(set(args) - set(cls.model_fields))
        if unknown:
            raise ConfigError(
                f"unexpected keyword argument(s) {', '.join(unknown)}; the HTTP settings are "
                f"{', '.join(cls.model_fields)}"
            )
        if settings is None:
            return cls(**args)
        if not args:
            return settings
        return cls(**{**{name: getattr(settings, name) for name in settings.model_fields_set}, **args})


def parse_base_url(value: object, example: str) -> httpx.URL:
    """`value` as an http(s) URL with a host, else a `ValueError` that shows an example."""
    try:
        url = httpx.URL(value) if isinstance(value, str) else None
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        if isinstance(value, str) and "@" in value:
            raise HiddenInputError(
                f"base_url must be an http(s) URL such as {example!r} (the value is not shown: "
                "it has an '@' and may hold credentials)"
            )
        shown = value if isinstance(value, str) else type(value).__name__
        raise ValueError(f"base_url must be an http(s) URL such as {example!r} (got {shown!r})")
    if url.userinfo:
        # Credentials in the URL would reach every log line and error that shows the URL
        # (httpx logs each request's URL). The value is not repeated here for the same reason.
        raise HiddenInputError(
            f"base_url must not carry credentials (user:password@host): pass the key as api_key= "
            f"(or a header in headers=) and give base_url without them, such as {example!r}"
        )
    return url


def server_message(data: Any) -> str | None:
    """The message of an `{"error": {...}}` body (OpenAI's and Anthropic's shape), if any."""
    if not isinstance(data, dict) or "error" not in data:
        return None
    err = data["error"]
    if isinstance(err, dict):
        message = err.get("message")
        code = err.get("code") or err.get("type")
        text = str(message) if message is not None else json.dumps(err)[:500]
        return f"{text} ({code})" if code else text
    return str(err)[:500]


@dataclasses.dataclass(slots=True, eq=False)
class _Shard:
    """One HTTP client and how many requests it has in flight."""

    client: httpx.AsyncClient
    busy: int = 0

    def release(self) -> None:
        self.busy -= 1


def _busy(shard: _Shard) -> int:
    return shard.busy


class HTTPEndpoint(BaseEndpoint):
    """An endpoint over HTTP + JSON (+ server-sent events); providers fill in the wire format.

    Args:
        model: Model name sent to the server (and used to look up its price).
        settings: An `HTTPSettings`; keyword arguments given as well override its fields.
        **kwargs: The `HTTPSettings` fields as keywords (`base_url=`, `api_key=`, ...).

    Raises:
        ConfigError: An empty model name or a bad setting (the message names it).
    """

    _path: ClassVar[str] = ""
    _default_base_url: ClassVar[str] = ""
    _base_url_env: ClassVar[str] = ""
    _api_key_env: ClassVar[str] = ""

    def __init__(
        self, model: str, *, settings: HTTPSettings | None = None, **kwargs: Unpack[HTTPSettingsArgs]
    ) -> None:
        s = HTTPSettings.of(settings, kwargs)
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must be a non-empty string, got {model!r}")
        base = s.base_url or os.environ.get(self._base_url_env) or self._default_base_url
        try:
            url = parse_base_url(base, self._default_base_url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._host = url.host + (f":{url.port}" if url.port else "")
        # Read on every request's events: made once. The host only, never URL userinfo.
        shown = model if url.host == httpx.URL(self._default_base_url).host else f"{model} @ {self._host}"
        self._name = f"{type(self).__name__}({shown})"
        super().__init__(
            model,
            price=s.price,
            provider=s.provider or self._price_provider(url),
            max_concurrency=s.max_concurrency,
            retry=s.retry,
        )
        self.settings = s
        self.stream_responses = s.stream
        self.timeout = s.timeout
        self._url = str(url).rstrip("/") + self._path
        key = s.api_key if s.api_key is not None else os.environ.get(self._api_key_env)
        self._api_key = key or None
        extra = httpx.Headers(s.headers)
        self._check_auth(self._api_key, extra)
        # Anything that authenticates is a secret to scrub, whichever header carries it.
        self._secrets = tuple(
            v for v in (self._api_key, extra.get("authorization"), extra.get("x-api-key")) if v
        )
        # httpx.Headers masks Authorization in its repr; the key cannot leak through it.
        hdrs = httpx.Headers({"Content-Type": "application/json", "Accept": "application/json"})
        hdrs.update(self._auth_headers(self._api_key))
        hdrs.update(extra)
        self._headers = hdrs
        stream_hdrs = httpx.Headers(hdrs)
        stream_hdrs["Accept"] = "text/event-stream"
        # Our own clients carry the headers (merging them into every request costs ~15 us);
        # an injected client must not be changed, so its requests carry them instead.
        injected = s.http_client
        self._post_headers: httpx.Headers | None = hdrs if injected is not None else None
        self._stream_headers = stream_hdrs if injected is not None else {"Accept": "text/event-stream"}
        self._injected = injected
        self._max_connections = s.max_concurrency
        self._injected_shard = _Shard(injected) if injected is not None else None
        self._own: list[_Shard] = []
        self._own_token: object = None
        self._closed = False

    # -- hooks for the providers ----------------------------------------------------------
    def _price_provider(self, url: httpx.URL) -> str | None:
        """Provider id for the price lookup when none was given."""
        return self.provider

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        """Headers that carry the key (and whatever else the provider requires)."""
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _check_auth(self, api_key: str | None, headers: httpx.Headers) -> None:
        """Refuse a configuration the provider would certainly reject (no key at all)."""

    def build_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        """Build the JSON body sent for `request` (to inspect or log; holds no secrets)."""
        raise NotImplementedError

    def _parse(self, request: Request, data: Any) -> Response:
        """The `Response` in a 2xx JSON answer; raises `WireError` for an unusable one."""
        raise NotImplementedError

    def _decoder(self, request: Request) -> StreamDecoder:
        """A fresh decoder for the event stream answering `request`."""
        raise NotImplementedError

    def _check_stream(self, request: Request) -> None:
        """Refuse, before any traffic, a request `stream()` cannot take."""

    # -- client lifecycle -----------------------------------------------------------------
    @property
    def name(self) -> str:
        """Display name: kind and model, plus the host when it is not the default (no secrets)."""
        return self._name

    def _pool(self) -> list[_Shard]:
        """Return the endpoint's own clients for the running event loop, made on first use."""
        try:
            token: object = asyncio.get_running_loop()  # cheap identity of the running loop
        except RuntimeError:  # not asyncio (trio): a marker object per event-loop run
            token = _LOOP_MARK.get(None)
            if token is None:
                token = object()
                _LOOP_MARK.set(token)
        if not self._own or self._own_token is not token:
            # Pooled connections belong to one event loop: a new loop (another anyio.run)
            # needs new clients; the old ones' connections died with their loop.
            count = -(-self._max_connections // _SHARD_CONNECTIONS)
            per = -(-self._max_connections // count)
            limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
            ssl_context = httpx.create_ssl_context()  # one CA bundle load, shared by the shards
            self._own = [
                _Shard(
                    httpx.AsyncClient(
                        timeout=self.timeout, limits=limits, verify=ssl_context, headers=self._headers
                    )
                )
                for _ in range(count)
            ]
            self._own_token = token
        return self._own

    def _pick(self) -> _Shard:
        """Take the least busy client for a request; the caller calls `release()` when done."""
        shard = self._injected_shard
        if self._closed and shard is None:
            raise self._closed_error()
        if shard is None:
            pool = self._pool()
            shard = pool[0] if len(pool) == 1 else min(pool, key=_busy)
        shard.busy += 1
        return shard

    def _closed_error(self) -> ClientClosedError:
        return ClientClosedError(
            f"{self.name} was closed (aclose()): make a new endpoint rather than reusing this one "
            "(reopening would leave a connection pool that nothing closes)"
        )

    @property
    def closed(self) -> bool:
        """Whether `aclose()` was called (then requests are refused unless `http_client=` was given)."""
        return self._closed

    async def aclose(self) -> None:
        """Close the HTTP clients the endpoint made (an injected client is left open).

        An endpoint that made its own clients refuses requests afterwards (`ClientClosedError`)
        rather than opening a pool that nothing would close; one given `http_client=` holds
        nothing of its own and stays usable. Closing twice is fine.
        """
        self._closed = True
        own, self._own = self._own, []
        for shard in own:
            await shard.client.aclose()

    # -- errors ---------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        """Remove the credentials from text that came from elsewhere (a server may echo them)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def _request_error(self, exc: Exception) -> EndpointError:
        """The typed error for an exception raised while sending or reading (never chained)."""
        what = f"{type(exc).__name__}: {self._scrub(str(exc))[:300]}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            # Never connected: nothing was sent, nothing is billed.
            return TransportError(
                f"{self.name}: transport error talking to {self._host}: could not connect ({what})",
                endpoint=self.name,
                usage=Usage(),
            )
        if isinstance(exc, httpx.TransportError | OSError | anyio.BrokenResourceError | anyio.EndOfStream):
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "transport error"
            return TransportError(f"{self.name}: {kind} talking to {self._host} ({what})", endpoint=self.name)
        if isinstance(exc, httpx.HTTPError):
            return ResponseError(f"{self.name}: could not read the answer ({what})", endpoint=self.name)
        return EndpointError(
            f"{self.name}: unexpected {what} while talking to {self._host}", endpoint=self.name
        )

    def _status_error(self, resp: httpx.Response) -> HTTPStatusError:
        body = self._scrub(resp.text)
        try:
            detail = server_message(json.loads(body)) or body[:300]
        except ValueError:
            detail = body[:300]
        status = resp.status_code
        # 529 is Anthropic's "overloaded": transient, like any 5xx.
        cls = RateLimitError if status == 429 else ServerError if status >= 500 else HTTPStatusError
        hint = ""
        if status in (401, 403):
            hint = f" (check the API key: pass api_key= or set {self._api_key_env})"
        elif status == 404:
            hint = f" (check base_url and the model name {self.model!r})"
        return cls(
            f"{self.name}: HTTP {status}{hint}: {detail or resp.reason_phrase}",
            status_code=status,
            body=body,
            endpoint=self.name,
            retry_after=retry_after(resp.headers),
        )

    def _unusable(self, exc: WireError) -> ResponseError:
        return ResponseError(
            f"{self.name}: {self._scrub(str(exc))}", endpoint=self.name, usage=exc.usage, choices=exc.choices
        )

    def _read_answer(self, request: Request, resp: httpx.Response) -> Response | EndpointError:
        """The parsed `Response` of a 2xx answer, or the error to raise (built, not raised)."""
        try:
            data = json.loads(resp.content)
        except (ValueError, RecursionError):
            return ResponseError(
                f"{self.name}: the server answered HTTP {resp.status_code} with a body that is not "
                f"JSON: {self._scrub(resp.text[:200])!r}",
                endpoint=self.name,
            )
        try:
            return self._parse(request, data)
        except WireError as exc:
            return self._unusable(exc)
        except Exception as exc:  # a parser tripped on an odd answer: still the server's fault
            return ResponseError(
                f"{self.name}: unusable answer ({type(exc).__name__}: {self._scrub(str(exc))[:300]})",
                endpoint=self.name,
            )

    # -- sending --------------------------------------------------------------------------
    async def _send(self, request: Request) -> Response:
        # Called under BaseEndpoint's limiter and retries: nothing is retried here.
        if self.stream_responses:
            return await self._send_streamed(request)
        content = _dumps(self.build_body(request)).encode()
        shard = self._pick()
        # Errors are built inside the except blocks and raised after them: raised inside,
        # they would keep the httpx exception as __context__, and its request object
        # carries the headers, API key included.
        failure: EndpointError | None = None
        try:
            resp = await shard.client.post(self._url, content=content, headers=self._post_headers)
        except Exception as exc:
            failure = self._request_error(exc)
        finally:
            shard.release()
        if failure is not None:
            raise failure
        if resp.status_code // 100 != 2:
            raise self._status_error(resp)
        result = self._read_answer(request, resp)
        if isinstance(result, EndpointError):
            raise result
        return result

    async def _open(self, request: Request) -> StreamEvents:
        """Send a streaming request; return its events once the server answered 2xx."""
        content = _dumps(self.build_body(request, stream=True)).encode()
        shard = self._pick()
        failure: EndpointError | None = None  # raised outside the except blocks (see _send)
        try:
            client = shard.client
            req = client.build_request("POST", self._url, content=content, headers=self._stream_headers)
            try:
                resp = await client.send(req, stream=True)
            except Exception as exc:
                failure = self._request_error(exc)
            if failure is None and resp.status_code // 100 != 2:
                try:
                    await resp.aread()
                except Exception as exc:
                    failure = self._request_error(exc)
                finally:
                    with anyio.CancelScope(shield=True):
                        await resp.aclose()
                if failure is None:
                    failure = self._status_error(resp)
        except BaseException:
            shard.release()
            raise
        if failure is not None:
            shard.release()
            raise failure
        return StreamEvents(
            self._decoder(request), request, resp, name=self.name, scrub=self._scrub, release=shard.release
        )

    async def _send_streamed(self, request: Request) -> Response:
        events = await self._open(request)
        try:
            async for _ in events:
                pass
        finally:
            await events.aclose()
        assert events.response is not None
        return events.response

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[StreamEvents]:
        """Stream `request`: `async with endpoint.stream(req) as events: async for e in events`.

        The events are text deltas per choice and then one "done" event whose `response` is the
        assembled `Response`. Leaving the block early closes the connection (the server stops
        generating); `events.partial()` then gives what arrived, with its counted usage. Opening
        the stream is retried per the retry policy; once the server answered, nothing is.

        Raises:
            ConfigError: A request this endpoint cannot take (raised before any traffic).
            StreamError: The stream ended before it was complete (`.partial` has what arrived).
        """
        self._check_stream(request)
        self.build_body(request, stream=True)  # surface a ConfigError before any network traffic
        if self._closed and self._injected_shard is None:
            raise self._closed_error()
        async with self.limiter:
            try:
                events = await self.retry.call(lambda: self._open(request))
            except AdaptiveError as exc:
                detach(exc)
                raise
            try:
                yield events
            finally:
                await events.aclose()
