"""Shared accounts: budgets that many calls, processes or hosts draw from at once.

A call's own `Budget` lives in its in-memory `Ledger`. An `Account` is a scope above it: a
tenant or API key, a batch run, a global cap. Before a request is sent, its worst case (the
same reservation the call's ledger holds) is reserved against *every* account the call
belongs to in one atomic step of the account's backend; the request is sent only when all of
them accept. When it ends, each account books exactly what the call's ledger booked (never
more than the reservation), so the booking rule of `adaptive._ledger` holds in every scope.

Backends: `MemoryBackend` (one process; the default) and `RedisBackend` (many processes and
hosts, leases with a TTL; see `adaptive.ledger._redis`). Every operation is idempotent by
reservation id: a retried reserve or settle never books twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from .._budget import Budget, as_budget
from .._exceptions import ConfigError
from .._prices import pico_to_usd, usd_to_pico

__all__ = [
    "Account",
    "Amount",
    "LedgerBackend",
    "MemoryBackend",
    "Refusal",
    "SettleStatus",
    "Totals",
]

Dimension = Literal["usd", "tokens", "samples"]
SettleStatus = Literal["settled", "duplicate", "expired", "unknown"]
"""What a settle did: booked now; already booked before (idempotent repeat); the lease had
expired and was booked at its worst case; no such reservation."""

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@/")


@dataclasses.dataclass(frozen=True, slots=True)
class Amount:
    """A cost in the three units the ledger counts.

    Attributes:
        pico: Picodollars.
        tokens: Prompt plus completion tokens.
        samples: Completions.
    """

    pico: int = 0
    tokens: int = 0
    samples: int = 0

    def capped(self, cap: Amount) -> Amount:
        """The amount with each unit at most `cap`'s (what is booked never passes the hold)."""
        return Amount(min(self.pico, cap.pico), min(self.tokens, cap.tokens), min(self.samples, cap.samples))


