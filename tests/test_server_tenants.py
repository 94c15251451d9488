"""Tenants' account, keys and config, without a server."""

from __future__ import annotations

import hmac
from typing import Any

import anyio
import pytest

from adaptive import ConfigError
from adaptive.server import APIError, InMemoryAccount, ServerConfig, TenantConfig
from adaptive.server import _tenants as tenants_module
from adaptive.server._auth import authenticate, bearer_key


def run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args)


def test_a_reservation_shrinks_to_what_is_left_and_settles_the_real_spend() -> None:
    acct = InMemoryAccount()
    t = TenantConfig(keys=("k",), total_usd=0.01)

    async def go() -> None:
        a = await acct.reserve("t", t, usd=0.004, tokens=None)
        b = await acct.reserve("t", t, usd=None, tokens=None)  # no cap: all that is left
        assert a.usd == 0.004 and b.usd == pytest.approx(0.006)
        with pytest.raises(APIError) as info:
            await acct.reserve("t", t, usd=0.001, tokens=None)
        assert info.value.status == 429 and info.value.code == "tenant_budget_exhausted"
        await acct.settle(a, usd=0.001, tokens=10)
        await acct.release(b)
        spend = await acct.spent("t")
        assert spend.usd == pytest.approx(0.001) and spend.tokens == 10
        assert spend.reserved_usd == 0 and spend.calls == 1
        c = await acct.reserve("t", t, usd=None, tokens=None)
        assert c.usd == pytest.approx(0.009)

    run(go)


def test_concurrent_reservations_never_hold_more_than_the_total() -> None:
    acct = InMemoryAccount()
    t = TenantConfig(keys=("k",), total_usd=0.05, total_tokens=5000)
    held: list[Any] = []
    refused: list[int] = []

    async def one() -> None:
        try:
            held.append(await acct.reserve("t", t, usd=0.003, tokens=400))
        except APIError:
            refused.append(1)

    async def go() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)

    run(go)
    assert refused and held
    assert sum(r.usd for r in held) <= 0.05 + 1e-12
    assert sum(r.tokens for r in held) <= 5000


def test_a_daily_total_resets_with_the_utc_date(monkeypatch: pytest.MonkeyPatch) -> None:
    acct = InMemoryAccount()
    t = TenantConfig(keys=("k",), total_usd=0.001, period="day")
    monkeypatch.setattr(tenants_module, "_period", lambda tenant: "2026-01-01")

    async def spend_all() -> None:
        r = await acct.reserve("t", t, usd=None, tokens=None)
        await acct.settle(r, usd=0.001, tokens=0)

    run(spend_all)
    with pytest.raises(APIError, match="2026-01-01"):
        run(spend_all)
    monkeypatch.setattr(tenants_module, "_period", lambda tenant: "2026-01-02")
    run(spend_all)  # a new day, a new total


def test_keys_are_compared_with_every_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {
        "a": TenantConfig(keys=("sk-a1", "sk-a2")),
        "b": TenantConfig(keys=("sk-b1",)),
    }
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(x: bytes, y: bytes) -> bool:
        calls.append(1)
        return real(x, y)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert authenticate("sk-a1", table) == "a"  # found first, still compared with all three
    assert len(calls) == 3
    with pytest.raises(APIError) as info:
        authenticate("sk-zz", table)
    assert info.value.status == 403 and "sk-zz" not in info.value.message
    with pytest.raises(APIError) as missing:
        authenticate(None, table)
    assert missing.value.status == 401
    assert authenticate(None, {}) == "anonymous"


def test_bearer_key_parsing() -> None:
    assert bearer_key({"authorization": "Bearer sk-1"}) == "sk-1"
    assert bearer_key({"authorization": "bearer  sk-2 "}) == "sk-2"
    assert bearer_key({"x-api-key": "sk-3"}) == "sk-3"
    assert bearer_key({"authorization": "Basic abc"}) is None
    assert bearer_key({}) is None


def test_two_tenants_sharing_a_key_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig(
            upstream={"url": "http://127.0.0.1:1/v1"},
            tenants={"a": {"keys": ["sk-shared-123"]}, "b": {"keys": ["sk-shared-123"]}},
        )
    assert "share an API key" in str(info.value) and "sk-shared-123" not in str(info.value)


def test_tenant_config_repr_hides_keys() -> None:
    assert "sk-hidden" not in repr(TenantConfig(keys=("sk-hidden",)))


def test_a_bad_tenant_value_never_shows_the_keys() -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig(
            upstream={"url": "http://127.0.0.1:1/v1"}, tenants={"a": {"keys": ["sk-x-9"], "total_usd": -1}}
        )
    assert "total_usd" in str(info.value) and "sk-x-9" not in str(info.value)


@pytest.mark.parametrize("url", ["ftp://x/v1", "not a url", "http://user:sk-pw-77@127.0.0.1/v1"])
def test_a_bad_upstream_url_is_refused_at_startup(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig(upstream={"url": url})
    assert "url" in str(info.value) and "sk-pw-77" not in str(info.value)
