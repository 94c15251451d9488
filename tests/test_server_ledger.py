"""Tenants' totals on the shared ledger: per-request holds, Redis, two proxy processes, daily reset."""

from __future__ import annotations

import datetime
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from proxy_helpers import QUESTION, messages_app, serve_app, sim_upstream
from test_server_process import process, wait_health

from adaptive.ledger import RedisBackend, Totals
from adaptive.server import ServerConfig, TenantAccounts, start_proxy

MESSAGES = [{"role": "user", "content": QUESTION}]
SC4 = {"adaptive": {"strategy": {"name": "self-consistency", "n": 4}}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with sim_upstream() as url:
        yield url


def redis_totals(url: str, prefix: str, account: str) -> Totals:
    async def read() -> Totals:
        async with RedisBackend(url, prefix=prefix) as backend:
            return await backend.totals(account)

    out: Totals = anyio.run(read)
    return out


async def hammer(bases: list[str], key: str, n: int, extra: dict[str, Any]) -> list[tuple[str, float, str]]:
    """`n` concurrent calls spread over `bases`: (code or "ok", cost, stop reason) each."""
    clients = [openai.AsyncOpenAI(base_url=b, api_key=key, max_retries=0) for b in bases]
    out: list[tuple[str, float, str]] = [("", 0.0, "")] * n

    async def one(i: int) -> None:
        try:
            r = await clients[i % len(clients)].chat.completions.create(
                model="sim-reasoner", messages=MESSAGES, seed=i, max_tokens=300, extra_body=extra
            )
        except openai.RateLimitError as exc:
            assert isinstance(exc.body, dict)
            out[i] = (str(exc.body["code"]), 0.0, "")
            return
        receipt = r.model_extra["adaptive"]
        out[i] = ("ok", float(receipt["cost_usd"]), str(receipt["stop_reason"]))

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    for c in clients:
        await c.close()
    return out


def check(results: list[tuple[str, float, str]], totals: Totals, total_usd: float) -> None:
    codes = {c for c, _, _ in results}
    assert "ok" in codes and "tenant_budget_exhausted" in codes and codes <= {"ok", "tenant_budget_exhausted"}
    assert totals.reserved.pico == 0 and totals.reserved.tokens == 0  # every hold settled
    assert totals.spent_usd <= total_usd
    # What the tenant's account booked is exactly what the answers' receipts say they cost.
    assert totals.spent_usd == pytest.approx(sum(u for _, u, _ in results), abs=1e-9)


def test_concurrent_calls_of_a_tenant_never_exceed_its_total_on_redis(upstream: str, redis: str) -> None:
    prefix = f"px-{uuid.uuid4().hex[:10]}"
    total = 0.004
    cfg = ServerConfig(
        upstream={"url": upstream},
        tenants={"acme": {"keys": ["sk-acme"], "total_usd": total}},
        ledger={"redis_url": redis, "prefix": prefix},
    )
    with start_proxy(cfg) as p:
        results = anyio.run(hammer, [p.url + "/v1"], "sk-acme", 48, SC4)
    check(results, redis_totals(redis, prefix, "tenant:acme:total"), total)


def test_a_call_whose_later_requests_do_not_fit_stops_with_reason_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Messages API upstream takes one completion a request: a round of 8 is 8 requests, each
    # held on its own, so the tenant's total can hold some of them and refuse the rest.
    monkeypatch.setenv("SIM_ANTHROPIC_KEY", "sk-ant-server-key")
    with serve_app(messages_app()) as root:
        cfg = ServerConfig(
            upstream={"url": root, "kind": "anthropic", "api_key_env": "SIM_ANTHROPIC_KEY"},
            prices={"claude-sim": {"input": 1.0, "output": 5.0}},
            tenants={"t": {"keys": ["sk-t"], "total_usd": 0.005}},
        )
        with start_proxy(cfg) as p:
            client = openai.OpenAI(base_url=p.url + "/v1", api_key="sk-t", max_retries=0)
            receipts: list[dict[str, Any]] = []
            with pytest.raises(openai.RateLimitError) as info:
                for _ in range(10):
                    reply = client.chat.completions.create(
                        model="claude-sim",
                        messages=MESSAGES,
                        max_tokens=200,
                        extra_body={"adaptive": {"strategy": {"name": "self-consistency", "n": 8}}},
                    )
                    assert reply.choices[0].message.content
                    receipts.append(reply.model_extra["adaptive"])
    # A call runs its rounds while they fit; one whose next round does not fit ends there, as a
    # normal answer whose receipt names the tenant's account.
    stops = [(r["stop_reason"], r["samples"]) for r in receipts]
    assert ("strategy_done", 8) in stops and any(reason == "budget" for reason, _ in stops), stops
    for r in receipts:
        assert (r["stop_reason"], r["samples"]) == ("strategy_done", 8) or (
            r["stop_reason"] == "budget" and "tenant:t:total" in r["stop_rule"] and 1 <= r["samples"] < 8
        ), r
    assert sum(r["cost_usd"] for r in receipts) <= 0.005
    # Then not even one request fits: the first request refused is a 429 naming the account.
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "tenant_budget_exhausted"
    assert "tenant:t:total" in info.value.body["message"]


def test_a_daily_total_resets_at_midnight_utc(upstream: str) -> None:
    now = [datetime.datetime(2026, 3, 1, 23, 58, tzinfo=datetime.UTC)]
    accounts = TenantAccounts(clock=lambda: now[0])
    tenants = {"d": {"keys": ["sk-d"], "total_usd": 0.0004, "period": "day"}}
    cfg = ServerConfig(upstream={"url": upstream}, tenants=tenants)

    def spend_all(client: openai.OpenAI) -> int:
        for i in range(20):
            try:
                client.chat.completions.create(
                    model="sim-reasoner", messages=MESSAGES, seed=i, max_tokens=200
                )
            except openai.RateLimitError as exc:
                assert isinstance(exc.body, dict) and "resets at 00:00 UTC" in exc.body["message"]
                return i
        raise AssertionError("the daily total never bound")

    with start_proxy(cfg, accounts=accounts) as p:
        client = openai.OpenAI(base_url=p.url + "/v1", api_key="sk-d", max_retries=0)
        first = spend_all(client)
        day1 = anyio.run(accounts.backend.totals, "tenant:d:day:2026-03-01")
        now[0] = datetime.datetime(2026, 3, 2, 0, 0, 1, tzinfo=datetime.UTC)  # a new UTC day
        second = spend_all(client)
        day2 = anyio.run(accounts.backend.totals, "tenant:d:day:2026-03-02")
    assert first >= 1 and second >= 1
    assert 0 < day1.spent_usd <= 0.0004 and 0 < day2.spent_usd <= 0.0004
    # The first day's total is untouched by the second day's calls.
    assert anyio.run(accounts.backend.totals, "tenant:d:day:2026-03-01") == day1


def test_two_proxy_processes_share_one_tenant_total(redis: str, tmp_path: Path) -> None:
    prefix = f"px2-{uuid.uuid4().hex[:10]}"
    total = 0.004
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'[tenants.acme]\nkeys = ["sk-acme"]\ntotal_usd = {total}\n\n[ledger]\nprefix = "{prefix}"\n',
        encoding="utf-8",
    )
    with (
        process("serve-sim", "--port", "0") as (_, sim),
        process("serve", "--upstream", sim, "--port", "0", "--config", str(config), "--redis", redis) as (
            _,
            one,
        ),
        process("serve", "--upstream", sim, "--port", "0", "--config", str(config), "--redis", redis) as (
            _,
            two,
        ),
    ):
        wait_health(one)
        wait_health(two)
        results = anyio.run(hammer, [one, two], "sk-acme", 48, SC4)
    check(results, redis_totals(redis, prefix, "tenant:acme:total"), total)
    # Both processes answered, and both refused: neither had the total to itself.
    by_proxy = [{results[i][0] for i in range(k, len(results), 2)} for k in (0, 1)]
    assert all("ok" in codes for codes in by_proxy)


def test_serve_with_an_unreachable_redis_exits_2_saying_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "proxy.toml"
    config.write_text('[tenants.a]\nkeys = ["sk-a"]\ntotal_usd = 1.0\n', encoding="utf-8")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    serve = ["serve", "--upstream", "http://127.0.0.1:9/v1", "--port", "0", "--config", str(config)]
    proc = subprocess.run(
        [sys.executable, "-m", "adaptive", *serve, "--redis", f"redis://127.0.0.1:{dead}/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""  # no URL printed: it never served
    assert "cannot be reached" in proc.stderr and "--redis" in proc.stderr
