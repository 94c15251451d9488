"""The Redis backend: shared accounts across processes and hosts, with leases.

Every operation is one Lua script, so it is atomic in Redis: a reservation checks every
account the request belongs to and holds its worst case in all of them, or in none. Each
reservation is a *lease*: it carries an expiry (Redis server time, so host clocks do not
matter) that its holder renews while the request is in flight. A lease that is not renewed
in time (its worker died, or lost Redis for longer than the TTL) is *reaped*: booked at its
reserved worst case, never refunded, because the request may still have been billed. Every
script reaps what is due before it does its own work, so totals are current for everyone.

Idempotent by reservation id: a reserve repeated after a lost reply holds nothing more; a
settle repeated books nothing more; a settle that comes after its lease was reaped books
nothing (the worst case already stands) and says "expired".

Keys live in one hash slot (`{prefix}:...`), so the scripts also run on a Redis Cluster:

- `{prefix}:acct:NAME`: a hash of `spent_pico`, `spent_tokens`, `spent_samples`,
  `reserved_pico`, `reserved_tokens`, `reserved_samples`;
- `{prefix}:lease:RID`: a hash of the lease (its accounts, amounts, state); kept for
  `keep_seconds` after it is booked, so a late repeat is recognised;
- `{prefix}:leases`: a sorted set of open leases by expiry (milliseconds).

If Redis cannot be reached the backend fails closed: `LedgerUnavailableError`, and the request
is not sent. Lua numbers are doubles: amounts are exact up to 2**53 picodollars ($9,007) per
account; larger limits are compared to within a few picodollars.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any, cast

from .._exceptions import ConfigError, LedgerUnavailableError
from ._accounts import Account, Amount, Dimension, Refusal, SettleStatus, Totals

__all__ = ["RedisBackend"]

_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local UNITS = {'pico', 'tokens', 'samples'}
-- Replace a lease's hold with `booked` (capped at the hold) in each of its accounts.
local function book(lease, state, booked, keep)
  local h = redis.call('HMGET', lease, 'accounts', 'pico', 'tokens', 'samples')
  local held = {tonumber(h[2]), tonumber(h[3]), tonumber(h[4])}
  local b = {}
  for i = 1, 3 do b[i] = math.min(booked[i], held[i]) end
  for key in string.gmatch(h[1], '[^\\n]+') do
    for i = 1, 3 do
      redis.call('HINCRBY', key, 'reserved_' .. UNITS[i], -held[i])
      redis.call('HINCRBY', key, 'spent_' .. UNITS[i], b[i])
    end
  end
  redis.call('HSET', lease, 'state', state, 'booked_pico', b[1], 'booked_tokens', b[2],
             'booked_samples', b[3])
  redis.call('EXPIRE', lease, keep)
end
-- Book every lease that is due at its worst case (its holder stopped renewing it).
local function reap(zset, prefix, now, limit, keep)
  local due = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit)
  for _, rid in ipairs(due) do
    local lease = prefix .. rid
    if redis.call('HGET', lease, 'state') == 'open' then
      local h = redis.call('HMGET', lease, 'pico', 'tokens', 'samples')
      book(lease, 'expired', {tonumber(h[1]), tonumber(h[2]), tonumber(h[3])}, keep)
    end
    redis.call('ZREM', zset, rid)
  end
  return #due
end
"""

# KEYS: leases zset, lease, account...; ARGV: rid, ttl_ms, keep_s, lease prefix, reap limit,
# pico, tokens, samples, then three limits per account (-1: none).
_RESERVE = (
    _COMMON
    + """
local now = now_ms()
reap(KEYS[1], ARGV[4], now, tonumber(ARGV[5]), tonumber(ARGV[3]))
local state = redis.call('HGET', KEYS[2], 'state')
if state then return {1, state} end
local want = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}
local names = {}
for a = 3, #KEYS do
  local key = KEYS[a]
  local v = redis.call('HMGET', key, 'spent_pico', 'spent_tokens', 'spent_samples',
                       'reserved_pico', 'reserved_tokens', 'reserved_samples')
  for i = 1, 3 do
    local limit = tonumber(ARGV[8 + (a - 3) * 3 + i])
    local used = (tonumber(v[i]) or 0) + (tonumber(v[i + 3]) or 0)
    if limit >= 0 and used + want[i] > limit then
      return {0, key, UNITS[i], tostring(limit - used)}
    end
  end
  names[#names + 1] = key
end
for _, key in ipairs(names) do
  for i = 1, 3 do redis.call('HINCRBY', key, 'reserved_' .. UNITS[i], want[i]) end
end
redis.call('HSET', KEYS[2], 'state', 'open', 'accounts', table.concat(names, '\\n'),
           'pico', want[1], 'tokens', want[2], 'samples', want[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return {1, 'held'}
"""
)

