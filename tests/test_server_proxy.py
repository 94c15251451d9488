"""The proxy in process (uvicorn in a thread) against loopback upstreams, with the openai client."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import openai
import pytest
from proxy_helpers import QUESTION, failing_app, serve_app, sim_upstream

from adaptive.ledger import Totals
from adaptive.server import ServerConfig, TenantAccounts, start_proxy

MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with sim_upstream() as url:
        yield url


@pytest.fixture(scope="module")
def proxy(upstream: str) -> Iterator[str]:
    cfg = ServerConfig(upstream={"url": upstream})
    with start_proxy(cfg) as p:
        yield p.url + "/v1"


def totals(accounts: TenantAccounts, cfg: ServerConfig, name: str) -> Totals:
    """A tenant's totals in the current period (the memory backend: readable from any thread)."""
    t: Totals = anyio.run(accounts.totals, name, cfg.tenants[name])
    return t


def sync_client(base: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key=key, max_retries=0)


def async_client(base: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base, api_key=key, max_retries=0)


def test_passthrough_is_one_sample_with_receipt_and_headers(proxy: str) -> None:
    raw = sync_client(proxy).chat.completions.with_raw_response.create(
        model="sim-reasoner", messages=MESSAGES, seed=3
    )
    reply = raw.parse()
    receipt = reply.model_extra["adaptive"]
    assert reply.object == "chat.completion" and reply.model == "sim-reasoner"
    assert reply.choices[0].message.content and reply.choices[0].finish_reason == "stop"
    assert receipt["strategy"] == "single" and receipt["samples"] == 1
    assert receipt["cost_usd"] > 0 and len(receipt["charges"]) == 1
    assert float(raw.headers["x-adaptive-cost-usd"]) == pytest.approx(receipt["cost_usd"], abs=1e-9)
    assert raw.headers["x-adaptive-samples"] == "1"
    assert raw.headers["x-adaptive-stop-reason"] == receipt["stop_reason"] == "strategy_done"
    c = receipt["charges"][0]
    assert reply.usage is not None
    assert (
        reply.usage.prompt_tokens == c["prompt_tokens"]
        and reply.usage.completion_tokens == c["completion_tokens"]
    )


def test_extra_body_strategy_under_a_dollar_budget(proxy: str) -> None:
    budget = 0.0015
    reply = sync_client(proxy).chat.completions.create(
        model="sim-reasoner",
        messages=MESSAGES,
        seed=1,
        extra_body={
            "adaptive": {"strategy": {"name": "self-consistency", "n": 6}, "budget": {"usd": budget}}
        },
    )
    r = reply.model_extra["adaptive"]
    assert r["strategy"] == "self-consistency" and r["samples"] > 1
    assert 0 < r["cost_usd"] <= budget
    assert sum(r["votes"].values()) == r["samples"]
    assert reply.usage is not None
    # usage is the sum of every internal request
    assert reply.usage.completion_tokens == sum(c["completion_tokens"] for c in r["charges"])
    assert reply.usage.prompt_tokens == sum(c["prompt_tokens"] for c in r["charges"])


def test_adaptive_model_prefix_runs_the_default_strategy(proxy: str) -> None:
    reply = sync_client(proxy).chat.completions.create(
        model="adaptive/sim-reasoner", messages=MESSAGES, extra_body={"adaptive": {"budget": {"usd": 0.002}}}
    )
    assert reply.model == "adaptive/sim-reasoner"
    assert reply.model_extra["adaptive"]["strategy"] == "adaptive"
    assert reply.model_extra["adaptive"]["samples"] >= 2


