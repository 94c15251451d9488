"""What the OpenAI chat and completions endpoints share: HTTP, errors, usage and streaming.

`OpenAIEndpoint` owns the HTTP client, turns every failure into the typed error tree, parses
usage (reasoning and cached tokens included) and assembles streamed answers. The two concrete
endpoints only say how a request becomes a body and how a choice becomes text and logprobs.

Streaming (server-sent events) is used in two ways:

* `stream=True` on the endpoint: `request()` streams under the hood and returns the assembled
  `Response`; meanwhile the task's `UsageMeter` (see `current_meter`) always holds the usage
  counted so far, so a request cancelled part-way can be charged what it used.
* `async with endpoint.stream(request) as events: async for event in events: ...` yields
  `StreamEvent`s, text deltas per choice and then one "done" event carrying the `Response`;
  leaving the block early closes the connection, and `events.partial()` gives what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, Literal

import anyio
import anyio.lowlevel
import httpx
from httpx_sse import EventSource, SSEError

from .._exceptions import (
    ConfigError,
    HTTPStatusError,
    RateLimitError,
    ResponseError,
    ServerError,
    StreamError,
    TransportError,
)
from .._ledger import prompt_token_bound
from .._models import Completion, Request, Response, TokenLogprob, Usage
from .._prices import Price
from .._tokens import estimate_tokens
from ._base import BaseEndpoint, RetryPolicy, current_meter, retry_after

__all__ = ["OpenAIEndpoint", "StreamEvent", "StreamEvents", "parse_usage"]

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# httpcore's pool scans every connection (for each idle one) whenever a request starts or
# ends: quadratic in the pool size, ~3 ms of CPU per request at 64 connections. Several small
# pools, each request on the least busy one, keep that cost small.
_SHARD_CONNECTIONS = 8
_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
_DRAIN_SECONDS = 1.0
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads
# A fresh object per event-loop run: tells when the endpoint's own client belongs to a dead loop.
_LOOP_MARK: anyio.lowlevel.RunVar[object] = anyio.lowlevel.RunVar("adaptive_openai_loop")


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


def parse_usage(raw: Any) -> Usage | None:
    """Usage from an OpenAI-style `usage` object, or None when it is absent or unusable."""
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens")
    completion = raw.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    details = raw.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    prompt_details = raw.get("prompt_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=reasoning if isinstance(reasoning, int) else 0,
        cached_prompt_tokens=cached if isinstance(cached, int) else 0,
    )


def _server_message(data: Any) -> str | None:
    """Return the message of an OpenAI-style `{"error": {...}}` body, if there is one."""
    if not isinstance(data, dict) or "error" not in data:
        return None
    err = data["error"]
    if isinstance(err, dict):
        message = err.get("message")
        code = err.get("code") or err.get("type")
        text = str(message) if message is not None else json.dumps(err)[:500]
        return f"{text} ({code})" if code else text
    return str(err)[:500]


class OpenAIEndpoint(BaseEndpoint):
    """Base of the OpenAI-compatible endpoints (see `OpenAIChat`, `OpenAICompletions`).

    Args:
        model: Model name sent to the server (and used to look up its price).
        base_url: API root; defaults to env `OPENAI_BASE_URL`, else https://api.openai.com/v1.
        api_key: Bearer token; defaults to env `OPENAI_API_KEY`. None (local servers) sends
            no Authorization header. It never appears in a repr or an error message.
        http_client: An `httpx.AsyncClient` to use; it is never closed by the endpoint. Its
            own timeout applies. Without one the endpoint makes (and `aclose()` closes) its own.
        price: Overrides the looked-up price ($ per million tokens).
        provider: Provider id for the price lookup; "openai" by default for api.openai.com.
        max_concurrency: Requests in flight at once through this endpoint.
        retry: Retry policy for 429, 5xx and transport errors.
        timeout: Seconds for connect/read/write of the endpoint's own client.
        supports_n: False for servers that ignore `n`: `n` then fans out as parallel requests.
        stream: Stream every answer (server-sent events) and assemble it; the task's
            `UsageMeter` then tracks usage while the answer arrives.
        headers: Extra HTTP headers sent with every request.
        max_tokens_field: Body field that carries `max_tokens` ("max_tokens" or
            "max_completion_tokens", which OpenAI's reasoning models require).

    Raises:
        ConfigError: A bad base URL, timeout, concurrency or `max_tokens_field`.
    """

    _path: ClassVar[str] = ""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        price: Price | None = None,
        provider: str | None = None,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        supports_n: bool = True,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
        max_tokens_field: str = "max_tokens",
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"model must be a non-empty string, got {model!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if max_tokens_field not in _MAX_TOKENS_FIELDS:
            raise ConfigError(
                f"max_tokens_field must be one of {_MAX_TOKENS_FIELDS}, got {max_tokens_field!r}"
            )
        base = base_url or os.environ.get("OPENAI_BASE_URL") or _DEFAULT_BASE_URL
        try:
            url = httpx.URL(base)
        except (httpx.InvalidURL, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"base_url must be an http(s) URL such as {_DEFAULT_BASE_URL!r} "
                f"(got {base if isinstance(base, str) else type(base).__name__!r})"
            )
        self._host = url.host + (f":{url.port}" if url.port else "")
        if provider is None and url.host == "api.openai.com":
            provider = "openai"
        super().__init__(model, price=price, provider=provider, max_concurrency=max_concurrency, retry=retry)
        # Per instance: the same class talks to servers that do and do not support n > 1.
        self.supports_n = supports_n
        self.stream_responses = stream
        self.max_tokens_field = max_tokens_field
        self.timeout = float(timeout)
        self._url = str(url).rstrip("/") + self._path
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._api_key = key or None
        # httpx.Headers masks Authorization in its repr, so the key cannot leak through it.
        hdrs = httpx.Headers({"Content-Type": "application/json", "Accept": "application/json"})
        if self._api_key is not None:
            hdrs["Authorization"] = f"Bearer {self._api_key}"
        for k, v in (headers or {}).items():
            hdrs[k] = v
        self._headers = hdrs
        stream_hdrs = httpx.Headers(hdrs)
        stream_hdrs["Accept"] = "text/event-stream"
        # Our own clients carry the headers (merging them into every request costs ~15 us);
        # an injected client must not be changed, so its requests carry them instead.
        self._post_headers: httpx.Headers | None = hdrs if http_client is not None else None
        self._stream_headers = stream_hdrs if http_client is not None else {"Accept": "text/event-stream"}
        self._injected = http_client
        self._max_connections = max_concurrency
        self._injected_shard = _Shard(http_client) if http_client is not None else None
        self._own: list[_Shard] = []
        self._own_token: object = None

    # -- client lifecycle ----------------------------------------------------------------
    @property
    def name(self) -> str:
        """Display name: kind and model, plus the host when it is not OpenAI's (never credentials)."""
        if self._host == "api.openai.com":
            return f"{type(self).__name__}({self.model})"
        return f"{type(self).__name__}({self.model} @ {self._host})"

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
        """Take the least busy client for a request; the caller decrements `busy` when done."""
        shard = self._injected_shard
        if shard is None:
            pool = self._pool()
            shard = pool[0] if len(pool) == 1 else min(pool, key=_busy)
        shard.busy += 1
        return shard

    async def aclose(self) -> None:
        """Close the HTTP clients the endpoint made (an injected client is left open)."""
        own, self._own = self._own, []
        for shard in own:
            await shard.client.aclose()

    async def __aenter__(self) -> OpenAIEndpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- hooks for the concrete endpoints ------------------------------------------------
    def _input(self, request: Request, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def _logprob_params(self, request: Request, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def _choice(self, choice: dict[str, Any]) -> tuple[str, list[TokenLogprob] | None]:
        """Text and logprobs of one choice of a complete answer."""
        raise NotImplementedError

    def _delta(self, choice: dict[str, Any]) -> tuple[str, str, list[TokenLogprob] | None]:
        """Text, reasoning text and logprobs of one choice of a streamed chunk."""
        raise NotImplementedError

    # -- request -------------------------------------------------------------------------
    def build_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        """Build the JSON body sent for `request` (useful to inspect or log; holds no secrets)."""
        body: dict[str, Any] = {"model": self.model}
        self._input(request, body)
        body["n"] = request.n
        body[self.max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop is not None:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.logprobs or request.top_logprobs:
            self._logprob_params(request, body)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra:
            body.update(request.extra)
        return body

    async def _send(self, request: Request) -> Response:
        if self.stream_responses:
            return await self._send_streamed(request)
        content = _dumps(self.build_body(request)).encode()
        shard = self._pick()
        try:
            resp = await shard.client.post(self._url, content=content, headers=self._post_headers)
        except httpx.RequestError as exc:
            raise self._request_error(exc) from exc
        finally:
            shard.busy -= 1
        if resp.status_code // 100 != 2:
            raise self._status_error(resp)
        try:
            data = _loads(resp.content)
        except ValueError:
            raise ResponseError(
                f"{self.name}: the server answered HTTP {resp.status_code} with a body that is not "
                f"JSON: {self._scrub(resp.text[:200])!r}",
                endpoint=self.name,
            ) from None
        return self._parse(request, data)

    def _parse(self, request: Request, data: Any) -> Response:
        message = _server_message(data)
        if message is not None:
            raise ResponseError(
                f"{self.name}: the server returned an error: {self._scrub(message)}", endpoint=self.name
            )
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise ResponseError(f"{self.name}: the answer has no 'choices' list", endpoint=self.name)
        usage = parse_usage(data.get("usage"))
        reported = usage is not None
        single = request.n == 1 and len(choices) == 1
        completions = []
        try:
            for i, choice in enumerate(choices):
                text, logprobs = self._choice(choice)
                index = choice.get("index")
                completions.append(
                    Completion(
                        text=text,
                        finish_reason=choice.get("finish_reason"),
                        index=index if isinstance(index, int) else i,
                        logprobs=tuple(logprobs) if logprobs is not None else None,
                        completion_tokens=len(logprobs)
                        if logprobs
                        else (usage.completion_tokens if single and usage is not None else None),
                    )
                )
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise ResponseError(
                f"{self.name}: a choice in the answer is malformed "
                f"({type(exc).__name__}: {self._scrub(str(exc))[:300]})",
                endpoint=self.name,
            ) from None
        if usage is None:
            usage = Usage(
                prompt_tokens=prompt_token_bound(request),
                completion_tokens=sum(
                    len(c.logprobs)
                    if c.logprobs
                    else estimate_tokens(len(c.text.encode()), request.max_tokens)
                    for c in completions
                ),
            )
        model = data.get("model")
        rid = data.get("id")
        return Response(
            completions=tuple(completions),
            usage=usage,
            model=model if isinstance(model, str) else None,
            id=rid if isinstance(rid, str) else None,
            usage_reported=reported,
        )

    # -- errors --------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        """Remove the API key from text that came from elsewhere (a server may echo it)."""
        key = self._api_key
        return text.replace(key, "***") if key and key in text else text

    def _request_error(self, exc: httpx.RequestError) -> TransportError | ResponseError:
        what = f"{type(exc).__name__}: {self._scrub(str(exc))}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.TransportError):
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "transport error"
            return TransportError(f"{self.name}: {kind} talking to {self._host} ({what})", endpoint=self.name)
        return ResponseError(f"{self.name}: could not read the answer ({what})", endpoint=self.name)

    def _status_error(self, resp: httpx.Response) -> HTTPStatusError:
        body = self._scrub(resp.text)
        try:
            detail = _server_message(_loads(body)) or body[:300]
        except ValueError:
            detail = body[:300]
        status = resp.status_code
        cls = RateLimitError if status == 429 else ServerError if status >= 500 else HTTPStatusError
        hint = ""
        if status in (401, 403):
            hint = " (check the API key: pass api_key= or set OPENAI_API_KEY)"
        elif status == 404:
            hint = f" (check base_url and the model name {self.model!r})"
        return cls(
            f"{self.name}: HTTP {status}{hint}: {detail}",
            status_code=status,
            body=body,
            endpoint=self.name,
            retry_after=retry_after(resp.headers),
        )

    # -- streaming -----------------------------------------------------------------------
    async def _open(self, request: Request) -> tuple[httpx.Response, _Shard]:
        """Send a streaming request; return the open response (2xx) and its busy shard."""
        content = _dumps(self.build_body(request, stream=True)).encode()
        shard = self._pick()
        try:
            return await self._open_on(shard.client, content), shard
        except BaseException:
            shard.busy -= 1
            raise

    async def _open_on(self, client: httpx.AsyncClient, content: bytes) -> httpx.Response:
        req = client.build_request(
            "POST",
            self._url,
            content=content,
            headers=self._stream_headers,
        )
        try:
            resp = await client.send(req, stream=True)
        except httpx.RequestError as exc:
            raise self._request_error(exc) from exc
        if resp.status_code // 100 != 2:
            try:
                await resp.aread()
            except httpx.RequestError as exc:
                raise self._request_error(exc) from exc
            finally:
                with anyio.CancelScope(shield=True):
                    await resp.aclose()
            raise self._status_error(resp)
        return resp

    async def _send_streamed(self, request: Request) -> Response:
        # Called under BaseEndpoint's limiter and retries: no retrying here.
        events = StreamEvents(self, request, *await self._open(request))
        result: Response | None = None
        try:
            async for event in events:
                if event.response is not None:
                    result = event.response
        finally:
            await events.aclose()
        assert result is not None
        return result

    @contextlib.asynccontextmanager
    async def stream(self, request: Request) -> AsyncIterator[StreamEvents]:
        """Stream `request`: `async with endpoint.stream(req) as events: async for e in events`.

        The events are text deltas per choice and then one "done" event whose `response` is the
        assembled `Response`. Leaving the block early closes the connection (the server stops
        generating); `events.partial()` then gives what arrived, with its counted usage. Opening
        the stream is retried per the retry policy; once the server answered, nothing is.

        Raises:
            ConfigError: `n > 1` on an endpoint made with `supports_n=False` (stream `n`
                single requests concurrently instead), or a request this endpoint cannot take.
            StreamError: The stream ended before it was complete (`.partial` has what arrived).
        """
        if request.n > 1 and not self.supports_n:
            raise ConfigError(
                f"{self.name} was made with supports_n=False: stream n=1 requests concurrently "
                "instead of one with n > 1"
            )
        self.build_body(request)  # surface a ConfigError before any network traffic
        policy = self.retry
        async with self.limiter:
            attempt = 1
            while True:
                try:
                    opened = await self._open(request)
                    break
                except Exception as exc:
                    if attempt >= policy.attempts or not policy.is_retryable(exc):
                        raise
                    await anyio.sleep(policy.delay(exc, attempt))
                    attempt += 1
            events = StreamEvents(self, request, *opened)
            try:
                yield events
            finally:
                await events.aclose()


@dataclasses.dataclass(slots=True, eq=False)
class _Shard:
    """One HTTP client and how many requests it has in flight."""

    client: httpx.AsyncClient
    busy: int = 0


def _busy(shard: _Shard) -> int:
    return shard.busy


@dataclasses.dataclass(slots=True)
class _Choice:
    parts: list[str] = dataclasses.field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    chunks: int = 0
    nbytes: int = 0
    reasoning_chunks: int = 0
    reasoning_bytes: int = 0

    def tokens(self, max_tokens: int) -> tuple[int, int]:
        """(completion tokens, of which reasoning) counted so far."""
        # A chunk is at least one token; bytes/4 covers servers that batch tokens per chunk.
        reasoning = max(self.reasoning_chunks, estimate_tokens(self.reasoning_bytes, max_tokens))
        if self.logprobs is not None:
            text = len(self.logprobs)
        else:
            text = max(self.chunks, estimate_tokens(self.nbytes, max_tokens))
        return text + reasoning, reasoning


class StreamEvents:
    """The events of one streamed answer (an async iterator of `StreamEvent`).

    Made by `OpenAIEndpoint.stream()`; `partial()` gives the `Response` assembled so far and
    `response` the complete one once the "done" event has been seen.
    """

    def __init__(
        self, endpoint: OpenAIEndpoint, request: Request, response: httpx.Response, shard: _Shard
    ) -> None:
        self._endpoint = endpoint
        self._shard: _Shard | None = shard
        self._request = request
        self._http = response
        self._sse = EventSource(response).aiter_sse()
        self._pending: deque[StreamEvent] = deque()
        self._choices: dict[int, _Choice] = {}
        self._reported: Usage | None = None
        self._prompt_bound = prompt_token_bound(request)
        self._model: str | None = None
        self._id: str | None = None
        self._chunks = 0
        self._state: Literal["open", "done", "closed"] = "open"
        self.response: Response | None = None
        # Usage this stream has added to the task's meter (shared by fanned-out requests).
        self._meter = current_meter()
        self._metered = Usage()
        self._metered_samples = 0
        self._publish()  # the server accepted the prompt: count it from now on

    def __aiter__(self) -> StreamEvents:
        return self

    async def __anext__(self) -> StreamEvent:
        while not self._pending:
            if self._state != "open":
                if self._state == "done":
                    await self._drain()
                raise StopAsyncIteration
            await self._pull()
        return self._pending.popleft()

    # -- assembling ----------------------------------------------------------------------
    def usage(self) -> Usage:
        """Return the reported usage if the server sent it, else the usage counted so far."""
        if self._reported is not None:
            return self._reported
        completion = reasoning = 0
        for choice in self._choices.values():
            c, r = choice.tokens(self._request.max_tokens)
            completion += c
            reasoning += r
        return Usage(
            prompt_tokens=self._prompt_bound, completion_tokens=completion, reasoning_tokens=reasoning
        )

    def partial(self) -> Response:
        """Return the `Response` assembled so far (unfinished choices: finish_reason "cancelled")."""
        return self._build(complete=False)

    def _build(self, *, complete: bool) -> Response:
        usage = self.usage()
        reported = self._reported is not None
        single = self._request.n == 1 and len(self._choices) == 1
        completions = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            finish = choice.finish_reason or (None if complete else "cancelled")
            lps = tuple(choice.logprobs) if choice.logprobs is not None else None
            completions.append(
                Completion(
                    text="".join(choice.parts),
                    finish_reason=finish,
                    index=index,
                    logprobs=lps,
                    completion_tokens=len(lps)
                    if lps
                    else (usage.completion_tokens if single and reported else None),
                )
            )
        return Response(
            completions=tuple(completions),
            usage=usage,
            model=self._model,
            id=self._id,
            usage_reported=reported,
        )

    def _publish(self) -> None:
        meter = self._meter
        if meter is None:
            return
        new, old = self.usage(), self._metered
        base = meter.usage or Usage()
        meter.usage = Usage(
            prompt_tokens=base.prompt_tokens + new.prompt_tokens - old.prompt_tokens,
            completion_tokens=base.completion_tokens + new.completion_tokens - old.completion_tokens,
            reasoning_tokens=base.reasoning_tokens + new.reasoning_tokens - old.reasoning_tokens,
            cached_prompt_tokens=base.cached_prompt_tokens
            + new.cached_prompt_tokens
            - old.cached_prompt_tokens,
            cache_write_tokens=base.cache_write_tokens + new.cache_write_tokens - old.cache_write_tokens,
        )
        started = sum(1 for c in self._choices.values() if c.chunks or c.reasoning_chunks or c.logprobs)
        meter.samples += started - self._metered_samples
        self._metered, self._metered_samples = new, started

    def _feed(self, data: Any) -> None:
        endpoint = self._endpoint
        if not isinstance(data, dict):
            raise ValueError("an event is not a JSON object")
        message = _server_message(data)
        if message is not None:
            raise _ServerSaid(message)
        if self._model is None and isinstance(data.get("model"), str):
            self._model = data["model"]
        if self._id is None and isinstance(data.get("id"), str):
            self._id = data["id"]
        usage = parse_usage(data.get("usage"))
        if usage is not None:
            self._reported = usage
        for choice in data.get("choices") or ():
            index = choice.get("index", 0)
            if not isinstance(index, int):
                raise ValueError(f"a choice index is {index!r}")
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice()
            text, reasoning, logprobs = endpoint._delta(choice)
            if text:
                state.parts.append(text)
                state.chunks += 1
                state.nbytes += len(text.encode())
                self._pending.append(StreamEvent("delta", index, text))
            if reasoning:
                state.reasoning_chunks += 1
                state.reasoning_bytes += len(reasoning.encode())
            if logprobs is not None:
                if state.logprobs is None:
                    state.logprobs = []
                state.logprobs.extend(logprobs)
            finish = choice.get("finish_reason")
            if finish:
                state.finish_reason = str(finish)

    def _complete(self) -> bool:
        # Without [DONE], a stream whose every choice said why it finished is still whole.
        return len(self._choices) >= self._request.n and all(c.finish_reason for c in self._choices.values())

    def _cut(self, why: str) -> StreamError:
        self._state = "closed"
        partial = self.partial()
        name = self._endpoint.name
        return StreamError(
            f"{name}: the stream was cut off after {self._chunks} events ({why}); "
            "the partial answer and its counted usage are in .partial",
            endpoint=name,
            partial=partial,
        )

    def _finish(self) -> None:
        self._state = "done"
        self.response = self._build(complete=True)
        self._publish()
        self._pending.append(StreamEvent("done", response=self.response))

    async def _pull(self) -> None:
        endpoint = self._endpoint
        try:
            event = await self._sse.__anext__()
        except StopAsyncIteration:
            if self._complete():
                self._finish()
                return
            raise self._cut("it ended without [DONE]") from None
        except SSEError as exc:  # an httpx.TransportError subclass: caught first
            self._state = "closed"
            raise ResponseError(
                f"{endpoint.name}: not an event stream ({exc})", endpoint=endpoint.name
            ) from None
        except httpx.HTTPError as exc:
            raise self._cut(f"{type(exc).__name__}: {endpoint._scrub(str(exc))}") from exc
        data = event.data
        if data == "[DONE]":
            self._finish()
            return
        if not data:
            return  # keep-alive comments and empty events carry nothing
        self._chunks += 1
        try:
            self._feed(_loads(data))
        except _ServerSaid as exc:
            raise self._cut(f"the server sent an error: {endpoint._scrub(str(exc))}") from None
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise self._cut(
                f"malformed event: {type(exc).__name__}: {endpoint._scrub(str(exc))[:300]}"
            ) from None
        finally:
            self._publish()

    async def _drain(self) -> None:
        # Read what follows [DONE] (normally just the end of the body) so the connection can
        # go back to the pool; a server that keeps the stream open is not waited for.
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
                shard, self._shard = self._shard, None
                if shard is not None:
                    shard.busy -= 1


class _ServerSaid(Exception):
    """An error object inside an event stream."""