# KEYS: leases zset, lease; ARGV: rid, pico, tokens, samples, status, keep_s.
_SETTLE = (
    _COMMON
    + """
local state = redis.call('HGET', KEYS[2], 'state')
if not state then return 'unknown' end
if state == 'expired' then return 'expired' end
if state ~= 'open' then return 'duplicate' end
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
local keep = tonumber(ARGV[6])
if due and tonumber(due) <= now_ms() then
  -- Expired before this settle came: the worst case stands, as for a dead worker.
  local h = redis.call('HMGET', KEYS[2], 'pico', 'tokens', 'samples')
  book(KEYS[2], 'expired', {tonumber(h[1]), tonumber(h[2]), tonumber(h[3])}, keep)
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 'expired'
end
book(KEYS[2], ARGV[5], {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}, keep)
redis.call('ZREM', KEYS[1], ARGV[1])
return 'settled'
"""
)

# KEYS: leases zset, lease; ARGV: rid, ttl_ms.
_RENEW = (
    _COMMON
    + """
if redis.call('HGET', KEYS[2], 'state') ~= 'open' then return 0 end
local now = now_ms()
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not due) or tonumber(due) <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS: leases zset, account; ARGV: lease prefix, reap limit, keep_s.
_TOTALS = (
    _COMMON
    + """
reap(KEYS[1], ARGV[1], now_ms(), tonumber(ARGV[2]), tonumber(ARGV[3]))
return redis.call('HMGET', KEYS[2], 'spent_pico', 'spent_tokens', 'spent_samples',
                  'reserved_pico', 'reserved_tokens', 'reserved_samples')
"""
)

_PREFIX_OK = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class RedisBackend:
    """Shared accounts in Redis (redis-py's asyncio client; `pip install 'adaptive-ttc[redis]'`).

    Args:
        url: A Redis URL (`redis://127.0.0.1:6379/0`, `rediss://...`, `unix://...`).
        prefix: The key namespace (one hash slot: keys are `{prefix}:...`).
        lease_seconds: How long a reservation lives without renewal; the holder renews it
            every third of that while the request is in flight. A dead worker's leases are
            booked at their worst case this long after its last renewal.
        timeout: Seconds to wait for Redis on each operation (connect and reply) before the
            backend fails closed.
        keep_seconds: How long a booked lease is kept so that a late repeat is recognised.
        client: An existing `redis.asyncio.Redis` to use instead of `url` (not closed here).

    Use it as an async context manager, or call `aclose()`, to close its connections.

    Raises:
        ConfigError: redis is not installed, or an argument is out of range.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "adaptive",
        lease_seconds: float = 30.0,
        timeout: float = 5.0,
        keep_seconds: int = 86_400,
        client: Any = None,
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
            raise ConfigError("RedisBackend needs redis-py: pip install 'adaptive-ttc[redis]'") from exc
        if not _PREFIX_OK.match(prefix):
            raise ConfigError(f"prefix must be 1-64 characters of letters, digits and _.:-; got {prefix!r}")
        if not (0.05 <= lease_seconds <= 86_400):
            raise ConfigError(f"lease_seconds must be between 0.05 and 86400; got {lease_seconds!r}")
        if not (0 < timeout <= 600):
            raise ConfigError(f"timeout must be in (0, 600] seconds; got {timeout!r}")
        if keep_seconds < 1:
            raise ConfigError(f"keep_seconds must be at least 1; got {keep_seconds!r}")
        self.lease_seconds: float | None = float(lease_seconds)
        self.timeout = float(timeout)
        self.keep_seconds = int(keep_seconds)
        self.prefix = prefix
        self._tag = "{" + prefix + "}"
        self._owned = client is None
        if client is None:
            client = aioredis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
            )
        self._redis = client
        self.description = _redact(url) if self._owned else repr(client)
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._renew = client.register_script(_RENEW)
        self._totals = client.register_script(_TOTALS)
        self._errors: tuple[type[BaseException], ...] = (
            aioredis.ConnectionError,
            aioredis.TimeoutError,
            OSError,
        )

    def __repr__(self) -> str:
        return f"RedisBackend({self.description!r}, prefix={self.prefix!r})"

    async def __aenter__(self) -> RedisBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this backend opened (not those of a client passed in)."""
        if self._owned:
            await self._redis.aclose()

    # -- keys ------------------------------------------------------------------------------
    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._tag}:{kind}{':' + name if name else ''}"

    def account_key(self, name: str) -> str:
        """The Redis key of the account called `name`."""
        return self._key("acct", name)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run `script`; one retry on a lost connection (every script is idempotent by id)."""
        last: BaseException | None = None
        for _ in range(2):
            try:
                return await script(keys=keys, args=args)
            except self._errors as exc:
                last = exc
        raise LedgerUnavailableError(
            f"the shared ledger at {self.description} cannot be reached ({type(last).__name__}: "
            f"{last}); nothing was reserved: start Redis or point --redis / RedisBackend(url) at it",
            backend=self.description,
        ) from None

    async def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            LedgerUnavailableError: It does not.
        """
        try:
            await self._redis.ping()
        except self._errors as exc:
            raise LedgerUnavailableError(
                f"the shared ledger at {self.description} cannot be reached ({type(exc).__name__}: {exc})",
                backend=self.description,
            ) from None

    # -- the backend protocol ------------------------------------------------------------
    async def reserve(self, rid: str, accounts: Sequence[Account], amount: Amount) -> Refusal | None:
        """Hold `amount` in every account at once (one script), or none."""
        assert self.lease_seconds is not None
        keys = [self._key("leases"), self._key("lease", rid), *(self.account_key(a.name) for a in accounts)]
        args: list[Any] = [
            rid,
            int(self.lease_seconds * 1000),
            self.keep_seconds,
            self._key("lease") + ":",
            100,
            amount.pico,
            amount.tokens,
            amount.samples,
        ]
        for a in accounts:
            args += [a.limits.pico, a.limits.tokens, a.limits.samples]
        reply = await self._call(self._reserve, keys, args)
        if int(reply[0]) == 1:
            return None
        key, dim, left = str(reply[1]), str(reply[2]), int(float(reply[3]))
        name = key.split(":acct:", 1)[1]
        dimension = cast(Dimension, {"pico": "usd"}.get(dim, dim))
        return Refusal(name, dimension, left)

    async def settle(self, rid: str, booked: Amount, status: str) -> SettleStatus:
        """Replace the lease `rid` with `booked` (capped at the hold) in each of its accounts."""
        keys = [self._key("leases"), self._key("lease", rid)]
        args = [rid, booked.pico, booked.tokens, booked.samples, status, self.keep_seconds]
        return cast(SettleStatus, str(await self._call(self._settle, keys, args)))

    async def renew(self, rid: str) -> bool:
        """Extend the lease of `rid` by `lease_seconds`; False when it is no longer open."""
        assert self.lease_seconds is not None
        keys = [self._key("leases"), self._key("lease", rid)]
        return bool(int(await self._call(self._renew, keys, [rid, int(self.lease_seconds * 1000)])))

    async def totals(self, name: str) -> Totals:
        """The totals of `name`, after booking every lease that is due."""
        keys = [self._key("leases"), self.account_key(name)]
        v = await self._call(self._totals, keys, [self._key("lease") + ":", 1000, self.keep_seconds])
        n = [int(x) if x is not None else 0 for x in v]
        return Totals(Amount(n[0], n[1], n[2]), Amount(n[3], n[4], n[5]))

    async def reap(self) -> None:
        """Book every lease that is due now (any script does this too; this only reaps)."""
        await self.totals("-")


def _redact(url: str) -> str:
    """`url` without its password."""
    with contextlib.suppress(Exception):
        return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)
    return "redis"  # pragma: no cover