def test_async_stream_has_progress_answer_usage_and_done(proxy: str) -> None:
    async def go() -> list[Any]:
        client = async_client(proxy)
        stream = await client.chat.completions.create(
            model="sim-reasoner",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={
                "adaptive": {"strategy": {"name": "self-consistency", "n": 3}, "budget": {"usd": 0.002}}
            },
        )
        chunks = [c async for c in stream]
        await client.close()
        return chunks

    chunks = anyio.run(go)
    progress = [c.model_extra["adaptive"] for c in chunks if not c.choices and c.usage is None]
    assert {p["event"] for p in progress} >= {"decide", "done", "stop"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text and finish == ["stop"]
    last = chunks[-1]
    assert last.usage is not None and not last.choices
    receipt = last.model_extra["adaptive"]
    assert receipt["samples"] == 3 and last.usage.total_tokens == sum(
        c["prompt_tokens"] + c["completion_tokens"] for c in receipt["charges"]
    )
    assert len([p for p in progress if p["event"] == "done"]) == len(receipt["charges"])


def test_sync_stream_without_usage(proxy: str) -> None:
    chunks = list(
        sync_client(proxy).chat.completions.create(
            model="sim-reasoner", messages=MESSAGES, stream=True, seed=2
        )
    )
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].model_extra["adaptive"]["samples"] == 1


