"""Shared budgets: accounts that many calls, processes and hosts draw from at once.

A call's own `Budget` is enforced in its process's memory. An `Account` is a scope above
it (a tenant or API key, a batch run, a global cap) whose totals live in a backend: each
request's worst case is reserved against every account of the call in one atomic step
before it is sent, and booked when it ends exactly as the call's own ledger booked it.

    >>> import adaptive.ledger as ledger
    >>> acme = ledger.Account("tenant:acme", {"usd": 5.0})   # process memory by default
    >>> acme.budget.usd
    5.0

`RedisBackend` shares accounts across processes and hosts (`pip install 'adaptive-ttc[redis]'`):
reservations are leases that their holder renews; a dead worker's leases are booked at their
reserved worst case after their TTL (never refunded: the request may have been billed). An
unreachable Redis fails closed with `LedgerUnavailableError`: nothing is sent.
"""

from .._exceptions import LedgerUnavailableError
from ._accounts import Account, Amount, LedgerBackend, MemoryBackend, Refusal, SettleStatus, Totals
from ._redis import RedisBackend

__all__ = [
    "Account",
    "Amount",
    "LedgerBackend",
    "LedgerUnavailableError",
    "MemoryBackend",
    "RedisBackend",
    "Refusal",
    "SettleStatus",
    "Totals",
]
