"""Tenants' running totals: reserve a call's worst case, settle what it really spent.

A call reserves its worst case (its dollar and token caps, shrunk to what the tenant has
left) before anything is sent, and settles the real spend once it ends (cancelled and failed
requests included). Reservations count against what is left, so any number of concurrent
calls can never together exceed a tenant's total. The `Account` protocol (reserve / settle /
release) is all the server uses, so a shared backend (Redis) can replace `InMemoryAccount`.
Money is kept in integer picodollars, as the SDK's ledger keeps it.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
from typing import Protocol, runtime_checkable

import anyio

from .._prices import pico_to_usd, usd_to_pico
from ._config import TenantConfig
from ._errors import APIError

__all__ = ["Account", "InMemoryAccount", "Reservation", "Spend"]

logger = logging.getLogger("adaptive.server")


@dataclasses.dataclass(frozen=True, slots=True)
class Reservation:
    """What one call holds of a tenant's total until it settles.

    Attributes:
        tenant: The tenant's name.
        period: The period it is booked in ("" for an absolute total, else the UTC date).
        usd: Dollars held (None: the tenant has no dollar total).
        tokens: Tokens held (None: no token total).
        id: Unique per reservation.
    """

    tenant: str
    period: str
    usd: float | None
    tokens: int | None
    id: int


@dataclasses.dataclass(frozen=True, slots=True)
class Spend:
    """A tenant's totals in the current period."""

    usd: float
    tokens: int
    reserved_usd: float
    reserved_tokens: int
    calls: int


@runtime_checkable
class Account(Protocol):
    """Where tenants' totals live (in memory, or a shared store)."""

    async def reserve(
        self, name: str, tenant: TenantConfig, *, usd: float | None, tokens: int | None
    ) -> Reservation:
        """Hold up to `usd` / `tokens` (None: as much as is left) of the tenant's total.

        Raises:
            APIError: 429 `tenant_budget_exhausted` when nothing is left.
        """
        ...

    async def settle(self, reservation: Reservation, *, usd: float, tokens: int) -> None:
        """Book what the call really spent and free the rest of its hold."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Free a hold whose call never spent anything."""
        ...

    async def spent(self, name: str) -> Spend:
        """The tenant's totals in the current period."""
        ...


def _period(tenant: TenantConfig) -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat() if tenant.period == "day" else ""


@dataclasses.dataclass(slots=True)
class _Totals:
    spent_pico: int = 0
    tokens: int = 0
    held_pico: int = 0
    held_tokens: int = 0
    calls: int = 0


class InMemoryAccount:
    """Tenants' totals in this process (lost on restart; one process only).

    Every operation runs under one lock, so a reservation sees every other one made before it.
    """

    def __init__(self) -> None:
        self._totals: dict[tuple[str, str], _Totals] = {}
        self._lock = anyio.Lock()
        self._ids = itertools.count(1)

    def _row(self, name: str, period: str) -> _Totals:
        return self._totals.setdefault((name, period), _Totals())

    async def reserve(
        self, name: str, tenant: TenantConfig, *, usd: float | None, tokens: int | None
    ) -> Reservation:
        """See `Account.reserve`."""
        period = _period(tenant)
        async with self._lock:
            row = self._row(name, period)
            held_usd: float | None = None
            held_tokens: int | None = None
            pico = 0
            if tenant.total_usd is not None:
                left = usd_to_pico(tenant.total_usd) - row.spent_pico - row.held_pico
                if left <= 0:
                    raise _exhausted(name, "usd", tenant, period)
                pico = left if usd is None else min(left, usd_to_pico(usd))
                held_usd = pico_to_usd(pico)
            tok = 0
            if tenant.total_tokens is not None:
                left_t = tenant.total_tokens - row.tokens - row.held_tokens
                if left_t <= 0:
                    raise _exhausted(name, "tokens", tenant, period)
                tok = left_t if tokens is None else min(left_t, tokens)
                held_tokens = tok
            row.held_pico += pico
            row.held_tokens += tok
            return Reservation(name, period, held_usd, held_tokens, next(self._ids))

    async def settle(self, reservation: Reservation, *, usd: float, tokens: int) -> None:
        """See `Account.settle`. Spend above the hold is booked all the same (and logged)."""
        r = reservation
        pico = usd_to_pico(usd) if usd > 0 else 0
        if r.usd is not None and pico > usd_to_pico(r.usd):
            logger.warning("tenant %s: call spent $%.9f above its hold of $%.9f", r.tenant, usd, r.usd)
        async with self._lock:
            row = self._row(r.tenant, r.period)
            row.held_pico -= usd_to_pico(r.usd) if r.usd is not None else 0
            row.held_tokens -= r.tokens or 0
            row.spent_pico += pico
            row.tokens += tokens
            row.calls += 1

    async def release(self, reservation: Reservation) -> None:
        """See `Account.release`."""
        r = reservation
        async with self._lock:
            row = self._row(r.tenant, r.period)
            row.held_pico -= usd_to_pico(r.usd) if r.usd is not None else 0
            row.held_tokens -= r.tokens or 0

    async def spent(self, name: str) -> Spend:
        """See `Account.spent`; the current period for a daily tenant is today's (UTC)."""
        async with self._lock:
            rows = [t for (n, p), t in self._totals.items() if n == name]
            # The latest period: "" for absolute totals, else the newest date.
            keys = sorted(p for (n, p) in self._totals if n == name)
            row = self._totals[(name, keys[-1])] if rows else _Totals()
            return Spend(
                pico_to_usd(row.spent_pico),
                row.tokens,
                pico_to_usd(row.held_pico),
                row.held_tokens,
                row.calls,
            )


def _exhausted(name: str, dim: str, tenant: TenantConfig, period: str) -> APIError:
    total = f"${tenant.total_usd}" if dim == "usd" else f"{tenant.total_tokens} tokens"
    when = f" for {period} (UTC; it resets at 00:00 UTC)" if period else ""
    return APIError(
        429,
        f"tenant {name!r} has spent its total of {total}{when}, counting calls still in flight: "
        "wait for them to finish, or raise the tenant's total in the server config",
        type="insufficient_quota",
        code="tenant_budget_exhausted",
    )
