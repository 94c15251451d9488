"""Tenants' accounts, keys and config, without a server."""

from __future__ import annotations

import datetime
import hmac

import pytest

from adaptive import ConfigError
from adaptive.ledger import MemoryBackend
from adaptive.server import APIError, ServerConfig, TenantAccounts, TenantConfig
from adaptive.server._auth import authenticate, bearer_key


def test_each_tenant_and_period_is_one_ledger_account() -> None:
    now = [datetime.datetime(2026, 1, 1, 23, 59, tzinfo=datetime.UTC)]
    accounts = TenantAccounts(clock=lambda: now[0])
    daily = TenantConfig(keys=("k",), total_usd=0.5, total_tokens=900, period="day")
    absolute = TenantConfig(keys=("j",), total_usd=2.0)
    a = accounts.account("acme", daily)
    assert a is not None and a.name == "tenant:acme:day:2026-01-01"
    assert a.budget.usd == 0.5 and a.budget.tokens == 900 and a.backend is accounts.backend
    b = accounts.account("acme", absolute)
    assert b is not None and b.name == "tenant:acme:total" and b.budget.tokens is None
    assert accounts.account("free", TenantConfig(keys=("f",))) is None  # no total: no account
    # A clock in another zone still books on the UTC date.
    now[0] = datetime.datetime(2026, 1, 2, 1, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=5)))
    c = accounts.account("acme", daily)
    assert c is not None and c.name == "tenant:acme:day:2026-01-01"
    now[0] = datetime.datetime(2026, 1, 2, 0, 0, tzinfo=datetime.UTC)
    d = accounts.account("acme", daily)
    assert d is not None and d.name == "tenant:acme:day:2026-01-02"


def test_two_proxies_in_one_process_do_not_share_memory_totals() -> None:
    one, two = TenantAccounts(), TenantAccounts()
    assert isinstance(one.backend, MemoryBackend) and one.backend is not two.backend


@pytest.mark.parametrize("name", ["has space", "a:b", "", "x" * 65])
def test_a_tenant_name_that_cannot_name_an_account_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="tenant name"):
        ServerConfig(upstream={"url": "http://127.0.0.1:1/v1"}, tenants={name: {"keys": ["sk-1"]}})


def test_a_redis_url_must_be_one() -> None:
    with pytest.raises(ConfigError, match="redis_url"):
        ServerConfig(upstream={"url": "http://127.0.0.1:1/v1"}, ledger={"redis_url": "http://x"})
    cfg = ServerConfig(upstream={"url": "http://127.0.0.1:1/v1"}, ledger={"redis_url": "redis://h:1/0"})
    assert cfg.ledger.redis_url == "redis://h:1/0" and cfg.ledger.prefix == "adaptive"


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
