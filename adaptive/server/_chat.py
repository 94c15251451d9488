"""One chat call: the tenant's caps, its ledger account, `Client.run`, the answer and its receipt.

The call's budget is the request's own (or its alias's) combined with the tenant's per-call
cap and the server's timeout. A tenant with a total has its `adaptive.ledger.Account` passed
as `accounts=`: the SDK holds each request's worst case in it before sending and books the
real charge when the request ends (an answer, an error, a client that went away or a shutdown
alike), so the proxy itself never reserves or settles anything. The first request refused by
the tenant's account is a 429; a later round refused ends the call with stop reason "budget"
(a normal answer, whose receipt names the account in `stop_rule`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
import uuid
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from .._budget import Budget
from .._exceptions import AdaptiveError, BudgetExceededError, LedgerUnavailableError
from .._result import Result, TraceEvent
from ._config import ServerConfig, TenantConfig
from ._errors import APIError, from_exception
from ._request import ChatCall
from ._tenants import TenantAccounts
from ._upstream import Upstream, metered

__all__ = ["Meter", "Outcome", "completion_body", "execute", "preflight", "receipt", "usage_body"]

logger = logging.getLogger("adaptive.server")


class Meter:
    """A request's running spend, read from its events as they are emitted (sync, never blocks).

    Attributes:
        usd: Dollars booked so far (answered, failed and cancelled requests).
        tokens: Tokens of the answered requests so far.
        progress: Where live events go for a streamed answer (None: not streamed).
    """

    def __init__(self) -> None:
        self.usd = 0.0
        self.tokens = 0
        self.requests = 0
        self.progress: MemoryObjectSendStream[TraceEvent] | None = None

    def __call__(self, event: TraceEvent) -> None:
        if event.kind in ("done", "cancel", "error"):
            self.usd += float(event.data.get("usd", 0.0))
            self.requests += 1
            if event.kind == "done":
                self.tokens += int(event.data.get("tokens", 0))
        if self.progress is not None:
            # A stream that already ended needs no more progress: the receipt has every event.
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.progress.send_nowait(event)


@dataclasses.dataclass(slots=True)
class Outcome:
    """How a call ended, for the log line: status, cost, samples, stop reason."""

    status: int = 0
    cost_usd: float = 0.0
    samples: int = 0
    stop: str = ""
    note: str = ""


def receipt(result: Result) -> dict[str, Any]:
    """The `adaptive` object of an answer: what was sampled, voted, spent and why it stopped."""
    return {
        "strategy": result.strategy,
        "answer": result.answer,
        "samples": result.generated,
        "verifier_calls": len(result.samples) - result.generated,
        "votes": result.votes,
        "confidence": result.confidence,
        "cost_usd": result.cost_usd,
        "stop_reason": result.stop_reason,
        "stop_rule": result.stop.rule if result.stop is not None else "",
        "stop_detail": result.stop.detail if result.stop is not None else "",
        "rounds": result.rounds,
        "elapsed_s": result.elapsed_s,
        "charges": [
            {
                "endpoint": c.endpoint,
                "status": c.status,
                "usd": c.usd,
                "prompt_tokens": c.usage.prompt_tokens,
                "completion_tokens": c.usage.completion_tokens,
                "samples": c.samples,
                "estimated": c.estimated,
                "overrun": c.overrun,
            }
            for c in result.charges
        ],
        "warnings": list(result.warnings),
    }


def usage_body(result: Result) -> dict[str, int]:
    """OpenAI's `usage`: the sum of every internal request, verifier calls included."""
    u = result.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def finish_reason(result: Result) -> str:
    """The chosen sample's finish reason ("stop" when the upstream gave none)."""
    for s in result.samples:
        if s.purpose == "generate" and s.text == result.text and s.finish_reason:
            return "length" if s.finish_reason in ("length", "max_tokens") else "stop"
    return "stop"


