"""FunctionEndpoint: any callable as an endpoint."""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable
from typing import Any

import pytest

from adaptive import (
    Budget,
    Completion,
    ConfigError,
    Endpoint,
    EndpointError,
    FunctionEndpoint,
    Message,
    Price,
    Request,
    Response,
    ResponseError,
    Usage,
)
from adaptive._ledger import Ledger, prompt_token_bound
from adaptive._prices import lookup_price


def chat(text: str = "hello", **kwargs: Any) -> Request:
    return Request(messages=(Message(role="user", content=text),), **kwargs)


def estimate(text: str, max_tokens: int) -> int:
    return min(max_tokens, math.ceil(len(text.encode("utf-8")) / 4))


# -- sync / async -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sync_function_runs_in_a_worker_thread() -> None:
    seen: list[int] = []

    def fn(request: Request) -> str:
        seen.append(threading.get_ident())
        return "ok"

    response = await FunctionEndpoint(fn).request(chat())
    assert response.completions[0].text == "ok"
    assert seen and seen[0] != threading.get_ident()


@pytest.mark.asyncio
async def test_sync_function_in_loop_when_asked() -> None:
    seen: list[int] = []

    def fn(request: Request) -> str:
        seen.append(threading.get_ident())
        return "ok"

    await FunctionEndpoint(fn, in_thread=False).request(chat())
    assert seen == [threading.get_ident()]


@pytest.mark.asyncio
async def test_async_function_and_async_callable_object() -> None:
    async def fn(request: Request) -> str:
        assert request.messages is not None
        return request.messages[0].content.upper()

    class Model:
        async def __call__(self, request: Request) -> str:
            return "object"

    assert (await FunctionEndpoint(fn).request(chat("abc"))).completions[0].text == "ABC"
    ep = FunctionEndpoint(Model())
    assert ep.name == "FunctionEndpoint(Model)"
    assert (await ep.request(chat())).completions[0].text == "object"


@pytest.mark.asyncio
async def test_sync_function_returning_a_coroutine_is_awaited() -> None:
    async def inner(request: Request) -> str:
        return "awaited"

    def fn(request: Request) -> Awaitable[str]:
        return inner(request)

    assert (await FunctionEndpoint(fn).request(chat())).completions[0].text == "awaited"


# -- return types -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_str_return_gets_estimated_usage() -> None:
    text = "héllo wörld, ça va?"
    request = chat("a prompt", max_tokens=100)
    response = await FunctionEndpoint(lambda r: text).request(request)
    (completion,) = response.completions
    assert completion.text == text
    assert completion.finish_reason == "stop"
    assert not response.usage_reported
    assert response.usage == Usage(
        prompt_tokens=prompt_token_bound(request), completion_tokens=estimate(text, 100)
    )


@pytest.mark.asyncio
async def test_estimate_is_capped_at_max_tokens() -> None:
    text = "word " * 200
    response = await FunctionEndpoint(lambda r: text).request(chat(max_tokens=7))
    assert response.usage.completion_tokens == 7


@pytest.mark.asyncio
async def test_completion_return_keeps_fields() -> None:
    given = Completion(text="x", finish_reason="length", index=5, score=0.25, answer="42")
    response = await FunctionEndpoint(lambda r: given).request(chat())
    (completion,) = response.completions
    assert completion.finish_reason == "length"
    assert completion.score == 0.25
    assert completion.answer == "42"
    assert completion.index == 0  # renumbered


@pytest.mark.asyncio
async def test_response_return_passes_through() -> None:
    given = Response(
        completions=(Completion(text="r"),),
        usage=Usage(prompt_tokens=3, completion_tokens=4),
        model="my-model",
    )
    response = await FunctionEndpoint(lambda r: given).request(chat())
    assert response == given
    assert response.usage_reported


@pytest.mark.asyncio
async def test_list_return_with_supports_n_calls_once() -> None:
    calls: list[Request] = []

    def fn(request: Request) -> list[str | Completion]:
        calls.append(request)
        return ["a", Completion(text="b", finish_reason="length"), "c"]

    ep = FunctionEndpoint(fn, supports_n=True)
    request = chat(n=3, max_tokens=10)
    response = await ep.request(request)
    assert len(calls) == 1 and calls[0].n == 3
    assert [c.text for c in response.completions] == ["a", "b", "c"]
    assert [c.index for c in response.completions] == [0, 1, 2]
    # The prompt is billed once when the function answers n at once.
    assert ep.prompt_copies(request) == 1
    assert response.usage.prompt_tokens == prompt_token_bound(request)
    assert response.usage.completion_tokens == 3


@pytest.mark.asyncio
async def test_fan_out_of_n_with_seeds() -> None:
    seen: list[tuple[int, int | None]] = []
    lock = threading.Lock()

    def fn(request: Request) -> str:
        with lock:
            seen.append((request.n, request.seed))
        return f"seed={request.seed}"

    ep = FunctionEndpoint(fn)
    request = chat(n=4, seed=10)
    response = await ep.request(request)
    assert sorted(seen) == [(1, 10), (1, 11), (1, 12), (1, 13)]
    assert [c.text for c in response.completions] == [f"seed={10 + i}" for i in range(4)]
    assert [c.index for c in response.completions] == [0, 1, 2, 3]
    single = request.model_copy(update={"n": 1})
    assert response.usage.prompt_tokens == 4 * prompt_token_bound(single)
    assert ep.prompt_copies(request) == 4


