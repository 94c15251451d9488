"""The endpoint contract and what every endpoint shares: price, concurrency limit, retries.

An endpoint turns one `Request` into one `Response` and decides nothing: no budgets, no
stopping. `Endpoint` declares every member the SDK uses; `BaseEndpoint` gives each a default.
Implementations override `_send`; `request` wraps it with the concurrency limiter, retries
with backoff, and fan-out of `n` into parallel single requests where the server cannot do
`n` in one call.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

import anyio
from pydantic import Field

from .._exceptions import (
    AdaptiveError,
    ConfigError,
    EndpointError,
    HTTPStatusError,
    RateLimitError,
    ServerError,
    TransportError,
)
from .._ledger import prompt_token_bound
from .._models import Completion, Request, Response, TokenLogprob, Usage, ValidatedModel
from .._prices import Price, lookup_price

__all__ = [
    "BaseEndpoint",
    "Endpoint",
    "PartialResponseError",
    "RetryPolicy",
    "UsageMeter",
    "current_meter",
    "detach",
    "merge_responses",
    "prompt_copies",
    "retry_after",
]


_T = TypeVar("_T")
_E = TypeVar("_E", bound=BaseException)


def detach(error: _E) -> _E:
    """Cut `error`'s chain below the adaptive errors in it, and return it.

    `raise ... from None` hides a cause from tracebacks but keeps it in `__context__`; an
    HTTP library's exception there holds the request, whose headers carry the API key. So
    every link that is not an adaptive error is dropped (adaptive errors are built to hold
    no secrets), walking down through the ones that are.
    """
    link: BaseException | None = error
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        nxt = link.__cause__ if link.__cause__ is not None else link.__context__
        if not isinstance(nxt, AdaptiveError):
            nxt = None
        link.__cause__ = nxt  # also sets __suppress_context__
        link.__context__ = None
        for inner in getattr(link, "errors", None) or ():  # a PartialResponseError's
            if isinstance(inner, BaseException):
                detach(inner)
        link = nxt
    return error


class PartialResponseError(EndpointError):
    """Some of the parallel single requests that a fanned-out `n` became failed.

    An endpoint whose server cannot return `n > 1` completions sends `n` requests; the ones
    that succeeded were billed, so their completions and usage travel with the error. The
    message names the first failure.

    Attributes:
        partial: A `Response` with the completions (and summed usage) of the requests that
            succeeded; no completions when every one failed.
        errors: The error of each failed request, in request order (each has its `usage`;
            one from an endpoint's user code, such as a `FunctionEndpoint`'s, may be any
            exception).
        usage: All the usage known to be billed: `partial.usage` plus every failed request's
            `usage`; None when any failed request's usage is unknown (charge the worst case
            of those -- `partial.usage` is still exact for the ones that succeeded).
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        partial: Response,
        errors: tuple[Exception, ...],
    ) -> None:
        total: Usage | None = partial.usage
        for error in errors:
            used = getattr(error, "usage", None)  # a non-adaptive error (user code): unknown
            total = None if total is None or not isinstance(used, Usage) else total + used
        super().__init__(message, endpoint=endpoint, usage=total)
        self.partial = partial
        self.errors = errors


@runtime_checkable
class Endpoint(Protocol):
    """The model contract: every member the client, controller and ledger use.

    `BaseEndpoint` implements all of it; an endpoint written from scratch declares each one.

    Attributes:
        name: Display name (model and host; never credentials).
        price: Price per million tokens, or None when free / unknown.
        supports_n: Whether one request can return `n > 1` completions (prompt billed once).
        supports_prefill: Whether a chat request may carry an assistant `prefill`.
        supports_raw: Whether a raw `prompt` (text continuation) is accepted.

    Streaming is not a separate method here: an endpoint that streams does it inside
    `request` and keeps the task's `UsageMeter` (see `current_meter`) up to date while the
    answer arrives, so a request cancelled part-way is charged what it used. One that cannot
    count partial usage leaves the meter alone and is charged its reserved worst case.
    """

    price: Price | None
    supports_n: bool
    supports_prefill: bool
    supports_raw: bool

    @property
    def name(self) -> str:
        """Display name (model and host; never credentials)."""
        ...

    async def request(self, request: Request) -> Response:
        """Send `request` and return its completions with exact usage.

        While it runs, usage counted so far goes to `current_meter()` when one is installed.
        """
        ...

    def prompt_copies(self, request: Request) -> int:
        """How many times the prompt of `request` is billed (1, or `n` when `n` fans out)."""
        ...

    async def aclose(self) -> None:
        """Release what the endpoint holds (connections); an injected client stays open."""
        ...


