"""Anthropic's Messages API over plain httpx (no vendor SDK).

Message mapping: `system` and `developer` messages are joined (blank line between) into the
top-level `system` field; consecutive messages of the same role are merged into one turn
(blank line between), because the API requires user and assistant turns to alternate. A
`prefill` becomes a trailing assistant message, which Anthropic continues.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar

import httpx

from .._exceptions import (
    ConfigError,
    HTTPStatusError,
    RateLimitError,
    ResponseError,
    ServerError,
    TransportError,
)
from .._ledger import prompt_token_bound
from .._models import Completion, Request, Response, Usage
from .._prices import Price
from ._base import BaseEndpoint, RetryPolicy, retry_after

__all__ = ["Anthropic"]

_DEFAULT_BASE_URL = "https://api.anthropic.com"
_API_VERSION = "2023-06-01"

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    # The prompt plus output filled the context window: the answer was cut, like max_tokens.
    "model_context_window_exceeded": "length",
}
_THINKING = ("thinking", "redacted_thinking")


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    if value is None:  # cache fields are null on models / requests without caching
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage.{key} is {value!r}, expected a non-negative integer")
    return value


class Anthropic(BaseEndpoint):
    """An Anthropic model through the Messages API (`POST {base_url}/v1/messages`).

    One request yields one completion: `n > 1` is fanned out into parallel requests by
    `BaseEndpoint` (each billed for its prompt). Logprobs are not available from Anthropic.

    Args:
        model: The model id, e.g. "claude-sonnet-4-5".
        base_url: API root; defaults to `$ANTHROPIC_BASE_URL`, then https://api.anthropic.com.
        api_key: Defaults to `$ANTHROPIC_API_KEY`. Never shown in reprs or errors.
        http_client: A client to use instead of our own; it is never closed by us.
        price: Overrides the price looked up in genai-prices.
        max_concurrency: Requests in flight at once.
        retry: Retry policy for 429, 5xx, 529 (overloaded) and transport errors.
        timeout: Seconds per request for the client we create (an injected client keeps its own).
        headers: Extra HTTP headers (e.g. `anthropic-beta`).

    Example:
        >>> async with Anthropic("claude-haiku-4-5") as claude:  # doctest: +SKIP
        ...     response = await claude.request(Request(messages=as_messages("2+2?")))

    """

    supports_n = False
    supports_prefill = True
    supports_raw = False
    provider: ClassVar[str | None] = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        price: Price | None = None,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ConfigError("model is empty: pass the Anthropic model id, e.g. 'claude-sonnet-4-5'")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(f"timeout must be a positive number of seconds (got {timeout!r})")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1 (got {max_concurrency})")
        super().__init__(model, price=price, max_concurrency=max_concurrency, retry=retry)
        root = base_url or os.environ.get("ANTHROPIC_BASE_URL") or _DEFAULT_BASE_URL
        try:
            parsed = httpx.URL(root)
        except httpx.InvalidURL:
            raise ConfigError("base_url is not a valid URL: pass e.g. 'https://api.anthropic.com'") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError("base_url must be an http(s) URL with a host, e.g. 'https://api.anthropic.com'")
        self._url = root.rstrip("/") + "/v1/messages"
        self._host = parsed.host  # for the display name: never the userinfo part of the URL
        extra = {k.lower(): v for k, v in (headers or {}).items()}
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        if not key and "x-api-key" not in extra and "authorization" not in extra:
            raise ConfigError(
                "no Anthropic API key: pass api_key=... or set the ANTHROPIC_API_KEY environment variable"
            )
        self._secrets = tuple(s for s in (key, extra.get("x-api-key"), extra.get("authorization")) if s)
        self._headers: dict[str, str] = {"anthropic-version": _API_VERSION, **extra}
        if key:
            self._headers["x-api-key"] = key
        self._headers["content-type"] = "application/json"
        self._timeout = timeout
        self._injected = http_client
        self._own: httpx.AsyncClient | None = None

    @property
    def name(self) -> str:
        """Display name: the model, plus the host when it is not Anthropic's."""
        if self._host == httpx.URL(_DEFAULT_BASE_URL).host:
            return f"Anthropic({self.model})"
        return f"Anthropic({self.model} @ {self._host})"

    # -- client lifetime ---------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        if self._injected is not None:
            return self._injected
        if self._own is None:
            # Created lazily so that an endpoint built outside an event loop costs nothing.
            self._own = httpx.AsyncClient(timeout=self._timeout)
        return self._own

    async def aclose(self) -> None:
        """Close the client this endpoint created (an injected client is left open)."""
        own, self._own = self._own, None
        if own is not None:
            await own.aclose()

    async def __aenter__(self) -> Anthropic:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- building the request ----------------------------------------------------------
    def build_body(self, request: Request) -> dict[str, Any]:
        """Build the JSON body sent for `request` (useful for inspection and tests).

        Raises:
            ConfigError: The request uses something Anthropic does not offer.

        """
        if request.prompt is not None:
            raise ConfigError(
                "Anthropic has no raw text-completion endpoint: pass messages=... instead of prompt=..."
            )
        if request.logprobs or request.top_logprobs:
            raise ConfigError(
                "Anthropic does not return logprobs: drop logprobs/top_logprobs or use an endpoint "
                "that offers them"
            )
        if request.temperature is not None and request.temperature > 1.0:
            raise ConfigError(
                f"Anthropic accepts temperature from 0 to 1 (got {request.temperature}): "
                "lower it to at most 1"
            )
        if request.n != 1:
            raise ConfigError("Anthropic returns one completion per request: send n=1 (request() fans out n)")
        assert request.messages is not None
        system: list[str] = []
        turns: list[dict[str, str]] = []
        for m in request.messages:
            if m.role in ("system", "developer"):
                system.append(m.content)
                continue
            if m.role not in ("user", "assistant"):
                raise ConfigError(
                    f"Anthropic takes user, assistant and system messages, not {m.role!r}: "
                    "put the tool output in a user message"
                )
            if turns and turns[-1]["role"] == m.role:
                turns[-1]["content"] += "\n\n" + m.content
            else:
                turns.append({"role": m.role, "content": m.content})
        prefill = self._sent_prefill(request)
        if request.prefill is not None and turns and turns[-1]["role"] == "assistant":
            raise ConfigError(
                "the messages already end with an assistant message and a prefill was given: put "
                "the partial answer in one place (prefill=...)"
            )
        if prefill:
            turns.append({"role": "assistant", "content": prefill})
        if not turns:
            raise ConfigError("Anthropic needs at least one user message besides the system prompt")
        body: dict[str, Any] = {"model": self.model, "max_tokens": request.max_tokens, "messages": turns}
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        # Anthropic has no seed parameter; a seed only distinguishes fanned-out samples here.
        body.update(request.extra)
        return body

    @staticmethod
    def _sent_prefill(request: Request) -> str:
        # The API refuses a final assistant turn that ends in whitespace, so it is trimmed.
        return (request.prefill or "").rstrip()

    # -- sending -----------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def _send(self, request: Request) -> Response:
        body = self.build_body(request)
        try:
            reply = await self._client().post(self._url, json=body, headers=self._headers)
        except httpx.RequestError as exc:
            # Not chained: the httpx request object carries the headers, API key included.
            raise TransportError(
                f"{self.name}: request failed: {type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}",
                endpoint=self.name,
            ) from None
        if not 200 <= reply.status_code < 300:
            raise self._status_error(reply)
        return self._parse(reply, request)

    def _status_error(self, reply: httpx.Response) -> HTTPStatusError:
        status = reply.status_code
        text = self._scrub(reply.text)
        detail = text[:300]
        try:
            err = json.loads(text).get("error") or {}
            detail = f"{err.get('type', 'error')}: {err.get('message', '')}".strip()
        except (ValueError, AttributeError):
            pass
        message = f"{self.name}: HTTP {status}: {detail or reply.reason_phrase}"
        if status == 429:
            return RateLimitError(
                message,
                status_code=status,
                body=text,
                endpoint=self.name,
                retry_after=retry_after(reply.headers),
            )
        # 529 is Anthropic's "overloaded": transient, like any 5xx.
        cls = ServerError if status >= 500 else HTTPStatusError
        return cls(
            message,
            status_code=status,
            body=text,
            endpoint=self.name,
            retry_after=retry_after(reply.headers),
        )

    def _bad(self, what: str) -> ResponseError:
        return ResponseError(f"{self.name}: unusable answer: {self._scrub(what)}", endpoint=self.name)

    def _parse(self, reply: httpx.Response, request: Request) -> Response:
        try:
            data = reply.json()
        except ValueError:
            raise self._bad(f"not JSON: {reply.text[:200]!r}") from None
        if not isinstance(data, dict):
            raise self._bad(f"expected a JSON object, got {type(data).__name__}")
        if data.get("type") == "error":
            err = data.get("error")
            err = err if isinstance(err, dict) else {}
            raise self._bad(
                f"error object in a {reply.status_code} answer: {err.get('type')}: {err.get('message')}"
            )
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise self._bad("no 'content' list in the answer")
        texts: list[str] = []
        thinking = 0
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise self._bad("a text block without a string 'text'")
                texts.append(block["text"])
            elif kind in _THINKING:
                thinking += 1  # not part of the answer; its tokens are in usage.output_tokens
        text = "".join(texts)
        if request.prefill and self._sent_prefill(request) != request.prefill:
            # The caller's prefill already ends in the whitespace we trimmed: do not repeat it.
            text = text.lstrip()
        stop_reason = data.get("stop_reason")
        finish = _FINISH.get(stop_reason, stop_reason) if isinstance(stop_reason, str) else None
        usage, reported = self._usage(data.get("usage"), request, text, thinking)
        extra: dict[str, Any] = {"thinking_blocks": thinking}
        if data.get("stop_sequence") is not None:
            extra["stop_sequence"] = data["stop_sequence"]
        completion = Completion(
            text=text,
            finish_reason=finish,
            completion_tokens=usage.completion_tokens if reported else None,
        )
        return Response(
            completions=(completion,),
            usage=usage,
            model=data.get("model") if isinstance(data.get("model"), str) else self.model,
            id=data.get("id") if isinstance(data.get("id"), str) else None,
            usage_reported=reported,
            extra=extra,
        )

    def _usage(self, raw: Any, request: Request, text: str, thinking: int) -> tuple[Usage, bool]:
        if raw is None:
            # A proxy that drops usage: charge an upper bound (each token covers >= 1 byte;
            # hidden thinking can use the whole max_tokens) and mark it as estimated.
            out = request.max_tokens if thinking else min(request.max_tokens, len(text.encode()))
            return Usage(prompt_tokens=prompt_token_bound(request), completion_tokens=out), False
        if not isinstance(raw, dict):
            raise self._bad(f"'usage' is {type(raw).__name__}, expected an object")
        try:
            fresh = _count(raw, "input_tokens")
            read = _count(raw, "cache_read_input_tokens")
            write = _count(raw, "cache_creation_input_tokens")
            output = _count(raw, "output_tokens")
        except ValueError as exc:
            raise self._bad(str(exc)) from None
        # Anthropic reports fresh, cache-read and cache-write input separately; ours is the sum.
        usage = Usage(
            prompt_tokens=fresh + read + write,
            completion_tokens=output,
            cached_prompt_tokens=read,
            cache_write_tokens=write,
        )
        return usage, True
