"""OpenAI-style error answers, and the mapping from the SDK's errors to them.

Every refusal is `{"error": {"message", "type", "code", "param"}}` with the status an OpenAI
client turns into the right exception (400 BadRequestError, 401 AuthenticationError, 403
PermissionDeniedError, 429 RateLimitError, ...). An error raised after money was spent also
carries the call's receipt under `"adaptive"`, so nothing already paid for goes unreported.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from .._exceptions import (
    AdaptiveError,
    BudgetTooSmallError,
    ConfigError,
    EndpointError,
    HTTPStatusError,
    ResponseError,
    TransportError,
)

__all__ = ["APIError", "from_exception"]


class APIError(AdaptiveError):
    """A request the proxy answers with an OpenAI-style error.

    Attributes:
        status: The HTTP status.
        type: OpenAI's error type (`invalid_request_error`, `authentication_error`, ...).
        code: A machine-readable code (`tenant_budget_exhausted`, `upstream_auth`, ...).
        param: The request parameter at fault, if any.
        adaptive: The receipt of what the call spent, when it spent anything.
        headers: Extra response headers (`Retry-After`).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # OpenAI's field name
        code: str | None = None,
        param: str | None = None,
        adaptive: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.adaptive = adaptive
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body (also sent as an SSE event when a stream fails)."""
        out: dict[str, Any] = {
            "error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}
        }
        if self.adaptive is not None:
            out["adaptive"] = self.adaptive
        return out

    def response(self) -> JSONResponse:
        """The error as a Starlette response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_exception(exc: Exception, *, receipt: dict[str, Any] | None = None) -> APIError:
    """The answer for an error a call raised (the SDK's tree mapped to statuses).

    Upstream 401/403 -> 502 `upstream_auth` (the server's key is wrong, not the client's);
    upstream 429 -> 429; upstream 5xx -> 502; other upstream 4xx -> 400; transport timeouts
    -> 504, other transport failures -> 502; unusable upstream answers -> 502; bad input
    (`ConfigError`, an unknown price under a dollar budget, a budget too small for one
    request) -> 400.
    """
    if isinstance(exc, APIError):
        return exc
    msg = str(exc)
    if isinstance(exc, BudgetTooSmallError):
        return APIError(400, msg, code="budget_too_small", param="adaptive.budget", adaptive=receipt)
    if isinstance(exc, ConfigError):
        return APIError(400, msg, code="invalid_config", adaptive=receipt)
    if isinstance(exc, HTTPStatusError):
        s = exc.status_code
        if s in (401, 403):
            return APIError(
                502,
                f"upstream auth: the upstream refused the proxy's credentials ({s}): {msg}",
                type="upstream_error",
                code="upstream_auth",
                adaptive=receipt,
            )
        if s == 429:
            headers = {"Retry-After": f"{exc.retry_after:g}"} if exc.retry_after is not None else None
            return APIError(
                429,
                f"upstream rate limit: {msg}",
                type="rate_limit_error",
                code="upstream_rate_limited",
                adaptive=receipt,
                headers=headers,
            )
        if s >= 500:
            return APIError(
                502,
                f"upstream error ({s}): {msg}",
                type="upstream_error",
                code="upstream_error",
                adaptive=receipt,
            )
        return APIError(
            400, f"upstream refused the request ({s}): {msg}", code="upstream_rejected", adaptive=receipt
        )
    if isinstance(exc, TransportError):
        if "timed out" in msg.lower() or "timeout" in msg.lower():
            return APIError(
                504,
                f"upstream timeout: {msg}",
                type="upstream_error",
                code="upstream_timeout",
                adaptive=receipt,
            )
        return APIError(
            502,
            f"upstream unreachable: {msg}",
            type="upstream_error",
            code="upstream_unreachable",
            adaptive=receipt,
        )
    if isinstance(exc, ResponseError):
        return APIError(
            502,
            f"upstream answered unusably: {msg}",
            type="upstream_error",
            code="upstream_bad_response",
            adaptive=receipt,
        )
    if isinstance(exc, EndpointError):
        return APIError(
            502, f"upstream failed: {msg}", type="upstream_error", code="upstream_error", adaptive=receipt
        )
    return APIError(
        500,
        f"internal error ({type(exc).__name__}): {msg}",
        type="server_error",
        code="internal_error",
        adaptive=receipt,
    )