@dataclasses.dataclass
class UsageMeter:
    """Usage counted so far by a streaming request, read by the ledger if it is cancelled.

    Attributes:
        usage: What the stream counted so far (None: nothing yet).
        samples: Completions seen so far.
        streams: Streams that counted into this meter (a fanned-out request has several).
        prompts_reported: Of those, the ones whose prompt count is the server's report
            (the others count the request's byte bound); see `prompt_reported`.
        finished: For a fanned-out request cancelled before all its parts answered: the
            parts that had answered, merged (their reported usage, checked against each
            part's share of the bound, so an overrun among them shows), else None.
    """

    usage: Usage | None = None
    samples: int = 0
    streams: int = 0
    prompts_reported: int = 0
    finished: Response | None = None

    @property
    def prompt_reported(self) -> bool:
        """Whether the prompt count in `usage` is the server's for every stream counted."""
        return self.streams > 0 and self.prompts_reported == self.streams

    def tokens(self, index: int, logprobs: Sequence[TokenLogprob]) -> None:
        """Told of streamed tokens (with their logprobs) as they arrive, for choice `index`.

        A streaming endpoint that reads logprobs calls it for every chunk that carries some,
        so a caller can watch a trace while it is written (and cut it: see `Plan.watch`).
        This default ignores them.
        """

    def before_retry(self, error: BaseException) -> bool:
        """Asked before an endpoint retries an attempt the server may have billed.

        The endpoint's retry loop calls it when `error` (a retryable failure) carries usage
        that is unknown or not zero. The caller's meter books that attempt here; False
        refuses the retry and the endpoint raises `error`. This default allows it.

        Args:
            error: The failure of the attempt about to be retried.
        """
        return True

    def retrying(self, error: BaseException) -> None:
        """Told before an endpoint retries an attempt nothing was billed for (an HTTP error status).

        Nothing is booked; the caller records that the attempt failed and is retried, so no
        retry goes unseen. This default does nothing.

        Args:
            error: The failure of the attempt about to be retried.
        """


_meter: contextvars.ContextVar[UsageMeter | None] = contextvars.ContextVar("adaptive_meter", default=None)


def current_meter() -> UsageMeter | None:
    """The meter of the request being sent in this task, if the caller installed one."""
    return _meter.get()


def set_meter(meter: UsageMeter | None) -> contextvars.Token[UsageMeter | None]:
    """Install `meter` for requests sent from the current task."""
    return _meter.set(meter)