def completion_body(call: ChatCall, result: Result, cid: str, created: int) -> dict[str, Any]:
    """A standard `chat.completion` object, plus the `adaptive` receipt."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text or ""},
                "finish_reason": finish_reason(result),
                "logprobs": None,
            }
        ],
        "usage": usage_body(result),
        "adaptive": receipt(result),
    }


def new_id() -> tuple[str, int]:
    """A completion id and creation time."""
    return f"chatcmpl-adaptive-{uuid.uuid4().hex[:24]}", int(time.time())


async def preflight(
    *,
    config: ServerConfig,
    upstream: Upstream,
    accounts: TenantAccounts,
    tenant: str,
    call: ChatCall,
    client_key: str | None,
) -> None:
    """Refuse, before a stream's 200 is sent, what `execute` would refuse before spending anything.

    A tenant with nothing left (429) and a dollar limit on a model with no known price (400) get
    their own status rather than an error event inside a 200 stream. `execute` still enforces
    both (this check is not a reservation: a concurrent call may take what is left meanwhile).

    Raises:
        APIError: As `execute` would, before anything is sent.
    """
    t = config.tenants.get(tenant)
    dollars = call.budget is not None and call.budget.usd is not None
    if t is not None:
        dollars = (
            dollars or t.total_usd is not None or (t.per_call is not None and t.per_call.usd is not None)
        )
        acct = accounts.account(tenant, t)
        if acct is not None:
            try:
                totals = await acct.totals()
            except LedgerUnavailableError as exc:
                raise _ledger_down(exc) from None
            used = (totals.spent.pico + totals.reserved.pico, totals.spent.tokens + totals.reserved.tokens)
            limits = (acct.limits.pico, acct.limits.tokens)
            if any(limit >= 0 and u >= limit for u, limit in zip(used, limits, strict=True)):
                raise _exhausted(tenant, t, acct.name, "counting calls still in flight")
    if dollars:
        try:
            client = await upstream.client(call.upstream_model, client_key)
        except AdaptiveError as exc:
            raise from_exception(exc) from None
        if client.endpoint.price is None:
            raise APIError(
                400,
                f"model {call.upstream_model!r} has no known price, and this call has a dollar limit: add "
                f"it to the server config's [prices] table, or drop the dollar limit",
                code="unknown_price",
                param="model",
            )


async def execute(
    *,
    config: ServerConfig,
    upstream: Upstream,
    accounts: TenantAccounts,
    tenant: str,
    call: ChatCall,
    client_key: str | None,
    meter: Meter,
    outcome: Outcome,
) -> Result:
    """Run `call` for `tenant`, its requests held against the tenant's account; return its result.

    Raises:
        APIError: Every refusal and failure, OpenAI-style (with the receipt when money was spent).
    """
    t = config.tenants.get(tenant)
    budget = call.budget
    if t is not None and t.per_call is not None:
        budget = t.per_call if budget is None else budget & t.per_call
    timeout = config.limits.timeout_seconds
    server_deadline = budget is None or budget.seconds is None or budget.seconds > timeout
    budget = Budget(seconds=timeout) if budget is None else budget & Budget(seconds=timeout)
    acct = accounts.account(tenant, t) if t is not None else None
    try:
        client = await upstream.client(call.upstream_model, client_key)
        with metered(meter):
            result = await client.run(
                call.messages,
                strategy=call.strategy,
                budget=budget,
                seed=call.seed,
                max_tokens=call.max_tokens,
                temperature=call.temperature,
                accounts=[acct] if acct is not None else (),
            )
    except AdaptiveError as exc:
        partial = exc.receipt if isinstance(exc.receipt, Result) else None
        outcome.cost_usd = partial.cost_usd if partial is not None else meter.usd
        if acct is not None and isinstance(exc, BudgetExceededError) and exc.account == acct.name:
            # The tenant's account refused the first request: nothing was sent.
            raise _exhausted(tenant, t, acct.name, str(exc)) from None
        if isinstance(exc, LedgerUnavailableError):
            raise _ledger_down(exc) from None
        raise from_exception(exc, receipt=receipt(partial) if partial is not None else None) from None
    except BaseException:
        # Cancelled (the client went away, or shutdown): the SDK booked every request's charge
        # on the tenant's account (cut requests included) before this unwinds.
        outcome.cost_usd = meter.usd
        outcome.note = "cancelled (client gone or shutdown); what it spent is charged"
        raise
    outcome.cost_usd = result.cost_usd
    outcome.samples = result.generated
    outcome.stop = result.stop_reason
    if result.stop_reason == "deadline" and server_deadline:
        raise APIError(
            504,
            f"the call ran past the server's timeout of {timeout:g} s and was stopped; the receipt "
            "has what it spent (raise limits.timeout_seconds, or give a smaller budget)",
            type="timeout_error",
            code="timeout",
            adaptive=receipt(result),
        )
    return result


def _exhausted(tenant: str, t: TenantConfig | None, account: str, detail: str) -> APIError:
    """The 429 for a tenant whose total cannot fit one more request."""
    total = []
    if t is not None and t.total_usd is not None:
        total.append(f"${t.total_usd:g}")
    if t is not None and t.total_tokens is not None:
        total.append(f"{t.total_tokens} tokens")
    when = " today (UTC; it resets at 00:00 UTC)" if t is not None and t.period == "day" else ""
    return APIError(
        429,
        f"tenant {tenant!r} has too little left of its total of {' / '.join(total)}{when} for this "
        f"call's first request (ledger account {account!r}: {detail}): wait for calls in flight to "
        "finish, ask for less (max_tokens, a smaller n), or raise the tenant's total in the server config",
        type="insufficient_quota",
        code="tenant_budget_exhausted",
    )


def _ledger_down(exc: LedgerUnavailableError) -> APIError:
    """The 503 for a shared ledger that cannot be reached (fail closed: nothing was sent)."""
    return APIError(
        503,
        f"the tenants' ledger is unreachable, so nothing was sent: {exc}",
        type="server_error",
        code="ledger_unavailable",
        headers={"Retry-After": "1"},
    )


def format_cost(usd: float) -> str:
    """Dollars for a header: fixed point, no exponent."""
    return f"{usd:.9f}" if math.isfinite(usd) else "0"
