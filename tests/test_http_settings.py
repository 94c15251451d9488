"""The HTTP layer's settings object and the one declared endpoint contract."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from adaptive import (
    Anthropic,
    ConfigError,
    Endpoint,
    FunctionEndpoint,
    OpenAIChat,
    OpenAICompletions,
    Price,
    Request,
)
from adaptive.endpoints import (
    HTTPSettings,
    HTTPSettingsArgs,
    ReplayEndpoint,
    RetryPolicy,
    prompt_copies,
    recorded_question,
)
from adaptive.sim import SimEndpoint

KEY = "sk-settings-SECRET-42"


def test_the_keyword_list_and_the_model_declare_the_same_fields() -> None:
    hints = typing.get_type_hints(HTTPSettingsArgs)
    assert list(hints) == list(HTTPSettings.model_fields)


def test_settings_object_and_keywords_build_the_same_endpoint() -> None:
    settings = HTTPSettings(base_url="http://127.0.0.1:9/v1", api_key=KEY, timeout=5, max_concurrency=3)
    a = OpenAIChat("m", settings=settings)
    b = OpenAIChat("m", base_url="http://127.0.0.1:9/v1", api_key=KEY, timeout=5, max_concurrency=3)
    assert a.settings == b.settings
    assert (a._url, a.timeout, a.name) == (b._url, b.timeout, b.name)
    # Keywords given with a settings object override its fields and nothing else.
    c = OpenAIChat("m", settings=settings, timeout=9)
    assert c.timeout == 9 and c._url == a._url and c.limiter.total_tokens == 3
    assert KEY not in repr(settings) and KEY not in repr(c)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_concurency": 4}, "unexpected keyword argument"),  # a typo is named, not ignored
        ({"max_concurrency": True}, "max_concurrency"),
        ({"max_concurrency": 2.5}, "max_concurrency"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"headers": ["x"]}, "headers"),
        ({"retry": 3}, "retry"),
        ({"settings": {"timeout": 1}}, "HTTPSettings"),
    ],
)
@pytest.mark.parametrize("cls", [OpenAIChat, OpenAICompletions, Anthropic])
def test_bad_settings_raise_config_error(cls: Any, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        cls("m", api_key=KEY, **kwargs)


def test_anthropic_takes_the_same_settings() -> None:
    settings = HTTPSettings(base_url="http://127.0.0.1:9", api_key=KEY, headers={"anthropic-beta": "x"})
    claude = Anthropic("claude-x", settings=settings, price=Price(input=1, output=2))
    assert claude._url == "http://127.0.0.1:9/v1/messages"
    assert claude._headers["x-api-key"] == KEY and claude._headers["anthropic-beta"] == "x"
    assert claude.price == Price(input=1, output=2) and not claude.stream_responses


def _conforming() -> list[Endpoint]:
    question = recorded_question({"id": "q", "samples": [{"text": "4", "answer": "4"}]}, "test")
    return [
        OpenAIChat("m", api_key=KEY, retry=RetryPolicy(attempts=1)),
        OpenAICompletions("m", api_key=KEY),
        Anthropic("m", api_key=KEY),
        FunctionEndpoint(lambda r: "4", name="f", in_thread=False),
        ReplayEndpoint([question]),
        SimEndpoint(),
    ]


@pytest.mark.asyncio
async def test_every_endpoint_declares_the_whole_contract() -> None:
    request = Request(prompt="2+2=", n=3)
    for endpoint in _conforming():
        assert isinstance(endpoint, Endpoint), type(endpoint).__name__
        expected = 1 if endpoint.supports_n else 3
        assert endpoint.prompt_copies(request) == prompt_copies(endpoint, request) == expected
        async with endpoint:  # every endpoint closes (a no-op for those that hold nothing)
            pass
        await endpoint.aclose()  # idempotent


def test_an_object_without_aclose_or_prompt_copies_is_not_an_endpoint() -> None:
    class Partial:
        price = None
        supports_n = supports_prefill = supports_raw = False
        name = "partial"

        async def request(self, request: Request) -> Any:
            raise NotImplementedError

    assert not isinstance(Partial(), Endpoint)
