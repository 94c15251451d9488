"""`--upstream-kind anthropic`: the proxy speaks OpenAI to clients and the Messages API upstream."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from proxy_helpers import QUESTION, messages_app, serve_app

from adaptive.server import ServerConfig, start_proxy

SC3 = {"name": "self-consistency", "n": 3}
MESSAGES = [{"role": "system", "content": "Think step by step."}, {"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, list[dict[str, object]]]]:
    app = messages_app()
    with serve_app(app) as root:
        yield root, app.state.seen


@pytest.mark.parametrize("stream_upstream", [False, True])
def test_openai_client_through_an_anthropic_upstream(
    upstream: tuple[str, list[dict[str, object]]], stream_upstream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, seen = upstream
    monkeypatch.setenv("SIM_ANTHROPIC_KEY", "sk-ant-server-key")
    cfg = ServerConfig(
        upstream={
            "url": root,
            "kind": "anthropic",
            "api_key_env": "SIM_ANTHROPIC_KEY",
            "stream": stream_upstream,
        },
        prices={"claude-sim": {"input": 1.0, "output": 5.0}},
    )
    before = len(seen)
    with start_proxy(cfg) as p:
        client = openai.OpenAI(base_url=p.url + "/v1", api_key="client-key-not-forwarded", max_retries=0)
        reply = client.chat.completions.create(
            model="claude-sim",
            messages=MESSAGES,
            max_tokens=400,
            extra_body={
                "adaptive": {"strategy": {"name": "self-consistency", "n": 3}, "budget": {"usd": 0.02}}
            },
        )
        streamed = list(client.chat.completions.create(model="claude-sim", messages=MESSAGES, stream=True))
    r = reply.model_extra["adaptive"]
    assert r["samples"] == 3 and 0 < r["cost_usd"] <= 0.02
    assert reply.choices[0].message.content
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    calls = seen[before:]
    assert len(calls) == 4  # three samples (Anthropic has no n: fanned out) and the streamed call
    for call in calls:
        headers = call["headers"]
        assert isinstance(headers, dict)
        assert headers["x-api-key"] == "sk-ant-server-key"  # the server's key, never the client's
        body = call["body"]
        assert isinstance(body, dict) and body.get("stream", False) is stream_upstream
        assert body["system"] == "Think step by step."


def test_pass_through_sends_the_clients_own_key(upstream: tuple[str, list[dict[str, object]]]) -> None:
    root, seen = upstream
    cfg = ServerConfig(
        upstream={"url": root, "kind": "anthropic", "pass_through_key": True},
        prices={"claude-sim": {"input": 1.0, "output": 5.0}},
    )
    before = len(seen)
    with start_proxy(cfg) as p:
        for key in ("sk-ant-client-a", "sk-ant-client-b"):
            client = openai.OpenAI(base_url=p.url + "/v1", api_key=key, max_retries=0)
            client.chat.completions.create(model="claude-sim", messages=MESSAGES, max_tokens=300)
    sent = [call["headers"]["x-api-key"] for call in seen[before:]]  # type: ignore[index]
    assert sent == ["sk-ant-client-a", "sk-ant-client-b"]
