"""One chat call: the tenant's caps, the reservation, `Client.run`, the answer and its receipt.

The call's budget is the request's own (or its alias's) combined with the tenant's per-call
cap and the server's timeout, then shrunk to what the tenant has left (`Account.reserve`).
Whatever the call spends, an answer, an error, a client that went away or a shutdown, is
settled on the tenant's account: its events are metered as they are emitted, so even the
requests a cancellation cut short are charged.
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
from .._exceptions import AdaptiveError, BudgetTooSmallError
from .._result import Result, TraceEvent
from ._config import ServerConfig
from ._errors import APIError, from_exception
from ._request import ChatCall
from ._tenants import Account, Reservation
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


async def _settle(account: Account, r: Reservation | None, usd: float, tokens: int) -> None:
    if r is not None:
        with anyio.CancelScope(shield=True):  # a cancelled call is charged all the same
            await account.settle(r, usd=usd, tokens=tokens)


async def preflight(
    *,
    config: ServerConfig,
    upstream: Upstream,
    account: Account,
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
        if t.total_usd is not None or t.total_tokens is not None:
            spend = await account.spent(tenant)
            used_usd = spend.usd + spend.reserved_usd
            used_tokens = spend.tokens + spend.reserved_tokens
            if (t.total_usd is not None and used_usd >= t.total_usd) or (
                t.total_tokens is not None and used_tokens >= t.total_tokens
            ):
                raise APIError(
                    429,
                    f"tenant {tenant!r} has spent its total, counting calls still in flight: wait for "
                    "them to finish, or raise the tenant's total in the server config",
                    type="insufficient_quota",
                    code="tenant_budget_exhausted",
                )
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
    account: Account,
    tenant: str,
    call: ChatCall,
    client_key: str | None,
    meter: Meter,
    outcome: Outcome,
) -> Result:
    """Run `call` for `tenant`, settle what it spent, and return its result.

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
    reservation: Reservation | None = None
    tenant_bound = False
    if t is not None and (t.total_usd is not None or t.total_tokens is not None):
        reservation = await account.reserve(tenant, t, usd=budget.usd, tokens=budget.tokens)
        usd = reservation.usd if reservation.usd is not None else budget.usd
        tokens = reservation.tokens if reservation.tokens is not None else budget.tokens
        tenant_bound = (usd is not None and (budget.usd is None or usd < budget.usd)) or (
            tokens is not None and (budget.tokens is None or tokens < budget.tokens)
        )
        budget = Budget(usd=usd, tokens=tokens, samples=budget.samples, seconds=budget.seconds)
    spent_tokens = 0
    usd_spent = 0.0
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
            )
    except AdaptiveError as exc:
        partial = exc.receipt if isinstance(exc.receipt, Result) else None
        usd_spent = partial.cost_usd if partial is not None else meter.usd
        spent_tokens = partial.usage.total_tokens if partial is not None else meter.tokens
        outcome.cost_usd = usd_spent
        if isinstance(exc, BudgetTooSmallError) and tenant_bound:
            raise APIError(
                429,
                f"tenant {tenant!r} has too little of its total left for even one request of this call "
                f"({exc})",
                type="insufficient_quota",
                code="tenant_budget_exhausted",
            ) from None
        raise from_exception(exc, receipt=receipt(partial) if partial is not None else None) from None
    except BaseException:
        # Cancelled (the client went away, or shutdown): the meter saw every charge, the
        # cancelled requests' included. Tokens of cut requests are unknown: the hold is booked.
        usd_spent = meter.usd
        spent_tokens = reservation.tokens if reservation is not None and reservation.tokens else meter.tokens
        outcome.cost_usd = usd_spent
        outcome.note = "cancelled (client gone or shutdown); what it spent is charged"
        raise
    else:
        usd_spent, spent_tokens = result.cost_usd, result.usage.total_tokens
        outcome.cost_usd = usd_spent
        outcome.samples = result.generated
        outcome.stop = result.stop_reason
    finally:
        await _settle(account, reservation, usd_spent, spent_tokens)
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


def format_cost(usd: float) -> str:
    """Dollars for a header: fixed point, no exponent."""
    return f"{usd:.9f}" if math.isfinite(usd) else "0"
