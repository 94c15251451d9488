"""The one exception tree of adaptive.

Every error the SDK raises derives from `AdaptiveError`; errors caused by bad input also
derive from `ValueError`, so `except ValueError` keeps working for callers who expect it::

    AdaptiveError
    ├── ConfigError (ValueError)          bad input: budgets, sampling parameters, messages
    │   └── UnknownPriceError             a dollar budget on a model with no known price
    ├── BudgetExceededError               a request cannot fit in what is left of the budget
    │   └── BudgetTooSmallError           the budget cannot fit the call's first request
    ├── LedgerError                       the ledger could not book a charge (a bug: report it)
    ├── LedgerUnavailableError            a shared ledger (Redis) cannot be reached: not sent
    ├── ClientClosedError                 a client or endpoint used after it was closed
    └── EndpointError                     anything that went wrong talking to a model
        ├── TransportError                connect / read timeouts and network failures
        ├── HTTPStatusError               a non-2xx answer (keeps status_code and body)
        │   ├── RateLimitError            429
        │   └── ServerError               5xx
        └── ResponseError                 a 2xx answer we cannot use: malformed JSON, an
            │                             error object in a 200 body, a missing field,
            │                             usage or choices that fail validation
            └── StreamError               a stream that ended before it was complete

One more `EndpointError` lives with the machinery that raises it: `adaptive.endpoints.
PartialResponseError`, raised when some of the parallel requests a fanned-out `n` became
failed (it keeps what the others returned and what they cost).

Errors raised while a run has already spent money carry that run's `receipt` (a partial
`Result`), so nothing already paid for is lost.

What a failed request cost: every `EndpointError` has `usage`, the usage the failed request
is known to have been billed. `Usage()` (zero) means the provider bills nothing (a non-2xx
answer, a connection never made); a `Usage` with counts is what the server reported (or a
stream counted) and passed validation; None means it is unknown or not credible, so the
ledger must charge the request's reserved worst case.

Endpoint errors never carry a chain back to an HTTP library's request object (which holds
the credentials): `__cause__` and `__context__` are either None or another adaptive error.

What a run did instead of what was asked, when it could still answer (a fallback taken: a
vote without the asked-for weights, a search that kept unscored candidates), is never
silent either: it is an entry of `Final.warnings` (copied onto the result) and is also
emitted as an `AdaptiveWarning` (a `UserWarning`), so `warnings.filterwarnings` can turn it
into an error or hide it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # _models imports this module: the types are for annotations only
    from ._models import Response, Usage

# `AdaptiveWarning` is not listed: the public surface is full, and it is reached as
# `Final.Warning` (this list is the error tree, every name of it exported from adaptive).
__all__ = [
    "AdaptiveError",
    "BudgetExceededError",
    "BudgetTooSmallError",
    "ClientClosedError",
    "ConfigError",
    "EndpointError",
    "HTTPStatusError",
    "LedgerError",
    "LedgerUnavailableError",
    "RateLimitError",
    "ResponseError",
    "ServerError",
    "StreamError",
    "TransportError",
    "UnknownPriceError",
]


class AdaptiveError(Exception):
    """Base class of every error raised by adaptive.

    Attributes:
        receipt: The partial `Result` of the run that raised, when money was already spent.
    """

    receipt: Any = None

    def with_receipt(self, receipt: Any) -> AdaptiveError:
        """Attach the partial result of the run that failed and return self."""
        self.receipt = receipt
        return self


class AdaptiveWarning(UserWarning):
    """A fallback a run took: it answered, but not quite as configured.

    Emitted with `warnings.warn` when a strategy's `Final` carries warnings; the same text is
    kept in `Final.warnings`. Reach the class as `Final.Warning` (or filter on `UserWarning`).
    """


class ConfigError(AdaptiveError, ValueError):
    """Bad input: the message says which value is wrong and how to fix it."""


class UnknownPriceError(ConfigError):
    """A dollar budget was set for a model whose price is not known.

    Give the price explicitly (`price=Price(input=..., output=...)` on the endpoint or the
    call) or drop the dollar limit; adaptive never guesses a price.
    """


class BudgetExceededError(AdaptiveError):
    """A request cannot fit in what is left of the budget.

    Attributes:
        dimension: Which limit refused it: "usd", "tokens", "samples" or "seconds".
        account: The shared account (`adaptive.ledger.Account`) whose limit refused it, or
            None for the call's own budget.
    """

    def __init__(self, message: str, *, dimension: str, account: str | None = None) -> None:
        super().__init__(message)
        self.dimension = dimension
        self.account = account


class BudgetTooSmallError(BudgetExceededError):
    """The budget cannot fit even the first request of the call; nothing was sent.

    Raised instead of returning an empty result: the message gives the smallest budget that
    fits this request and the `max_tokens` that would fit this budget (or pass
    `ControllerConfig(shrink_max_tokens=True)` to have it lowered automatically).

    Attributes:
        dimension: The limit that binds: "usd", "tokens" or "samples".
        smallest: The smallest value of that limit that fits the request.
        max_tokens: The largest `max_tokens` whose worst case fits this budget (0: none).
    """

    def __init__(self, message: str, *, dimension: str, smallest: float, max_tokens: int) -> None:
        super().__init__(message, dimension=dimension)
        self.smallest = smallest
        self.max_tokens = max_tokens


class LedgerError(AdaptiveError):
    """The ledger could not book a charge (an internal failure; `__cause__` has the original).

    The call ends at once; its `receipt` has everything booked before.
    """


class LedgerUnavailableError(AdaptiveError):
    """A shared ledger backend (Redis) could not be reached, so nothing could be reserved.

    The ledger fails closed: a request whose cost cannot be reserved against every shared
    account it belongs to is never sent. Requests already in flight keep their leases, which
    are settled at their reserved worst case if they cannot be settled in time. Exported from
    `adaptive.ledger` (the top-level names are full).

    Attributes:
        backend: The backend's description (its URL without credentials).
    """

    def __init__(self, message: str, *, backend: str = "") -> None:
        super().__init__(message)
        self.backend = backend


class ClientClosedError(AdaptiveError):
    """A `Client`, `SyncClient` or endpoint was used after it was closed.

    Closing releases the connection pool; using the object again would silently open a new
    one that nothing closes. Make a new client (or endpoint) instead.
    """


class EndpointError(AdaptiveError):
    """A model endpoint failed.

    Attributes:
        endpoint: The endpoint's display name (never its credentials).
        usage: What the failed request is known to have been billed: `Usage()` when the
            provider bills nothing, the reported (validated) or stream-counted usage when
            known, None when unknown -- then charge the reserved worst case.
    """

    usage: Usage | None = None

    def __init__(self, message: str, *, endpoint: str = "", usage: Usage | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.usage = usage


class TransportError(EndpointError):
    """The request could not be delivered or its answer not read (after retries).

    `usage` is `Usage()` when the connection was never made (nothing was sent), else None:
    the server may have generated (and billed) an answer that never arrived.
    """


class HTTPStatusError(EndpointError):
    """The server answered with a non-2xx status.

    Attributes:
        status_code: The HTTP status.
        body: The response body as text (truncated to 2,000 characters).
        retry_after: Seconds from a `Retry-After` header, if the server sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str,
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        from ._models import Usage

        # A non-2xx answer is not billed by the providers adaptive talks to.
        super().__init__(message, endpoint=endpoint, usage=Usage())
        self.status_code = status_code
        self.body = body[:2000]
        self.retry_after = retry_after


