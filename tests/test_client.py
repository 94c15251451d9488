"""The client: strategies, budgets and prices per call, the sync wrapper, input checks, secrets."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import httpx
import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import (
    AdaptiveError,
    Anthropic,
    Budget,
    Client,
    Completion,
    ConfigError,
    ControllerConfig,
    EndpointError,
    FunctionEndpoint,
    OpenAIChat,
    Price,
    Request,
    Response,
    Result,
    SingleSample,
    SyncClient,
    UnknownPriceError,
    Usage,
    ac_beta,
)
from adaptive.endpoints import RetryPolicy

PRICE = Price(input=1.0, output=2.0)
SECRET = "sk-secret-DO-NOT-LEAK-0123456789abcdef"


class Counting:
    """A function endpoint body that counts its calls and always answers 4."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: Request) -> str:
        self.calls += 1
        return "The answer is 4."


class Bare:
    """A minimal `Endpoint` written from scratch (no BaseEndpoint), with an unknown price."""

    price: Price | None = None
    supports_n = False
    supports_prefill = False
    supports_raw = False

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    @property
    def name(self) -> str:
        return "bare"

    async def request(self, request: Request) -> Response:
        self.calls += 1
        return Response(
            completions=(Completion(text="The answer is 12."),),
            usage=Usage(prompt_tokens=10, completion_tokens=5),
        )

    def prompt_copies(self, request: Request) -> int:
        return request.n  # n fans out as separate requests, each billed for its prompt

    async def aclose(self) -> None:
        self.closed = True


def fn_endpoint(body: Counting | None = None, **kwargs: Any) -> tuple[FunctionEndpoint, Counting]:
    body = body or Counting()
    kwargs.setdefault("price", PRICE)
    return FunctionEndpoint(body, name="counting", in_thread=False, **kwargs), body


# -- strategies --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_default_strategy_is_one_sample() -> None:
    ep, body = fn_endpoint()
    result = await Client(ep).run("2 + 2?")
    assert result.strategy == "single"
    assert result.answer == "4"  # read with the default answer spec
    assert result.text == "The answer is 4."
    assert body.calls == 1 and result.generated == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "strategy",
    [SelfConsistency(n=3), "self-consistency", {"name": "self-consistency", "n": 3}],
    ids=["instance", "name", "dict"],
)
async def test_per_call_strategy_by_instance_name_or_dict(strategy: Any) -> None:
    ep, body = fn_endpoint()
    client = Client(ep, strategy=SingleSample())
    result = await client.run("2 + 2?", strategy=strategy)
    assert result.strategy == "self-consistency"
    expected = 3 if not isinstance(strategy, str) else SelfConsistency().n
    assert body.calls == expected == result.generated
    assert result.answer == "4"
    # The client's default is untouched by a per-call choice.
    again = await client.run("2 + 2?")
    assert again.strategy == "single"


@pytest.mark.asyncio
async def test_client_default_strategy_from_a_dict() -> None:
    ep, body = fn_endpoint()
    client = Client(ep, strategy={"name": "adaptive", "max_samples": 6})
    result = await client.run("2 + 2?")
    assert result.strategy == "adaptive"
    assert 2 <= body.calls <= 6


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", [object(), 42, SelfConsistency], ids=["object", "int", "class"])
async def test_invalid_strategy_object_is_a_config_error(bad: Any) -> None:
    ep, body = fn_endpoint()
    fragment = "not the class" if isinstance(bad, type) else "Strategy protocol"
    with pytest.raises(ConfigError, match=fragment):
        await Client(ep).run("2 + 2?", strategy=bad)
    with pytest.raises(ConfigError, match=fragment):
        Client(ep, strategy=bad)
    assert body.calls == 0


@pytest.mark.asyncio
async def test_unknown_strategy_name_is_a_config_error() -> None:
    ep, body = fn_endpoint()
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        await Client(ep).run("2 + 2?", strategy="nope")
    with pytest.raises(ConfigError, match="needs a 'name'"):
        await Client(ep).run("2 + 2?", strategy={"n": 3})
    with pytest.raises(ConfigError, match="n"):
        await Client(ep).run("2 + 2?", strategy={"name": "self-consistency", "n": 0})
    assert body.calls == 0


def test_invalid_endpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Endpoint protocol"):
        Client(object())  # type: ignore[arg-type]


# -- budgets, stop rules, prices per call ------------------------------------------------


@pytest.mark.asyncio
async def test_per_call_budget_replaces_the_default() -> None:
    ep, body = fn_endpoint()
    client = Client(ep, strategy=SelfConsistency(n=5), budget=Budget(samples=4))
    assert (await client.run("2 + 2?")).generated == 4
    assert (await client.run("2 + 2?", budget=Budget(samples=2))).generated == 2
    assert (await client.run("2 + 2?")).generated == 4
    assert body.calls == 10