@pytest.mark.parametrize(
    ("extra", "param", "needle"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format", "response_format"),
        ({"logit_bias": {"1": 2}}, "logit_bias", "logit_bias"),
        ({"n": 2}, "n", "n=2"),
        ({"user": "u-1"}, "user", "user"),
        ({"top_p": 0.5}, "top_p", "top_p"),
        ({"messages": [{"role": "user", "content": "hi", "name": "x"}]}, "messages[0].name", "name"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role", "tool"),
        ({"adaptive": {"strategy": "best_of_n"}}, "adaptive.strategy", "best-of-n"),
        ({"adaptive": {"strategy": "adaptive", "budgett": {}}}, "adaptive.budgett", "budgett"),
        ({"adaptive": {"budget": {"dollars": 1}}}, "adaptive.budget", "dollars"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_it(
    proxy: str, extra: dict[str, Any], param: str, needle: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sync_client(proxy).chat.completions.create(model="sim-reasoner", messages=MESSAGES, extra_body=extra)
    assert isinstance(info.value.body, dict)
    assert info.value.body["param"] == param
    assert needle in info.value.body["message"]


def test_dollar_budget_on_a_model_with_no_price_is_a_400_naming_it(proxy: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sync_client(proxy).chat.completions.create(
            model="no-such-model-anywhere",
            messages=MESSAGES,
            extra_body={"adaptive": {"budget": {"usd": 0.01}}},
        )
    assert "no-such-model-anywhere" in info.value.message


def test_models_routes_and_health(proxy: str) -> None:
    ids = [m.id for m in sync_client(proxy).models.list().data]
    assert {"sim-reasoner", "adaptive/sim-reasoner"} <= set(ids)
    assert sync_client(proxy).models.retrieve("adaptive/sim-reasoner").id == "adaptive/sim-reasoner"
    with pytest.raises(openai.NotFoundError):
        sync_client(proxy).models.retrieve("nope")
    root = proxy.removesuffix("/v1")
    assert httpx.get(root + "/health").json()["status"] == "ok"


def test_body_over_the_limit_is_413(upstream: str) -> None:
    cfg = ServerConfig(upstream={"url": upstream}, limits={"max_body_bytes": 200})
    with start_proxy(cfg) as p:
        big = [{"role": "user", "content": "x" * 500}]
        r = httpx.post(p.url + "/v1/chat/completions", json={"model": "sim-reasoner", "messages": big})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


TENANTS = {
    "alice": {"keys": ["sk-alice-secret-1"], "per_call": {"usd": 0.001}, "total_usd": 0.003},
    "bob": {"keys": ["sk-bob-secret-2"], "total_usd": 0.01, "period": "day"},
}


def test_auth_errors_map_to_openai_exception_types(upstream: str) -> None:
    cfg = ServerConfig(upstream={"url": upstream}, tenants=TENANTS)
    with start_proxy(cfg) as p:
        base = p.url + "/v1"
        bare = httpx.post(base + "/chat/completions", json={"model": "sim-reasoner", "messages": MESSAGES})
        assert bare.status_code == 401 and bare.json()["error"]["code"] == "missing_api_key"
        with pytest.raises(openai.PermissionDeniedError):
            sync_client(base, "sk-nobody").chat.completions.create(model="sim-reasoner", messages=MESSAGES)
        ok = sync_client(base, "sk-bob-secret-2").chat.completions.create(
            model="sim-reasoner", messages=MESSAGES
        )
        assert ok.model_extra["adaptive"]["cost_usd"] > 0


def test_missing_key_is_401_for_the_openai_client(upstream: str) -> None:
    cfg = ServerConfig(upstream={"url": upstream}, tenants=TENANTS)
    with start_proxy(cfg) as p:
        # The client insists on a key: drop the header it would carry.
        client = sync_client(p.url + "/v1", "x")
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="sim-reasoner", messages=MESSAGES, extra_headers={"Authorization": openai.Omit()}
            )


def test_concurrent_calls_never_exceed_a_tenant_total(upstream: str) -> None:
    accounts = TenantAccounts()
    cfg = ServerConfig(upstream={"url": upstream}, tenants=TENANTS)
    total = TENANTS["alice"]["total_usd"]
    with start_proxy(cfg, accounts=accounts) as p:
        base = p.url + "/v1"

        async def one(client: openai.AsyncOpenAI, i: int) -> tuple[str, float]:
            try:
                r = await client.chat.completions.create(
                    model="sim-reasoner",
                    messages=MESSAGES,
                    seed=i,
                    max_tokens=300,
                    extra_body={"adaptive": {"strategy": {"name": "self-consistency", "n": 4}}},
                )
            except openai.RateLimitError as exc:
                assert isinstance(exc.body, dict)
                return str(exc.body["code"]), 0.0
            return "ok", float(r.model_extra["adaptive"]["cost_usd"])

        async def go() -> list[tuple[str, float]]:
            client = async_client(base, "sk-alice-secret-1")
            out: list[tuple[str, float]] = [("", 0.0)] * 40
            async with anyio.create_task_group() as tg:
                for i in range(40):

                    async def run(i: int = i) -> None:
                        out[i] = await one(client, i)

                    tg.start_soon(run)
            await client.close()
            return out

        results = anyio.run(go)
        spent = totals(accounts, cfg, "alice")
    codes = {c for c, _ in results}
    assert "ok" in codes and "tenant_budget_exhausted" in codes
    assert codes <= {"ok", "tenant_budget_exhausted"}
    assert spent.spent_usd <= total
    assert spent.reserved.pico == 0 and spent.reserved.tokens == 0
    assert spent.spent_usd == pytest.approx(sum(u for _, u in results), abs=1e-9)
    assert all(u <= TENANTS["alice"]["per_call"]["usd"] for _, u in results)


def test_keys_are_never_logged(upstream: str, caplog: pytest.LogCaptureFixture) -> None:
    cfg = ServerConfig(upstream={"url": upstream}, tenants=TENANTS)
    caplog.set_level(logging.DEBUG)
    with start_proxy(cfg) as p:
        base = p.url + "/v1"
        sync_client(base, "sk-bob-secret-2").chat.completions.create(model="sim-reasoner", messages=MESSAGES)
        with pytest.raises(openai.PermissionDeniedError):
            sync_client(base, "sk-wrong-secret-3").chat.completions.create(
                model="sim-reasoner", messages=MESSAGES
            )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "tenant=bob" in text and "status=403" in text
    for secret in ("sk-bob-secret-2", "sk-wrong-secret-3", "sk-alice-secret-1"):
        assert secret not in text


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[str]:
    with sim_upstream(seconds_per_token=0.01, jitter=0.0) as url:  # ~1-3 s per answer
        yield url


def test_client_disconnect_cancels_and_charges_the_tenant(slow_upstream: str) -> None:
    accounts = TenantAccounts()
    tenants = {"t": {"keys": ["sk-t"], "total_usd": 1.0}}
    cfg = ServerConfig(upstream={"url": slow_upstream}, tenants=tenants)
    with start_proxy(cfg, accounts=accounts) as p:
        body = {
            "model": "sim-reasoner",
            "messages": MESSAGES,
            "adaptive": {"strategy": {"name": "self-consistency", "n": 4}, "budget": {"usd": 0.01}},
        }
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                p.url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": "Bearer sk-t"},
                timeout=0.3,
            )
        for _ in range(200):  # the server sees the disconnect, cancels, and settles
            spent = totals(accounts, cfg, "t")
            if spent.spent.pico and not spent.reserved.pico:
                break
            anyio.run(anyio.sleep, 0.02)
    assert spent.reserved.pico == 0
    assert spent.spent.pico > 0  # the cancelled upstream requests are charged


def test_timeout_is_504_with_the_receipt(slow_upstream: str) -> None:
    cfg = ServerConfig(upstream={"url": slow_upstream}, limits={"timeout_seconds": 0.2})
    with start_proxy(cfg) as p, pytest.raises(openai.APIStatusError) as info:
        sync_client(p.url + "/v1").chat.completions.create(model="sim-reasoner", messages=MESSAGES)
    assert info.value.status_code == 504
    body = info.value.response.json()
    assert body["error"]["code"] == "timeout"
    assert body["adaptive"]["stop_reason"] == "deadline" and body["adaptive"]["cost_usd"] > 0


def test_concurrency_limit_refuses_with_429(slow_upstream: str) -> None:
    cfg = ServerConfig(upstream={"url": slow_upstream}, limits={"max_concurrency": 1})
    with start_proxy(cfg) as p:
        base = p.url + "/v1"

        async def go() -> list[str]:
            client = async_client(base)
            out: list[str] = []

            async def one() -> None:
                try:
                    await client.chat.completions.create(model="sim-reasoner", messages=MESSAGES)
                    out.append("ok")
                except openai.RateLimitError as exc:
                    assert isinstance(exc.body, dict)
                    out.append(str(exc.body["code"]))

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(one)
            await client.close()
            return out

        assert sorted(anyio.run(go)) == ["ok", "server_busy", "server_busy"]


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (401, openai.InternalServerError, "upstream_auth"),
        (429, openai.RateLimitError, "upstream_rate_limited"),
        (500, openai.InternalServerError, "upstream_error"),
        (503, openai.InternalServerError, "upstream_error"),
    ],
)
def test_upstream_errors_map_to_openai_style_statuses(status: int, error: type[Exception], code: str) -> None:
    with serve_app(failing_app()) as root:
        cfg = ServerConfig(
            upstream={"url": root + "/v1", "retry_attempts": 1},
            prices={f"fail-{status}": {"input": 1, "output": 1}},
        )
        with start_proxy(cfg) as p:
            r = httpx.post(
                p.url + "/v1/chat/completions", json={"model": f"fail-{status}", "messages": MESSAGES}
            )
            assert r.json()["error"]["code"] == code
            assert r.status_code == {401: 502, 429: 429, 500: 502, 503: 502}[status]
            with pytest.raises(error):
                sync_client(p.url + "/v1").chat.completions.create(model=f"fail-{status}", messages=MESSAGES)


def test_unreachable_upstream_is_502() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    cfg = ServerConfig(upstream={"url": f"http://127.0.0.1:{port}/v1", "retry_attempts": 1})
    with start_proxy(cfg) as p:
        r = httpx.post(p.url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"


def test_config_aliases_and_strict_tables(upstream: str, tmp_path: Any) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(
        f"""
[upstream]
url = "{upstream}"

[aliases.careful]
model = "sim-reasoner"
strategy = {{ name = "self-consistency", n = 3 }}
budget = {{ usd = 0.002 }}
"""
    )
    cfg = ServerConfig.load(path)
    with start_proxy(cfg) as p:
        reply = sync_client(p.url + "/v1").chat.completions.create(model="careful", messages=MESSAGES)
        assert reply.model_extra["adaptive"]["samples"] == 3
        assert "careful" in [m.id for m in sync_client(p.url + "/v1").models.list().data]
    path.write_text(f'[upstream]\nurl = "{upstream}"\ntimeout = 3\n')
    from adaptive import ConfigError

    with pytest.raises(ConfigError, match="timeout"):
        ServerConfig.load(path)


def test_stream_error_midway_is_an_error_event_the_client_raises() -> None:
    with serve_app(failing_app()) as root:
        cfg = ServerConfig(
            upstream={"url": root + "/v1", "retry_attempts": 1},
            prices={"fail-500": {"input": 1, "output": 1}},
        )
        with start_proxy(cfg) as p:
            stream = sync_client(p.url + "/v1").chat.completions.create(
                model="fail-500", messages=MESSAGES, stream=True
            )
            with pytest.raises(openai.APIError, match="upstream error"):
                list(stream)
            raw = httpx.post(
                p.url + "/v1/chat/completions",
                json={"model": "fail-500", "messages": MESSAGES, "stream": True},
            )
            events = [json.loads(line[6:]) for line in raw.text.splitlines() if line.startswith("data: {")]
            assert events[-1]["error"]["code"] == "upstream_error"
            assert raw.text.rstrip().endswith("data: [DONE]")


def test_a_token_total_is_reserved_and_enforced(upstream: str) -> None:
    accounts = TenantAccounts()
    tenants = {"t": {"keys": ["sk-tok"], "total_tokens": 1500}}
    cfg = ServerConfig(upstream={"url": upstream}, tenants=tenants)
    with start_proxy(cfg, accounts=accounts) as p:
        client = sync_client(p.url + "/v1", "sk-tok")
        codes: list[str] = []
        for i in range(12):
            try:
                client.chat.completions.create(
                    model="sim-reasoner", messages=MESSAGES, seed=i, max_tokens=200
                )
                codes.append("ok")
            except openai.RateLimitError as exc:
                assert isinstance(exc.body, dict)
                codes.append(str(exc.body["code"]))
        spent = totals(accounts, cfg, "t")
    assert codes[0] == "ok" and codes[-1] == "tenant_budget_exhausted"
    assert spent.spent.tokens <= 1500 and spent.reserved.tokens == 0


def test_a_stream_refused_before_it_starts_gets_its_own_status(upstream: str) -> None:
    tenants = {"t": {"keys": ["sk-s"], "total_usd": 0.0005}}
    cfg = ServerConfig(upstream={"url": upstream}, tenants=tenants)
    with start_proxy(cfg) as p:
        client = sync_client(p.url + "/v1", "sk-s")
        with pytest.raises(openai.BadRequestError, match="no-price-model"):
            client.chat.completions.create(model="no-price-model", messages=MESSAGES, stream=True)
        client.chat.completions.create(model="sim-reasoner", messages=MESSAGES, max_tokens=200)
        with pytest.raises(openai.RateLimitError):
            for _ in range(20):  # each call spends part of the total, until none is left
                list(
                    client.chat.completions.create(
                        model="sim-reasoner", messages=MESSAGES, stream=True, max_tokens=200
                    )
                )


def test_a_streaming_client_that_goes_away_is_charged(slow_upstream: str) -> None:
    accounts = TenantAccounts()
    cfg = ServerConfig(upstream={"url": slow_upstream}, tenants={"t": {"keys": ["sk-t"], "total_usd": 1.0}})
    with start_proxy(cfg, accounts=accounts) as p:
        body = {
            "model": "sim-reasoner",
            "messages": MESSAGES,
            "stream": True,
            "adaptive": {"strategy": {"name": "self-consistency", "n": 4}, "budget": {"usd": 0.01}},
        }
        headers = {"Authorization": "Bearer sk-t"}
        with httpx.stream(
            "POST", p.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as r:
            assert r.status_code == 200
            first = next(r.iter_lines())
            assert json.loads(first[6:])["adaptive"]["event"] == "decide"
        # leaving the block closed the connection mid-call
        for _ in range(300):
            spent = totals(accounts, cfg, "t")
            if spent.spent.pico and not spent.reserved.pico:
                break
            anyio.run(anyio.sleep, 0.02)
    assert spent.reserved.pico == 0 and spent.spent.pico > 0