class RetryPolicy(ValidatedModel):
    """Retries on 429, 5xx and transport errors: exponential backoff with full jitter.

    A `Retry-After` header wins over the computed wait (capped at `max_wait`). Other 4xx
    answers are never retried.

    Args:
        attempts: Total tries, the first included (1 disables retrying).
        initial_wait: Base of the exponential backoff, seconds.
        max_wait: Cap on any single wait, seconds.
    """

    # Strict: a boolean or a numeric string is a mistake to report, not a value to coerce.
    attempts: int = Field(default=4, ge=1, le=20, strict=True)
    initial_wait: float = Field(default=0.5, ge=0, allow_inf_nan=False, strict=True)
    max_wait: float = Field(default=30.0, ge=0, allow_inf_nan=False, strict=True)

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether `exc` is worth another try."""
        return isinstance(exc, RateLimitError | ServerError | TransportError)

    def delay(self, exc: BaseException | None, attempt_number: int) -> float:
        """Seconds to wait after attempt `attempt_number` (1-based) failed with `exc`."""
        if isinstance(exc, HTTPStatusError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.max_wait)
        ceiling = min(self.max_wait, self.initial_wait * 2 ** (attempt_number - 1))
        return random.uniform(0, ceiling)

    async def call(self, fn: Callable[[], Awaitable[_T]]) -> _T:
        """Await `fn()`, retrying what `is_retryable` accepts with this policy's waits.

        Before retrying an attempt the server may have billed (its error's `usage` is None,
        unknown, or not zero), the current `UsageMeter`'s `before_retry` is asked; when it
        refuses, the error is raised instead of retrying.
        """
        # A plain loop (no tenacity: ~30 us per call even when nothing fails, and its retry
        # predicate runs on the last attempt too, where asking the meter would book twice).
        attempt = 1
        while True:
            try:
                return await fn()
            except Exception as exc:
                if attempt >= self.attempts or not self.is_retryable(exc) or not _may_retry(exc):
                    raise
                await anyio.sleep(self.delay(exc, attempt))
                attempt += 1


def _may_retry(exc: BaseException) -> bool:
    """Whether the current meter lets a retry follow `exc` (asked only when it may be billed)."""
    used = getattr(exc, "usage", None)
    meter = current_meter()
    if isinstance(used, Usage) and used.total_tokens == 0:
        if meter is not None:  # nothing was billed (an HTTP error status, no connection made)
            meter.retrying(exc)
        return True
    return meter is None or bool(meter.before_retry(exc))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (delta-seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        with contextlib.suppress(ValueError):
            return max(float(ms) / 1000.0, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def prompt_copies(endpoint: Endpoint, request: Request) -> int:
    """How many times `endpoint` bills the prompt of `request`.

    Once when the server does `n` in one request; `n` times when the endpoint fans out
    parallel single requests (each endpoint says which, see `Endpoint.prompt_copies`).
    """
    return int(endpoint.prompt_copies(request))


def merge_responses(responses: list[Response], request: Request | None = None) -> Response:
    """Join single-completion responses into one, renumbering completions.

    Usage is summed, and reported only when every response reported it. With `request` (the
    single request each response answers), each response is first checked against its own
    share of the bound: its reported prompt within the request's prompt bound, its
    completion within `max_tokens`, one completion. A sum would hide one that exceeds it
    (an inflated prompt, an ignored `max_tokens`), so then the merged usage is stated as
    that many copies of the largest reported prompt and completion (each at least the sum)
    and as reported: it exceeds the reservation of the fanned-out request, and the ledger
    books the answer as an overrun.

    Args:
        responses: The answers of the single requests, in request order.
        request: The single request they answer (None: sum without checking).
    """
    completions: list[Completion] = []
    usage = Usage()
    reported = True
    for r in responses:
        usage = usage + r.usage
        reported = reported and r.usage_reported
        for c in r.completions:
            completions.append(c.model_copy(update={"index": len(completions)}))
    if request is not None and _over_share(responses, request):
        known = [r.usage for r in responses if r.usage_reported]
        copies = len(responses)
        usage = usage.model_copy(
            update={
                "prompt_tokens": max(usage.prompt_tokens, copies * max(u.prompt_tokens for u in known)),
                "completion_tokens": max(
                    usage.completion_tokens, copies * max(u.completion_tokens for u in known)
                ),
            }
        )
        reported = True
    model = responses[0].model if responses else None
    return Response(completions=tuple(completions), usage=usage, model=model, usage_reported=reported)


def _over_share(responses: list[Response], request: Request) -> bool:
    """Whether a response with reported usage exceeds what its single `request` allows."""
    bound = prompt_token_bound(request)
    for r in responses:
        if not r.usage_reported:
            continue  # an estimate: within the bound by construction
        used = r.usage
        if used.prompt_tokens > bound or used.completion_tokens > request.max_tokens:
            return True
        if len(r.completions) > 1:
            return True
    return False


class BaseEndpoint:
    """Shared machinery for endpoints: subclasses implement `_send`.

    Args:
        model: The model name sent to the server and used to look up its price.
        price: Overrides the looked-up price (required for a dollar budget on a model
            genai-prices does not know, such as a local server's).
        provider: Provider id for the price lookup ("openai", "anthropic", ...).
        max_concurrency: Requests in flight at once through this endpoint.
        retry: Retry policy for 429, 5xx and transport errors.
    """

    # Capabilities are plain attributes so an instance can override them (some servers
    # behind the same protocol lack `n` or prefill).
    supports_n: bool = False
    supports_prefill: bool = False
    supports_raw: bool = False
    provider: ClassVar[str | None] = None

    def __init__(
        self,
        model: str,
        *,
        price: Price | None = None,
        provider: str | None = None,
        max_concurrency: int = 64,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.model = model
        self._provider = provider or self.provider
        self.price = price if price is not None else lookup_price(model, self._provider)
        self.limiter = anyio.CapacityLimiter(max_concurrency)
        self.retry = retry or RetryPolicy()

    @property
    def name(self) -> str:
        """Display name: the model and the endpoint kind."""
        return f"{type(self).__name__}({self.model})"

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def prompt_copies(self, request: Request) -> int:
        """How many times the prompt of `request` is billed."""
        return 1 if self.supports_n else request.n

    async def request(self, request: Request) -> Response:
        """Send `request` (fanning out `n` when the server cannot) with retries.

        Raises:
            ConfigError: A request this endpoint cannot take (nothing was sent).
            EndpointError: The request failed; a fanned-out one that partly or wholly failed
                raises `PartialResponseError` (never an `ExceptionGroup`).
        """
        try:
            if request.n > 1 and not self.supports_n:
                return await self._fan_out(request)
            return await self._attempt(request)
        except AdaptiveError as exc:
            detach(exc)
            raise

    async def _fan_out(self, request: Request) -> Response:
        single = request.model_copy(update={"n": 1})
        results: list[Response | None] = [None] * request.n
        errors: list[Exception | None] = [None] * request.n

        async def one(i: int) -> None:
            seeded = single
            if single.seed is not None:
                seeded = single.model_copy(update={"seed": single.seed + i})
            # Caught per request: a failure must not cancel the siblings, whose answers are
            # billed whatever happens, and a task group would wrap it in an ExceptionGroup.
            try:
                results[i] = await self._attempt(seeded)
            except Exception as exc:
                errors[i] = exc

        try:
            async with anyio.create_task_group() as tg:
                for i in range(request.n):
                    tg.start_soon(one, i)
        except anyio.get_cancelled_exc_class():
            # Cut (a deadline, an early stop) after some parts answered: those answers were
            # billed and may have overrun, so the meter keeps them for the cancelled charge.
            done = [r for r in results if r is not None]
            meter = current_meter()
            if done and meter is not None:
                meter.finished = merge_responses(done, single)
            raise
        failed = [e for e in errors if e is not None]
        if not failed:
            return merge_responses([r for r in results if r is not None], single)
        for e in failed:
            if isinstance(e, ConfigError):  # the request itself is wrong: every copy failed alike
                raise e
        partial = merge_responses([r for r in results if r is not None], single)
        first = failed[0]
        error = PartialResponseError(
            f"{self.name}: {len(failed)} of the {request.n} parallel requests that n={request.n} "
            f"was sent as failed; first: {type(first).__name__}: {first}",
            endpoint=self.name,
            partial=partial,
            errors=tuple(failed),
        )
        if isinstance(first, AdaptiveError):
            error.__cause__ = first  # shown in tracebacks; adaptive errors hold no secrets
        raise error

    async def _attempt(self, request: Request) -> Response:
        # A free slot is taken without the limiter's two extra checkpoints (the hot path).
        limiter = self.limiter
        try:
            limiter.acquire_nowait()
        except anyio.WouldBlock:
            await limiter.acquire()
        try:
            return await self.retry.call(lambda: self._send(request))
        finally:
            limiter.release()

    async def _send(self, request: Request) -> Response:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the endpoint holds; nothing by default."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Subclasses may hold secrets: never let default object state leak through pickling/logs.
    def __getstate__(self) -> Any:  # pragma: no cover - defensive
        raise TypeError(f"{type(self).__name__} cannot be pickled (it may hold credentials)")
