"""Any Python callable as an endpoint: local models, stubs, or your own client code.

The callable receives the `Request` unchanged and returns text; this module turns that into a
`Response` with usage, estimating the usage when the callable does not report it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import anyio.to_thread

from .._callables import is_async_callable
from .._exceptions import ConfigError, EndpointError, ResponseError
from .._ledger import prompt_token_bound
from .._models import Completion, Request, Response, Usage
from .._prices import Price
from .._tokens import estimate_tokens
from ._base import BaseEndpoint, RetryPolicy

__all__ = ["FunctionEndpoint", "FunctionResult"]

FunctionResult: TypeAlias = str | Completion | Response | Sequence[str | Completion]
"""What the wrapped callable may return: one text or completion, a full `Response`, or a list
with one str/Completion per sample."""

_ACCEPTED = "str, Completion, Response, or a list of str/Completion (one per sample)"
_FREE = Price(input=0.0, output=0.0)


class FunctionEndpoint(BaseEndpoint):
    """Adapt a callable `fn(request) -> FunctionResult`, sync or async, into an endpoint.

    Sync callables run in a worker thread (so they do not block the event loop) unless
    `in_thread=False`. Usage comes, in order of preference, from a returned `Response`, from
    the `usage` callable, or from an estimate (prompt: `prompt_token_bound`, completion:
    ceil(UTF-8 bytes / 4) capped at `max_tokens`), in which case `usage_reported` is False.

    Exceptions raised by `fn` propagate unchanged; adaptive's retryable errors
    (`RateLimitError`, `ServerError`, `TransportError`) raised by `fn` are retried.

    Args:
        fn: The callable. It receives the full `Request` (messages or prompt, prefill, seed...).
        name: Display name; defaults to the callable's `__name__`. Never used to look up a price.
        price: Price per million tokens applied to the (reported or estimated) usage; None
            means free (a zero price, so dollar budgets accept it).
        supports_n: Whether `fn` answers `request.n` samples at once (returning a list of n);
            otherwise `n` is fanned out into n calls with `n=1` and seeds `seed + i`.
        usage: Optional `(request, completions) -> Usage` giving exact usage.
        max_concurrency: Calls in flight at once.
        in_thread: Run a sync `fn` in a worker thread (True) or directly in the event loop.
        supports_prefill: Declare that `fn` honours `request.prefill`.
        supports_raw: Declare that `fn` accepts a raw `request.prompt`.
        retry: Retry policy for the retryable adaptive errors `fn` raises.

    Example:
        >>> echo = FunctionEndpoint(lambda r: r.messages[-1].content, name="echo")

    """

    def __init__(
        self,
        fn: Callable[[Request], FunctionResult | Awaitable[FunctionResult]],
        *,
        name: str | None = None,
        price: Price | None = None,
        supports_n: bool = False,
        usage: Callable[[Request, list[Completion]], Usage] | None = None,
        max_concurrency: int = 64,
        in_thread: bool = True,
        supports_prefill: bool = False,
        supports_raw: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"fn must be a callable taking a Request (got {type(fn).__name__})")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1 (got {max_concurrency})")
        label = name if name is not None else getattr(fn, "__name__", type(fn).__name__)
        if not label:
            raise ConfigError("name is empty: pass a display name for the function endpoint")
        # An explicit price keeps BaseEndpoint from looking `label` up in genai-prices: a
        # function called "gpt-4o" must not be charged gpt-4o's price.
        fixed = price if price is not None else _FREE
        super().__init__(label, price=fixed, max_concurrency=max_concurrency, retry=retry)
        # Per-instance capabilities: a callable says what it can handle.
        self.supports_n = supports_n
        self.supports_prefill = supports_prefill
        self.supports_raw = supports_raw
        self.fn = fn
        self.usage = usage
        self.in_thread = in_thread
        self._async = is_async_callable(fn)

    async def _call(self, request: Request) -> Any:
        if self._async:
            result = self.fn(request)
        elif self.in_thread:
            result = await anyio.to_thread.run_sync(functools.partial(self.fn, request))
        else:
            result = self.fn(request)
        if inspect.isawaitable(result):  # a sync wrapper that hands back a coroutine
            result = await result
        return result

    async def _send(self, request: Request) -> Response:
        try:
            result = await self._call(request)
        except EndpointError as exc:
            if not exc.endpoint:
                exc.endpoint = self.name
            raise
        return self._to_response(result, request)

    def _bad(self, what: str) -> ResponseError:
        return ResponseError(f"{self.name}: the function {what}", endpoint=self.name)

    def _to_response(self, result: Any, request: Request) -> Response:
        if isinstance(result, Response):
            if len(result.completions) != request.n:
                raise self._bad(
                    f"returned a Response with {len(result.completions)} completions for n={request.n}"
                )
            return result
        if isinstance(result, str | Completion):
            items: list[Any] = [result]
        elif isinstance(result, list | tuple):
            items = list(result)
        else:
            raise self._bad(f"returned {type(result).__name__}; accepted: {_ACCEPTED}")
        for item in items:
            if not isinstance(item, str | Completion):
                raise self._bad(f"returned a list containing {type(item).__name__}; accepted: {_ACCEPTED}")
        if len(items) != request.n:
            raise self._bad(f"returned {len(items)} items for n={request.n}: return exactly n")
        completions = [
            Completion(text=item, finish_reason="stop", index=i)
            if isinstance(item, str)
            else item.model_copy(update={"index": i})
            for i, item in enumerate(items)
        ]
        if self.usage is not None:
            usage = self.usage(request, completions)
            if not isinstance(usage, Usage):
                raise ConfigError(
                    f"the usage callable of {self.name} returned {type(usage).__name__}: return a Usage"
                )
            reported = True
        else:
            completion = sum(estimate_tokens(len(c.text.encode()), request.max_tokens) for c in completions)
            usage = Usage(prompt_tokens=prompt_token_bound(request), completion_tokens=completion)
            reported = False
        return Response(
            completions=tuple(completions), usage=usage, model=self.model, usage_reported=reported
        )