@pytest.mark.asyncio
async def test_per_call_stop_rule_by_name_and_instance() -> None:
    ep, _ = fn_endpoint()
    client = Client(ep, strategy=AdaptiveConsistency(max_samples=20))
    a = await client.run("2 + 2?", stop="ac-beta")
    b = await client.run("2 + 2?", stop=ac_beta(0.95))
    c = await client.run("2 + 2?", stop={"name": "max-samples", "samples": 7})
    assert a.stop_reason == b.stop_reason == "confident"
    assert a.stop is not None and b.stop is not None and a.stop.rule == b.stop.rule == "ac_beta"
    assert a.generated == b.generated == 4
    assert c.stop_reason == "max_samples" and c.generated == 7


@pytest.mark.asyncio
async def test_per_call_price_override() -> None:
    ep, _ = fn_endpoint()
    client = Client(ep)
    base = await client.run("2 + 2?")
    dear = await client.run("2 + 2?", price=Price(input=10.0, output=20.0))
    assert base.usage == dear.usage
    assert base.cost_usd == pytest.approx(PRICE.cost_usd(base.usage))
    assert dear.cost_usd == pytest.approx(10 * base.cost_usd)


@pytest.mark.asyncio
async def test_dollar_budget_needs_a_price_and_a_call_price_supplies_it() -> None:
    ep = Bare()
    client = Client(ep)
    with pytest.raises(UnknownPriceError, match="bare"):
        await client.run("2 + 2?", budget=Budget(usd=0.01))
    assert ep.calls == 0  # refused before anything was sent
    result = await client.run("2 + 2?", budget=Budget(usd=0.01), price=PRICE)
    assert result.answer == "12"
    assert result.cost_usd == pytest.approx(PRICE.cost_usd(Usage(prompt_tokens=10, completion_tokens=5)))
    # No dollar limit: an unknown price is fine and costs are zero.
    free = await client.run("2 + 2?", budget=Budget(samples=1))
    assert free.cost_usd == 0.0 and free.usage.total_tokens == 15


@pytest.mark.asyncio
async def test_max_tokens_and_temperature_overrides_reach_the_request() -> None:
    seen: list[Request] = []

    def fn(request: Request) -> str:
        seen.append(request)
        return "ok"

    client = Client(FunctionEndpoint(fn, in_thread=False))
    await client.run("hi", max_tokens=33, temperature=0.25, seed=5)
    assert seen[0].max_tokens == 33 and seen[0].temperature == 0.25 and seen[0].seed == 5


# -- bad prompts -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        ("", "prompt is empty"),
        ("   \n", "prompt is empty"),
        ([], "messages is empty"),
        ([{"role": "wizard", "content": "hi"}], "role"),
        ([{"role": "user"}], "content"),
        ([{"role": "user", "content": "  "}], "every message is empty"),
        ([{"role": "user", "content": "hi", "extra": 1}], "extra"),
    ],
)
async def test_bad_prompt_is_a_config_error_before_anything_is_spent(prompt: Any, fragment: str) -> None:
    ep, body = fn_endpoint()
    with pytest.raises(ConfigError, match=fragment):
        await Client(ep, strategy=SelfConsistency(n=2)).run(prompt, budget=Budget(usd=1.0))
    assert body.calls == 0


@pytest.mark.asyncio
async def test_chat_messages_are_accepted_and_the_question_is_the_last_user_message() -> None:
    seen: list[Request] = []

    def fn(request: Request) -> str:
        seen.append(request)
        return "ok"

    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "sure"},
        {"role": "user", "content": "second"},
    ]
    await Client(FunctionEndpoint(fn, in_thread=False)).run(messages)
    assert seen[0].messages is not None
    assert [m.role for m in seen[0].messages] == ["system", "user", "assistant", "user"]


# -- the sync client ---------------------------------------------------------------------


def test_sync_client_runs_and_closes() -> None:
    ep = Bare()
    before = set(threading.enumerate())
    with SyncClient(
        ep, strategy=SelfConsistency(n=3), controller=ControllerConfig(batch_as_n=False)
    ) as client:
        result = client.run("2 + 2?", budget=Budget(samples=2))
        assert isinstance(result, Result)
        assert result.answer == "12" and result.generated == 2
        assert client.run("again?", strategy="single").strategy == "single"
        started = set(threading.enumerate()) - before
        assert started  # the event loop runs in a thread of its own
    assert ep.closed
    assert not any(t.is_alive() for t in started)  # and that thread is gone
    client.close()  # closing twice is harmless


def test_sync_client_raises_the_same_errors() -> None:
    ep = Bare()
    with SyncClient(ep) as client:
        with pytest.raises(ConfigError):
            client.run("")
        with pytest.raises(UnknownPriceError):
            client.run("2 + 2?", budget=Budget(usd=1.0))
    assert ep.calls == 0


@pytest.mark.asyncio
async def test_async_client_context_manager_closes_the_endpoint() -> None:
    ep = Bare()
    async with Client(ep) as client:
        await client.run("2 + 2?")
    assert ep.closed


# -- secrets -----------------------------------------------------------------------------


