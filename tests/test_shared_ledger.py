"""Shared accounts (adaptive.ledger): the memory backend, the Redis backend and its leases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import pytest_asyncio
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import (
    AdaptiveError,
    Budget,
    BudgetExceededError,
    Client,
    ConfigError,
    FunctionEndpoint,
    Price,
    Request,
)
from adaptive.ledger import (
    Account,
    Amount,
    LedgerUnavailableError,
    MemoryBackend,
    RedisBackend,
)
from adaptive.sim import SimEndpoint

PRICE = Price(input=1.0, output=2.0)


@pytest_asyncio.fixture
async def backend(redis: str) -> AsyncIterator[RedisBackend]:
    # A fresh key namespace per test: tests never see each other's totals.
    async with RedisBackend(redis, prefix=f"t-{uuid.uuid4().hex[:12]}", lease_seconds=0.3) as b:
        yield b


class Counting:
    """A function endpoint that counts the requests it receives."""

    def __init__(self) -> None:
        self.calls = 0
        self.endpoint = FunctionEndpoint(self, name="counting", price=PRICE)

    async def __call__(self, request: Request) -> str:
        self.calls += 1
        return "Work. The answer is 42."


# -- accounts ---------------------------------------------------------------------------
def test_account_validates_its_input() -> None:
    with pytest.raises(ConfigError, match="name"):
        Account("", Budget(usd=1.0))
    with pytest.raises(ConfigError, match="deadline"):
        Account("a", Budget(usd=1.0, seconds=3))
    with pytest.raises(ConfigError, match="LedgerBackend"):
        Account("a", Budget(usd=1.0), backend=object())  # type: ignore[arg-type]
    assert Account("a", {"tokens": 5}).limits == Amount(-1, 5, -1)


@pytest.mark.asyncio
async def test_accounts_of_one_call_must_share_a_backend() -> None:
    ep = Counting()
    a = Account("a", Budget(usd=1.0), backend=MemoryBackend())
    b = Account("b", Budget(usd=1.0), backend=MemoryBackend())
    async with Client(ep.endpoint) as client:
        with pytest.raises(ConfigError, match="one backend"):
            await client.run("q?", accounts=[a, b])
        with pytest.raises(ConfigError, match="more than once"):
            await client.run("q?", accounts=[a, a])
    assert ep.calls == 0


@pytest.mark.asyncio
async def test_memory_account_caps_the_calls_of_two_clients() -> None:
    backend = MemoryBackend()
    shared = Account("tenant", Budget(samples=7), backend=backend)
    eps = [SimEndpoint(), SimEndpoint()]
    results = []
    refused = 0
    async with Client(eps[0], accounts=[shared]) as c1, Client(eps[1], accounts=[shared]) as c2:
        for i in range(6):
            client = (c1, c2)[i % 2]
            try:
                results.append(
                    await client.run("What is 6 * 7?", strategy=SelfConsistency(n=3), seed=i, max_tokens=64)
                )
            except BudgetExceededError as exc:
                assert exc.account == "tenant" and exc.dimension == "samples"
                refused += 1
    totals = await shared.totals()
    assert totals.reserved == Amount() and totals.spent.samples <= 7
    assert sum(len(r.samples) for r in results) == totals.spent.samples
    assert refused >= 1
    # A call that got part of its batch stops for the account's limit, which its stop record names.
    partial = [r for r in results if r.stop is not None and r.stop.rule.startswith("Account(")]
    assert all(r.stop_reason == "budget" for r in partial)


@pytest.mark.asyncio
async def test_memory_settle_is_idempotent_and_capped_at_the_hold() -> None:
    backend = MemoryBackend()
    a = Account("a", Budget(usd=1.0), backend=backend)
    assert await backend.reserve("r1", [a], Amount(100, 10, 1)) is None
    assert await backend.reserve("r1", [a], Amount(100, 10, 1)) is None  # a repeat holds nothing more
    assert (await a.totals()).reserved == Amount(100, 10, 1)
    assert await backend.settle("r1", Amount(500, 50, 3), "ok") == "settled"
    assert await backend.settle("r1", Amount(1, 1, 1), "ok") == "duplicate"
    assert (await a.totals()).spent == Amount(100, 10, 1)
    assert await backend.settle("nope", Amount(), "ok") == "unknown"


# -- Redis ------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_redis_reserve_checks_every_account_at_once(backend: RedisBackend) -> None:
    tenant = Account("tenant", Budget(usd=1e-9), backend=backend)  # 1000 pico
    cap = Account("global", Budget(tokens=50), backend=backend)
    assert await backend.reserve("a", [tenant, cap], Amount(600, 30, 1)) is None
    refusal = await backend.reserve("b", [tenant, cap], Amount(300, 30, 1))
    assert refusal is not None and refusal.account == "global" and refusal.dimension == "tokens"
    assert refusal.left == 20
    # Refused by one account: held in none.
    assert (await tenant.totals()).reserved == Amount(600, 30, 1)
    refusal = await backend.reserve("c", [tenant, cap], Amount(500, 10, 1))
    assert refusal is not None and refusal.account == "tenant" and refusal.dimension == "usd"
    assert await backend.settle("a", Amount(200, 12, 1), "ok") == "settled"
    assert await backend.settle("a", Amount(200, 12, 1), "ok") == "duplicate"
    assert await backend.reserve("b", [tenant, cap], Amount(300, 30, 1)) is None
    assert (await tenant.totals()).spent == Amount(200, 12, 1)
    assert (await cap.totals()).reserved == Amount(300, 30, 1)


@pytest.mark.asyncio
async def test_redis_repeated_reserve_holds_once(backend: RedisBackend) -> None:
    a = Account("a", Budget(samples=3), backend=backend)
    for _ in range(3):
        assert await backend.reserve("same", [a], Amount(0, 0, 2)) is None
    assert (await a.totals()).reserved.samples == 2


@pytest.mark.asyncio
async def test_redis_expired_lease_is_booked_at_its_worst_case(backend: RedisBackend) -> None:
    a = Account("a", Budget(usd=1.0), backend=backend)
    assert await backend.reserve("dead", [a], Amount(1000, 40, 2)) is None
    assert await backend.renew("dead")
    for _ in range(200):  # bounded: the lease is reaped once its TTL has passed
        if (await a.totals()).reserved == Amount():
            break
        await anyio.sleep(0.05)
    totals = await a.totals()
    assert totals.spent == Amount(1000, 40, 2)  # never refunded
    # The holder comes back late: nothing more is booked, and nothing is refunded.
    assert await backend.settle("dead", Amount(10, 1, 1), "ok") == "expired"
    assert not await backend.renew("dead")
    assert (await a.totals()).spent == Amount(1000, 40, 2)


@pytest.mark.asyncio
async def test_a_call_renews_its_leases_while_in_flight(backend: RedisBackend) -> None:
    # Each request lasts several lease TTLs (0.3 s): only renewal keeps it from being reaped.
    ep = SimEndpoint(first_token_seconds=1.0, jitter=0.0)
    a = Account("slow", Budget(usd=1.0), backend=backend)
    async with Client(ep, accounts=[a]) as client:
        result = await client.run("What is 6 * 7?", strategy=SelfConsistency(n=2), seed=1, max_tokens=64)
    totals = await a.totals()
    assert totals.reserved == Amount()
    assert abs(totals.spent_usd - result.cost_usd) < 1e-12
    assert totals.spent.samples == len(result.samples)


@pytest.mark.asyncio
async def test_redis_account_caps_concurrent_calls(backend: RedisBackend) -> None:
    a = Account("cap", Budget(usd=0.0004), backend=backend)
    spent: list[float] = []
    refused = 0

    async def one(i: int) -> None:
        nonlocal refused
        try:
            r = await client.run(
                "What is 12 * 3?", strategy=AdaptiveConsistency(max_samples=6), seed=i, max_tokens=128
            )
            spent.append(r.cost_usd)
        except BudgetExceededError as exc:
            assert exc.account == "cap"
            refused += 1

    client = Client(SimEndpoint(first_token_seconds=0.01), accounts=[a])
    async with client, anyio.create_task_group() as tg:
        for i in range(16):
            tg.start_soon(one, i)
    totals = await a.totals()
    assert totals.reserved == Amount()
    assert totals.spent.pico <= a.limits.pico
    assert abs(totals.spent_usd - sum(spent)) < 1e-9
    assert refused >= 1


@pytest.mark.asyncio
async def test_unreachable_redis_fails_closed() -> None:
    ep = Counting()
    down = RedisBackend("redis://127.0.0.1:1/0", timeout=0.5)
    a = Account("a", Budget(usd=1.0), backend=down)
    async with Client(ep.endpoint, accounts=[a]) as client:
        with pytest.raises(LedgerUnavailableError, match="cannot be reached") as info:
            await client.run("q?", strategy=SelfConsistency(n=3), max_tokens=8)
    await down.aclose()
    assert ep.calls == 0
    assert info.value.receipt is not None and info.value.receipt.cost_usd == 0


def test_redis_backend_validates_its_arguments() -> None:
    with pytest.raises(ConfigError, match="prefix"):
        RedisBackend(prefix="a b")
    with pytest.raises(ConfigError, match="lease_seconds"):
        RedisBackend(lease_seconds=0)
    assert "secret" not in repr(RedisBackend("redis://user:secret@127.0.0.1:6379/0"))


class Retrying:
    """An endpoint whose first attempt is lost mid-body (billed, unknown usage), then retried."""

    def __init__(self) -> None:
        self.attempts = 0
        self.endpoint = FunctionEndpoint(self, name="retrying", price=PRICE)

    async def __call__(self, request: Request) -> str:
        from adaptive import ResponseError
        from adaptive.endpoints import current_meter

        self.attempts += 1
        lost = ResponseError("connection reset mid-body", endpoint="retrying")
        meter = current_meter()
        if meter is None or not meter.before_retry(lost):  # type: ignore[attr-defined]
            raise lost
        self.attempts += 1
        return "The answer is 42."


@pytest.mark.asyncio
async def test_a_billed_attempt_is_not_retried_under_shared_accounts() -> None:
    server = Retrying()
    a = Account("a", Budget(usd=1.0), backend=MemoryBackend())
    async with Client(server.endpoint, accounts=[a]) as client:
        with pytest.raises(AdaptiveError, match="mid-body") as info:
            await client.run("q?", strategy=SelfConsistency(n=1), max_tokens=8)
    assert server.attempts == 1
    receipt = info.value.receipt
    assert any(e.kind == "refuse" and "shared accounts" in e.data["why"] for e in receipt.trace)
    # The lost attempt is booked at its worst case, the same in the call and in the account.
    totals = await a.totals()
    assert totals.reserved == Amount() and totals.spent_usd == pytest.approx(receipt.cost_usd, abs=1e-12)
    assert receipt.cost_usd > 0


class NoRenew(RedisBackend):
    """A backend whose holder never gets its renewals through (a partition from Redis)."""

    async def renew(self, rid: str) -> bool:
        return True


@pytest.mark.asyncio
async def test_a_lease_that_expired_before_its_settle_shows_on_the_result(redis: str) -> None:
    async with NoRenew(redis, prefix=f"t-{uuid.uuid4().hex[:12]}", lease_seconds=0.2) as backend:
        a = Account("late", Budget(usd=1.0), backend=backend)
        ep = SimEndpoint(first_token_seconds=0.6, jitter=0.0)
        async with Client(ep, accounts=[a]) as client:
            result = await client.run("What is 6 * 7?", strategy=SelfConsistency(n=2), seed=1, max_tokens=64)
        totals = await a.totals()
    assert any("expired before it was settled" in w for w in result.warnings)
    # The worst case stands in the account (more than the call booked), never a refund.
    assert totals.reserved == Amount() and totals.spent_usd > result.cost_usd