@dataclasses.dataclass(frozen=True, slots=True)
class Totals:
    """An account's spend and open reservations, as its backend holds them.

    Attributes:
        spent: Booked so far (settled requests, and expired leases at their worst case).
        reserved: Held by requests in flight.
    """

    spent: Amount
    reserved: Amount

    @property
    def spent_usd(self) -> float:
        """Dollars booked so far."""
        return pico_to_usd(self.spent.pico)


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why a backend refused a reservation: the first account and limit it would pass.

    Attributes:
        account: The account's name.
        dimension: "usd", "tokens" or "samples".
        left: What was left of that limit (picodollars, tokens or samples).
    """

    account: str
    dimension: Dimension
    left: int


class Account:
    """A budget shared by every call that names it (a tenant, an API key, a run, a global cap).

    Args:
        name: The account's key in its backend: every process that uses the same name on the
            same backend draws from the same totals. Letters, digits and `-_.:@/`.
        budget: The limits (a `Budget` or a dict such as `{"usd": 5.0}`); `seconds` has no
            meaning for an account and is refused. None: unlimited (spend is still recorded).
        backend: Where the totals live; a process-wide `MemoryBackend` when None.

    The limits travel with each reservation, so two processes that name the same account
    with different limits each enforce their own: give every process the same ones.

    Example:
        >>> tenant = Account("tenant:acme", Budget(usd=5.0))
        >>> tenant.budget.usd
        5.0
    """

    def __init__(
        self,
        name: str,
        budget: Budget | Mapping[str, Any] | None = None,
        *,
        backend: LedgerBackend | None = None,
    ) -> None:
        if not isinstance(name, str) or not name or not set(name) <= _NAME_OK or len(name) > 200:
            raise ConfigError(
                f"account name must be 1-200 characters of letters, digits and -_.:@/; got {name!r}"
            )
        limits = as_budget(budget) or Budget()
        if limits.seconds is not None:
            raise ConfigError(
                f"Account({name!r}): a shared account has no deadline; put seconds on the call's "
                "own budget instead"
            )
        if backend is not None and not isinstance(backend, LedgerBackend):
            raise ConfigError(f"Account({name!r}): backend must be a LedgerBackend, got {backend!r}")
        self.name = name
        self.budget = limits
        self.backend: LedgerBackend = backend if backend is not None else default_backend()
        self.limits = Amount(
            usd_to_pico(limits.usd) if limits.usd is not None else -1,
            limits.tokens if limits.tokens is not None else -1,
            limits.samples if limits.samples is not None else -1,
        )
        """Limits in ledger units; -1: no limit on that unit."""

    def __repr__(self) -> str:
        return f"Account({self.name!r}, {self.budget!r}, backend={self.backend!r})"

    async def totals(self) -> Totals:
        """The spend and open reservations of the account."""
        return await self.backend.totals(self.name)


@runtime_checkable
class LedgerBackend(Protocol):
    """Where shared accounts keep their totals; every operation atomic and idempotent by id.

    Attributes:
        lease_seconds: How long a reservation lives without renewal (None: no leases; the
            holder's process owns the totals, as in memory).
    """

    lease_seconds: float | None

    async def reserve(self, rid: str, accounts: Sequence[Account], amount: Amount) -> Refusal | None:
        """Hold `amount` in every account at once, or none (the first refusal is returned).

        Raises:
            LedgerUnavailableError: The backend cannot be reached (nothing is held).
        """
        ...

    async def settle(self, rid: str, booked: Amount, status: str) -> SettleStatus:
        """Replace the hold `rid` with `booked` (capped at the hold) in each of its accounts."""
        ...

    async def renew(self, rid: str) -> bool:
        """Extend the lease of `rid`; False when it is no longer open (expired or settled)."""
        ...

    async def totals(self, name: str) -> Totals:
        """The totals of the account called `name`."""
        ...


@dataclasses.dataclass(slots=True)
class _Hold:
    names: tuple[str, ...]
    amount: Amount
    state: str = "open"


class MemoryBackend:
    """Accounts in this process's memory: the default backend, no I/O.

    Every operation runs without an await point, so it is atomic under anyio's cooperative
    scheduling. Settled reservation ids are kept so a repeated settle is recognised.
    """

    lease_seconds: float | None = None

    def __init__(self) -> None:
        self._spent: dict[str, list[int]] = {}
        self._reserved: dict[str, list[int]] = {}
        self._holds: dict[str, _Hold] = {}

    def __repr__(self) -> str:
        return "MemoryBackend()"

    async def reserve(self, rid: str, accounts: Sequence[Account], amount: Amount) -> Refusal | None:
        """Hold `amount` in every account at once, or none."""
        if rid in self._holds:
            return None  # a repeated reserve: already held
        want = (amount.pico, amount.tokens, amount.samples)
        for account in accounts:
            spent = self._spent.get(account.name, [0, 0, 0])
            held = self._reserved.get(account.name, [0, 0, 0])
            limits = (account.limits.pico, account.limits.tokens, account.limits.samples)
            for i, dim in enumerate(("usd", "tokens", "samples")):
                if limits[i] >= 0 and spent[i] + held[i] + want[i] > limits[i]:
                    return Refusal(account.name, dim, limits[i] - spent[i] - held[i])  # type: ignore[arg-type]
        names = tuple(dict.fromkeys(a.name for a in accounts))
        for name in names:
            held = self._reserved.setdefault(name, [0, 0, 0])
            self._spent.setdefault(name, [0, 0, 0])
            for i in range(3):
                held[i] += want[i]
        self._holds[rid] = _Hold(names, amount)
        return None

    async def settle(self, rid: str, booked: Amount, status: str) -> SettleStatus:
        """Replace the hold with `booked` (capped at the hold) in each of its accounts."""
        hold = self._holds.get(rid)
        if hold is None:
            return "unknown"
        if hold.state != "open":
            return "duplicate"
        hold.state = status
        b = booked.capped(hold.amount)
        for name in hold.names:
            held, spent = self._reserved[name], self._spent[name]
            for i, (h, s) in enumerate(
                ((hold.amount.pico, b.pico), (hold.amount.tokens, b.tokens), (hold.amount.samples, b.samples))
            ):
                held[i] -= h
                spent[i] += s
        return "settled"

    async def renew(self, rid: str) -> bool:
        """Memory holds do not expire: True while open."""
        hold = self._holds.get(rid)
        return hold is not None and hold.state == "open"

    async def totals(self, name: str) -> Totals:
        """The totals of `name` (zero when never used)."""
        s = self._spent.get(name, [0, 0, 0])
        r = self._reserved.get(name, [0, 0, 0])
        return Totals(Amount(*s), Amount(*r))


_DEFAULT: MemoryBackend | None = None


def default_backend() -> MemoryBackend:
    """The process-wide memory backend that accounts without a backend share."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MemoryBackend()
    return _DEFAULT


def check_accounts(accounts: Sequence[Account] | None) -> tuple[Account, ...]:
    """Validate a list of accounts: all `Account`s, one backend, no name twice.

    Raises:
        ConfigError: Anything else (before anything is spent).
    """
    if accounts is None:
        return ()
    if isinstance(accounts, Account):
        accounts = [accounts]
    out = tuple(accounts)
    for a in out:
        if not isinstance(a, Account):
            raise ConfigError(f"accounts must be adaptive.ledger.Account objects; got {a!r}")
    names = [a.name for a in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"accounts name {twice} more than once: give each account once")
    backends = {id(a.backend) for a in out}
    if len(backends) > 1:
        # One backend: all scopes are checked and booked in one atomic step.
        raise ConfigError(
            "the accounts of one call must share one backend (their totals are checked and "
            f"booked in one atomic step); got {[a.backend for a in out]}"
        )
    return out