def echoing_server(fail_after: int) -> httpx.MockTransport:
    """A careless server that echoes the request headers (API key included) in its errors."""
    count = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        count["n"] += 1
        headers = dict(request.headers)
        if count["n"] > fail_after:
            return httpx.Response(500, text=f"internal error; you sent {headers}")
        if "anthropic" in str(request.url) or "/messages" in str(request.url):
            return httpx.Response(
                200,
                json={
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-test",
                    "content": [{"type": "text", "text": "The answer is 4."}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": 10, "output_tokens": 5},
                },
            )
        return httpx.Response(
            200,
            json={
                "id": "c1",
                "model": "gpt-test",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "The answer is 4."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            },
        )

    return httpx.MockTransport(handler)


def make_endpoint(kind: str, transport: httpx.MockTransport) -> Any:
    http = httpx.AsyncClient(transport=transport)
    common: dict[str, Any] = {
        "api_key": SECRET,
        "http_client": http,
        "retry": RetryPolicy(attempts=1),
        "price": PRICE,
    }
    if kind == "openai":
        return OpenAIChat("gpt-test", base_url="http://testserver/v1", supports_n=False, **common), http
    return Anthropic("claude-test", base_url="http://testserver", **common), http


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_secrets_never_appear_in_reprs_errors_or_receipts(kind: str) -> None:
    # One good answer, then every call fails with a body that echoes the key.
    ep, http = make_endpoint(kind, echoing_server(fail_after=1))
    async with http:
        client = Client(ep, controller=ControllerConfig(batch_as_n=False, max_batch=2))
        assert SECRET not in repr(ep) and SECRET not in str(ep) and SECRET not in ep.name
        assert SECRET not in repr(client.endpoint)
        with pytest.raises(EndpointError) as info:
            await client.run("2 + 2?", strategy=SelfConsistency(n=4), seed=0)
        err = info.value
        assert isinstance(err, AdaptiveError)
        texts = [str(err), repr(err), getattr(err, "body", ""), err.endpoint]
        receipt = err.receipt
        assert isinstance(receipt, Result)
        assert receipt.cost_usd > 0  # the first good answer was paid for
        texts.append(receipt.model_dump_json())
        texts.append(json.dumps([e.model_dump() for e in receipt.trace]))
        texts.append(receipt.receipt())
        for text in texts:
            assert SECRET not in text
        assert any("***" in t or "internal error" in t for t in texts)  # the echo was there, scrubbed


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_secrets_not_in_a_successful_results_json(kind: str) -> None:
    ep, http = make_endpoint(kind, echoing_server(fail_after=10**6))
    async with http:
        result = await Client(ep).run("2 + 2?", strategy=SelfConsistency(n=2), seed=1)
    assert result.answer == "4"
    assert SECRET not in result.model_dump_json()
    assert SECRET not in repr(result)
    assert SECRET not in result.receipt()


@pytest.mark.asyncio
async def test_a_budget_may_be_a_dict_and_a_bare_number_is_refused_with_the_fix() -> None:
    from adaptive import Budget, ConfigError

    ep = FunctionEndpoint(lambda req: "The answer is 4.", price=Price(input=1.0, output=1.0))
    async with Client(ep, budget={"samples": 2}) as client:
        assert client.budget == Budget(samples=2)
        result = await client.run(
            "2 + 2?", strategy={"name": "self-consistency", "n": 5}, budget={"samples": 3}
        )
        assert result.generated == 3 and result.answer == "4"
        with pytest.raises(ConfigError, match=r"Budget\(usd=0.01\)"):
            await client.run("2 + 2?", budget=0.01)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="dollars"):
            await client.run("2 + 2?", budget={"dollars": 1})


@pytest.mark.asyncio
async def test_any_callable_is_a_stop_rule_that_composes_and_shows_on_the_trace() -> None:
    from adaptive import State, budget_exhausted

    ep = FunctionEndpoint(lambda req: "The answer is 4.")

    def five_samples(state: State) -> bool:
        return state.samples >= 5

    async with Client(ep) as client:
        result = await client.run("2 + 2?", strategy="adaptive", stop=five_samples)
        assert result.generated == 5 and result.stop_reason == "rule"
        assert result.stop is not None and result.stop.rule == "five_samples"
        composed = await client.run("2 + 2?", strategy="adaptive", stop=budget_exhausted() | five_samples)
        assert composed.generated == 5 and composed.stop_reason == "rule"
        assert composed.stop is not None and composed.stop.rule == "five_samples"
        stops = [e for e in composed.trace if e.kind == "decide" and e.data["action"] == "stop"]
        assert stops and stops[-1].data["reason"] == "rule" and stops[-1].data["rule"] == "five_samples"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        (123, "not int"),
        (None, "not NoneType"),
        (b"What is 2 + 2?", "decode it to a str"),
        ({"role": "user", "content": "2 + 2?"}, "wrap one message in a list"),
        (["2 + 2?"], "message 0 of the prompt must be"),
        ([{"role": "user", "content": "hi"}, 7], "message 1 of the prompt must be"),
    ],
)
async def test_a_prompt_that_is_neither_text_nor_messages_is_a_config_error(
    prompt: Any, fragment: str
) -> None:
    from adaptive import ConfigError

    ep = FunctionEndpoint(lambda req: "The answer is 4.")
    async with Client(ep) as client:
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            await client.run(prompt)
