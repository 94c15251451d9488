"""Tenants' running totals, kept as shared-ledger accounts (`adaptive.ledger.Account`).

Each tenant with a total is one `Account` per period, passed as `accounts=` to every call it
makes: the SDK holds each *request's* worst case in it before sending that request and books
the real charge when it ends (cancelled and failed requests included), so concurrent calls run
side by side and can never together exceed the total. The backend is this process's memory by
default (`MemoryBackend`), or Redis (`RedisBackend`, `adaptive serve --redis URL`) so that every
proxy process sharing one Redis shares one total.

Periods: the account's name carries it, `tenant:<name>:total` for an absolute total and
`tenant:<name>:day:<YYYY-MM-DD>` (UTC) for a daily one. A new day is a new account, so the reset
needs no job and no clock agreement beyond the date; a call is booked in full on the day it
started (its requests keep the account they were given). Past days' accounts stay in the
backend (one small hash per tenant and day in Redis) as a record.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from .._budget import Budget
from ..ledger._accounts import Account, LedgerBackend, MemoryBackend, Totals
from ._config import TenantConfig

__all__ = ["TenantAccounts"]

Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class TenantAccounts:
    """The tenants' totals: one `adaptive.ledger.Account` per tenant and period.

    Args:
        backend: Where the totals live: a `MemoryBackend` of its own when None (this process
            only), or a `RedisBackend` shared by every proxy that names the same Redis and prefix.
        clock: The current time, timezone-aware (for tests; default the system's UTC time).
    """

    def __init__(self, backend: LedgerBackend | None = None, *, clock: Clock | None = None) -> None:
        self.backend: LedgerBackend = backend if backend is not None else MemoryBackend()
        self._clock: Clock = clock or _utc_now
        # One Account object per tenant and period (its checks run once, not per call).
        self._made: dict[tuple[str, str], Account] = {}

    def __repr__(self) -> str:
        return f"TenantAccounts({self.backend!r})"

    def period(self, tenant: TenantConfig) -> str:
        """The period a call starting now is booked in: "total", or "day:YYYY-MM-DD" (UTC)."""
        if tenant.period != "day":
            return "total"
        return "day:" + self._clock().astimezone(datetime.UTC).date().isoformat()

    def account(self, name: str, tenant: TenantConfig) -> Account | None:
        """The account a call of tenant `name` starting now is held against (None: no total)."""
        if tenant.total_usd is None and tenant.total_tokens is None:
            return None
        key = (name, self.period(tenant))
        made = self._made.get(key)
        limits = Budget(usd=tenant.total_usd, tokens=tenant.total_tokens)
        if made is None or made.budget != limits:
            made = self._made[key] = Account(f"tenant:{key[0]}:{key[1]}", limits, backend=self.backend)
        return made

    async def totals(self, name: str, tenant: TenantConfig) -> Totals:
        """The tenant's spend and open holds in the current period."""
        return await self.backend.totals(f"tenant:{name}:{self.period(tenant)}")

    async def aclose(self) -> None:
        """Close the backend's connections when it has any (Redis)."""
        close = getattr(self.backend, "aclose", None)
        if close is not None:
            await close()
