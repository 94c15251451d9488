"""A closed client or endpoint refuses work with a typed error; settings reject bad types."""

from __future__ import annotations

from typing import Any

import pytest
from fakehttp import run_in_thread
from loopback_wire import ANTHROPIC, CHAT, KEY, KINDS, Kind, scripted

from adaptive import Anthropic, Client, ClientClosedError, ConfigError, OpenAIChat, SyncClient
from adaptive.endpoints import RetryPolicy


@pytest.mark.asyncio
async def test_client_run_after_aclose_raises_and_reopens_no_pool() -> None:
    async with scripted() as (fake, url):
        fake.reply = lambda req: CHAT.answer(["4"], CHAT.usage(5, 1), stream=False)
        ep = CHAT.endpoint(url)
        client = Client(ep)
        await client.run("2+2?")
        await client.aclose()
        assert client.closed
        with pytest.raises(ClientClosedError, match="closed"):
            await client.run("2+2?")
        assert ep._own == [], "the endpoint's connection pool was re-created"
        await client.aclose()  # twice is fine


def test_sync_client_run_after_close_raises() -> None:
    with scripted_thread() as url:
        client = SyncClient(CHAT.endpoint(url))
        client.run("2+2?")
        client.close()
        assert client.closed
        with pytest.raises(ClientClosedError):
            client.run("2+2?")
        client.close()


def scripted_thread() -> Any:
    from loopback_wire import Scripted

    fake = Scripted()
    fake.reply = lambda req: CHAT.answer(["4"], CHAT.usage(5, 1), stream=False)

    import contextlib

    @contextlib.contextmanager
    def running() -> Any:
        with run_in_thread(fake.app) as server:
            yield server.url

    return running()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_an_endpoint_used_after_aclose_raises(kind: Kind, stream: bool) -> None:
    async with scripted() as (fake, url):
        fake.reply = lambda req: kind.answer(["hi"], kind.usage(5, 1), stream=stream)
        ep = kind.endpoint(url, stream=stream)
        await ep.request(kind.request())
        await ep.aclose()
        calls = fake.calls
        with pytest.raises(ClientClosedError):
            await ep.request(kind.request())
        with pytest.raises(ClientClosedError):
            async with ep.stream(kind.request()):  # type: ignore[attr-defined]
                pass
        assert fake.calls == calls and ep._own == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": "5"},
        {"timeout": True},
        {"timeout": -1},
        {"max_concurrency": True},
        {"max_concurrency": 2.0},
        {"max_concurrency": "4"},
        {"stream": "yes"},
        {"stream": 1},
        {"retry": "fast"},
    ],
)
@pytest.mark.parametrize("make", [Anthropic, OpenAIChat], ids=["anthropic", "chat"])
def test_settings_reject_bad_types(make: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        make("m", api_key=KEY, **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"attempts": True}, {"attempts": "3"}, {"initial_wait": "1"}, {"max_wait": False}]
)
def test_retry_policy_rejects_booleans_and_strings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


def test_good_settings_still_pass() -> None:
    ep = Anthropic("m", api_key=KEY, timeout=5, max_concurrency=3, stream=True, retry=RetryPolicy(attempts=2))
    assert ep.timeout == 5 and ep.stream_responses


@pytest.mark.parametrize("make", [Anthropic, OpenAIChat], ids=["anthropic", "chat"])
@pytest.mark.parametrize(
    "url", ["http://user:hunter2-secret@127.0.0.1:9/v1", "https://:hunter2-secret@api.example.com"]
)
def test_credentials_in_the_base_url_are_refused_without_repeating_them(make: Any, url: str) -> None:
    with pytest.raises(ConfigError, match="credentials") as info:
        make("m", api_key=KEY, base_url=url)
    assert "hunter2-secret" not in str(info.value)


@pytest.mark.parametrize("key", [12345678901, ["sk-listed-secret-key"]])
def test_a_bad_api_key_value_is_not_repeated(key: Any) -> None:
    with pytest.raises(ConfigError, match="api_key") as info:
        OpenAIChat("m", api_key=key)
    assert "12345678901" not in str(info.value) and "sk-listed-secret-key" not in str(info.value)


def test_anthropic_kind_endpoint_is_an_anthropic() -> None:
    assert isinstance(ANTHROPIC.endpoint("http://127.0.0.1:9"), Anthropic)