@pytest.mark.asyncio
async def test_usage_callable_is_reported_usage() -> None:
    got: list[tuple[Request, list[Completion]]] = []

    def usage(request: Request, completions: list[Completion]) -> Usage:
        got.append((request, completions))
        return Usage(prompt_tokens=2, completion_tokens=len(completions[0].text))

    request = chat()
    response = await FunctionEndpoint(lambda r: "abcdef", usage=usage).request(request)
    assert response.usage_reported
    assert response.usage == Usage(prompt_tokens=2, completion_tokens=6)
    assert got[0][0] == request and got[0][1][0].text == "abcdef"


@pytest.mark.asyncio
async def test_usage_callable_returning_garbage_is_config_error() -> None:
    ep = FunctionEndpoint(lambda r: "x", usage=lambda r, c: 5)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="Usage"):
        await ep.request(chat())


# -- bad returns, exceptions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (None, "NoneType"),
        (42, "int"),
        ({"text": "x"}, "dict"),
        ([1], "int"),
        (b"bytes", "bytes"),
    ],
)
@pytest.mark.asyncio
async def test_wrong_return_types_are_response_errors(value: Any, type_name: str) -> None:
    ep = FunctionEndpoint(lambda r: value)
    with pytest.raises(ResponseError, match=type_name) as info:
        await ep.request(chat())
    assert "accepted: str, Completion, Response" in str(info.value)
    assert info.value.endpoint == ep.name


@pytest.mark.parametrize("items", [[], ["a", "b"]])
@pytest.mark.asyncio
async def test_wrong_number_of_items_is_response_error(items: list[str]) -> None:
    with pytest.raises(ResponseError, match="n=1"):
        await FunctionEndpoint(lambda r: items).request(chat())
    with pytest.raises(ResponseError, match="n=3"):
        await FunctionEndpoint(lambda r: items, supports_n=True).request(chat(n=3))


@pytest.mark.asyncio
async def test_response_with_wrong_count_is_response_error() -> None:
    given = Response(completions=(Completion(text="a"), Completion(text="b")), usage=Usage())
    with pytest.raises(ResponseError, match="2 completions"):
        await FunctionEndpoint(lambda r: given).request(chat())


@pytest.mark.parametrize("in_thread", [True, False])
@pytest.mark.asyncio
async def test_exceptions_propagate_unchanged(in_thread: bool) -> None:
    boom = KeyError("missing")

    def fn(request: Request) -> str:
        raise boom

    with pytest.raises(KeyError) as info:
        await FunctionEndpoint(fn, in_thread=in_thread).request(chat())
    assert info.value is boom


@pytest.mark.asyncio
async def test_adaptive_errors_propagate_and_get_the_endpoint_name() -> None:
    async def config(request: Request) -> str:
        raise ConfigError("bad thing")

    async def endpoint(request: Request) -> str:
        raise EndpointError("upstream failed")

    with pytest.raises(ConfigError, match="bad thing"):
        await FunctionEndpoint(config).request(chat())
    ep = FunctionEndpoint(endpoint, name="mine")
    with pytest.raises(EndpointError) as info:
        await ep.request(chat())
    assert info.value.endpoint == ep.name == "FunctionEndpoint(mine)"


# -- price, name, capabilities ----------------------------------------------------------


def test_name_is_never_used_to_look_up_a_price() -> None:
    assert lookup_price("gpt-4o") is not None  # the name is a real, priced model...
    ep = FunctionEndpoint(lambda r: "x", name="gpt-4o")
    assert ep.price == Price(input=0.0, output=0.0)  # ...but the function stays free
    assert ep.name == "FunctionEndpoint(gpt-4o)"


@pytest.mark.asyncio
async def test_free_by_default_under_a_dollar_budget() -> None:
    ep = FunctionEndpoint(lambda r: "answer", name="gpt-4o")
    ledger = Ledger(Budget(usd=0.01))
    request = chat()
    reservation = ledger.reserve(request, ep.price, endpoint=ep.name)
    charge = ledger.settle(reservation, await ep.request(request))
    assert charge.pico == 0 and charge.estimated


@pytest.mark.asyncio
async def test_explicit_price_applies_to_estimated_usage() -> None:
    price = Price(input=2.0, output=8.0)
    ep = FunctionEndpoint(lambda r: "twelve bytes", price=price)
    response = await ep.request(chat())
    assert ep.price == price
    assert price.cost_pico(response.usage) > 0
    assert response.usage.completion_tokens == estimate("twelve bytes", 1024)


def test_capabilities_are_per_instance() -> None:
    ep = FunctionEndpoint(lambda r: "x", supports_n=True, supports_prefill=True, supports_raw=True)
    plain = FunctionEndpoint(lambda r: "x")
    assert (ep.supports_n, ep.supports_prefill, ep.supports_raw) == (True, True, True)
    assert (plain.supports_n, plain.supports_prefill, plain.supports_raw) == (False, False, False)
    assert FunctionEndpoint.supports_n is False
    assert isinstance(ep, Endpoint)


@pytest.mark.asyncio
async def test_request_reaches_the_function_unchanged() -> None:
    got: list[Request] = []

    def fn(request: Request) -> str:
        got.append(request)
        return "x"

    request = Request(prompt="raw", prefill=None, temperature=0.7, extra={"k": 1})
    await FunctionEndpoint(fn, supports_raw=True).request(request)
    assert got == [request]


@pytest.mark.parametrize(
    "kwargs",
    [{"fn": 3}, {"fn": len, "name": ""}, {"fn": len, "max_concurrency": 0}],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        FunctionEndpoint(**kwargs)