class RateLimitError(HTTPStatusError):
    """HTTP 429: retried with backoff, raised when retries are used up."""


class ServerError(HTTPStatusError):
    """HTTP 5xx: retried with backoff, raised when retries are used up."""


class ResponseError(EndpointError):
    """A 2xx answer that cannot be used, so none of its completions count.

    Malformed JSON, an error body, a missing field, or an answer that fails validation:
    usage that is negative, boolean, not an integer or not credible; a choice count other
    than the request's `n`; a duplicate or out-of-range choice index.

    Attributes:
        usage: The usage the server reported when it passed validation (the answer was
            billed even though it cannot be used); None when it was missing or failed
            validation -- charge the reserved worst case.
        choices: For an answer refused for its choices (a count other than `n`, a repeated
            or out-of-range index): how many choices the server returned, each counted once
            (two choices sent under one index count two); more than `n` is an overrun.
            None for any other unusable answer.
    """

    def __init__(
        self, message: str, *, endpoint: str = "", usage: Usage | None = None, choices: int | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint, usage=usage)
        self.choices = choices


class StreamError(ResponseError):
    """A streamed answer ended before it was complete.

    Attributes:
        partial: The `Response` assembled from what arrived, with its counted usage.
        usage: `partial.usage` (what the stream counted or the server reported).
    """

    def __init__(self, message: str, *, endpoint: str = "", partial: Response | None = None) -> None:
        super().__init__(message, endpoint=endpoint, usage=getattr(partial, "usage", None))
        self.partial: Response | None = partial
