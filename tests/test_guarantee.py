"""The budget guarantee, typed failures, a budget too small to start, and typed stop reasons (issue #9)."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import anyio
import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import (
    AdaptiveError,
    Budget,
    BudgetTooSmallError,
    Client,
    Completion,
    ControllerConfig,
    FunctionEndpoint,
    LedgerError,
    Price,
    Request,
    Response,
    ResponseError,
    Result,
    Usage,
    low_marginal_gain,
    vote_margin,
)
from adaptive._dispatch import billed
from adaptive._ledger import Ledger, prompt_token_bound
from adaptive._result import EVENT_DATA, STOP_REASONS, StopReason
from adaptive.endpoints import PartialResponseError

PRICE = Price(input=1.0, output=2.0)
README = Path(__file__).resolve().parents[1] / "README.md"


def chat(text: str = "q?", **kw: Any) -> Request:
    return Request(messages=({"role": "user", "content": text},), **kw)


def answer(i: int) -> str:
    return f"Thinking... The answer is {i % 2}."


class Server:
    """A scripted function endpoint: `reply(request, index)` gives each request's `Response`."""

    def __init__(self, reply: Any, *, price: Price = PRICE, name: str = "srv", delay: float = 0.0) -> None:
        self.reply = reply
        self.calls = 0
        self.delay = delay
        self.endpoint = FunctionEndpoint(self, name=name, price=price)

    async def __call__(self, request: Request) -> Response | str:
        i = self.calls
        self.calls += 1
        if self.delay and i > 0:
            await anyio.sleep(self.delay)
        return self.reply(request, i)  # type: ignore[no-any-return]


def honest(request: Request, i: int, text: str | None = None) -> Response:
    body = text if text is not None else answer(i)
    return Response(completions=(Completion(text=body),), usage=Usage(prompt_tokens=5, completion_tokens=3))


# -- 1. the budget guarantee ------------------------------------------------------------------
@pytest.mark.asyncio
async def test_an_overrun_stops_the_call_at_once_books_at_most_the_reservation_and_says_so() -> None:
    def reply(request: Request, i: int) -> Response:
        if i == 0:  # a server that ignored max_tokens
            usage = Usage(prompt_tokens=5, completion_tokens=50 * request.max_tokens)
            return Response(completions=(Completion(text=answer(0)),), usage=usage)
        return honest(request, i)

    server = Server(reply, delay=0.2)
    config = ControllerConfig(batch_as_n=False, max_batch=4, first_batch=4)
    async with Client(server.endpoint, controller=config) as client:
        result = await client.run(
            "q?", strategy=SelfConsistency(n=16), budget=Budget(usd=0.01), seed=0, max_tokens=20
        )
    assert result.stop_reason == "overrun"
    assert result.stop is not None and result.stop.rule == server.endpoint.name
    assert server.calls == 4  # the first round only: nothing more was sent
    assert result.cancelled == 3  # the rest of the round was cancelled, and charged
    [over] = result.overruns
    assert over.endpoint == server.endpoint.name and over.reported.completion_tokens == 1000
    assert over.reserved.completion_tokens == 20 and over.reported_usd > over.reserved_usd
    [charge] = [c for c in result.charges if c.overrun]
    assert charge.reported is not None and charge.reported.completion_tokens == 1000
    assert charge.usage.completion_tokens == 20  # booked at most the reservation
    assert result.cost_usd <= 0.01
    assert any(e.kind == "overrun" for e in result.trace)
    assert "overrun" in result.receipt()


@pytest.mark.asyncio
async def test_recorded_spend_stays_within_the_budget_whatever_the_server_reports() -> None:
    def reply(request: Request, i: int) -> Response:
        usage = Usage(prompt_tokens=10_000, completion_tokens=10_000)
        return Response(completions=(Completion(text=answer(0)),), usage=usage)

    server = Server(reply)
    request_worst = PRICE.worst_case_pico(prompt_token_bound(chat("q?")), 8) / 1e12
    budget = Budget(usd=request_worst * 1.5, samples=1, tokens=10_000)
    async with Client(server.endpoint) as client:
        result = await client.run("q?", strategy=SelfConsistency(n=4), budget=budget, seed=0, max_tokens=8)
    assert result.stop_reason == "overrun"
    assert result.cost_usd <= budget.usd
    assert result.usage.total_tokens <= 10_000
    assert sum(c.samples for c in result.charges) <= 1
    assert result.overruns[0].reported.total_tokens == 20_000


@pytest.mark.asyncio
async def test_later_calls_reserve_what_the_endpoint_was_seen_to_bill() -> None:
    extra = 500  # a gateway's own prompt, billed on every request

    def reply(request: Request, i: int) -> Response:
        usage = Usage(prompt_tokens=prompt_token_bound(request) + extra, completion_tokens=3)
        return Response(completions=(Completion(text=answer(0)),), usage=usage)

    server = Server(reply)
    async with Client(server.endpoint) as client:
        first = await client.run("q?", strategy=SelfConsistency(n=2), seed=0, max_tokens=8)
        bound = client.controller.bounds.of(server.endpoint.name)
        second = await client.run("another question?", strategy=SelfConsistency(n=2), seed=0, max_tokens=8)
    assert first.stop_reason == "overrun"
    assert bound.prompt_overhead >= extra and bound.tokens_per_byte >= 1.0
    assert second.stop_reason == "strategy_done" and not second.overruns
    assert second.generated == 2


@pytest.mark.asyncio
async def test_missing_usage_is_booked_at_an_upper_bound_and_marked_estimated() -> None:
    # Arithmetic runs about two bytes a token: bytes/4 would be an estimate that is too low.
    text = "12*34=408, 408+17=425, 425-25=400. The answer is 400."

    def reply(request: Request, i: int) -> Response:
        return Response(
            completions=(Completion(text=text),),
            usage=Usage(prompt_tokens=1, completion_tokens=len(text) // 4),
            usage_reported=False,
        )

    server = Server(reply)
    async with Client(server.endpoint) as client:
        result = await client.run("q?", strategy=SelfConsistency(n=1), seed=0, max_tokens=200)
    [charge] = result.charges
    assert charge.estimated
    assert charge.usage.completion_tokens == len(text.encode()) + 1  # a token covers at least a byte
    assert charge.usage.prompt_tokens == prompt_token_bound(chat("q?"))
    assert "estimated" in result.receipt()


def test_settle_and_fail_clamp_the_prompt_to_what_was_reserved() -> None:
    ledger = Ledger()
    r = ledger.reserve(chat("hi", max_tokens=5), PRICE, endpoint="ep")
    response = Response(
        completions=(Completion(text="x"),), usage=Usage(prompt_tokens=9999, completion_tokens=2)
    )
    charge = ledger.settle(r, response)
    assert charge.usage.prompt_tokens == r.prompt_tokens and charge.overrun is not None
    assert charge.pico <= r.pico
    r = ledger.reserve(chat("hi", max_tokens=5), PRICE, endpoint="other")
    failed = ledger.fail(r, Usage(prompt_tokens=9999, completion_tokens=2))
    assert failed.usage.prompt_tokens == r.prompt_tokens and failed.overrun is not None


def test_negative_usage_is_no_bound_and_books_the_worst_case() -> None:
    ledger = Ledger()
    r = ledger.reserve(chat("hi", max_tokens=5), PRICE)
    # Usage validates its counts; one built without validation (model_construct) must not slip by.
    negative = Usage.model_construct(prompt_tokens=-11, completion_tokens=-8)
    bad = Response.model_construct(completions=(Completion(text="x"),), usage=negative, usage_reported=True)
    charge = ledger.settle(r, bad)
    assert charge.estimated and charge.pico == r.pico and charge.usage.total_tokens == r.tokens


def test_a_failure_after_generation_is_charged_as_the_server_may_have_billed_it() -> None:
    ledger = Ledger()
    r = ledger.reserve(chat("hi", max_tokens=10, n=3), PRICE, prompt_copies=3)
    # A malformed 200 body: the server generated (and billed) it; nothing says how much.
    unknown = billed(ResponseError("not JSON", endpoint="ep"))
    assert unknown.usage is None
    # A fan-out where two requests succeeded and one was cut off with nothing known.
    ok = Response(
        completions=(Completion(text="a"), Completion(text="b")),
        usage=Usage(prompt_tokens=8, completion_tokens=6),
    )
    fan_out = PartialResponseError(
        "1 of 3 failed", endpoint="ep", partial=ok, errors=(ResponseError("cut", endpoint="ep"),)
    )
    partial = billed(fan_out)
    assert partial.usage == ok.usage and partial.samples == 2 and partial.unknown == 1
    charge = ledger.fail(r, partial.usage, samples=partial.samples, unknown=partial.unknown)
    share_prompt = -(-r.prompt_tokens // 3)
    assert charge.usage == Usage(prompt_tokens=8 + share_prompt, completion_tokens=6 + 10)
    assert charge.estimated and charge.samples == 3 and charge.pico <= r.pico


# -- 2. typed errors, always with the receipt ------------------------------------------------
@pytest.mark.asyncio
async def test_an_exception_group_from_an_endpoint_leaves_as_one_typed_error_with_the_receipt() -> None:
    async def fn(request: Request) -> str:
        raise ExceptionGroup("fan-out", [ResponseError("malformed body", endpoint="grp")])

    ep = FunctionEndpoint(fn, name="grp", price=PRICE)
    async with Client(ep) as client:
        with pytest.raises(ResponseError, match="malformed body") as info:
            await client.run("q?", strategy=SelfConsistency(n=2), seed=0, max_tokens=8)
    receipt = info.value.receipt
    assert isinstance(receipt, Result) and receipt.stop_reason == "error"
    assert receipt.cost_usd > 0 and all(c.estimated for c in receipt.charges)  # the worst case


@pytest.mark.asyncio
async def test_an_exception_inside_the_ledger_is_a_ledger_error_with_the_receipt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settle = Ledger.settle
    calls = 0

    def broken(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyError("boom")
        return settle(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "settle", broken)
    server = Server(honest)
    config = ControllerConfig(batch_as_n=False, max_batch=1)
    async with Client(server.endpoint, controller=config) as client:
        with pytest.raises(LedgerError, match="KeyError") as info:
            await client.run("q?", strategy=SelfConsistency(n=4), seed=0, max_tokens=8)
    assert isinstance(info.value, AdaptiveError)
    assert isinstance(info.value.receipt, Result) and len(info.value.receipt.charges) == 1


# -- 3. a budget that cannot fit one sample --------------------------------------------------
@pytest.mark.asyncio
async def test_the_quick_start_budget_that_fits_nothing_is_a_typed_error_before_anything_is_sent() -> None:
    server = Server(honest, price=Price(input=0.15, output=0.6), name="gpt-4o-mini")  # its price
    async with Client(server.endpoint) as client:
        with pytest.raises(BudgetTooSmallError) as info:
            await client.run("What is 17 * 23?", budget=Budget(usd=0.0005))
        err = info.value
        assert server.calls == 0 and err.receipt is None and err.dimension == "usd"
        message = str(err)
        assert "Budget(usd=0.0005)" in message and f"max_tokens={err.max_tokens}" in message
        assert "shrink_max_tokens=True" in message
        # The numbers in the message are right: the smallest budget fits, and so does max_tokens.
        fits = await client.run("What is 17 * 23?", budget=Budget(usd=err.smallest))
        assert fits.generated == 1
        fitted = await client.run("What is 17 * 23?", budget=Budget(usd=0.0005), max_tokens=err.max_tokens)
        assert fitted.generated == 1
        with pytest.raises(BudgetTooSmallError):
            await client.run("What is 17 * 23?", budget=Budget(usd=0.0005), max_tokens=err.max_tokens + 1)
    shrink = ControllerConfig(shrink_max_tokens=True)
    async with Client(server.endpoint, controller=shrink) as client:
        shrunk = await client.run("What is 17 * 23?", budget=Budget(usd=0.0005))
    assert shrunk.generated == 1


@pytest.mark.asyncio
async def test_a_later_refusal_is_a_budget_stop_naming_the_limit() -> None:
    server = Server(honest)
    one = PRICE.worst_case_pico(prompt_token_bound(chat("q?")), 8) / 1e12
    async with Client(server.endpoint, controller=ControllerConfig(batch_as_n=False, max_batch=1)) as client:
        result = await client.run(
            "q?",
            strategy=AdaptiveConsistency(),
            stop=vote_margin(1000),  # never fires: the budget ends the call
            budget=Budget(usd=one * 2.5),
            seed=0,
            max_tokens=8,
        )
    assert result.stop_reason == "budget" and result.generated >= 2
    assert result.stop is not None and result.stop.dimension == "usd" and result.stop.rule == "Budget.usd"
    assert "refused" in result.receipt()


# -- 4. one typed stop reason -----------------------------------------------------------------
@pytest.mark.asyncio
async def test_no_hidden_sample_cap_and_max_samples_reports_itself_by_name() -> None:
    server = Server(lambda request, i: answer(i))
    async with Client(server.endpoint) as client:
        full = await client.run("q?", strategy=SelfConsistency(n=100), seed=0, max_tokens=8)
        adaptive = await client.run("q?", strategy=AdaptiveConsistency(max_samples=200), seed=0, max_tokens=8)
    assert full.generated == 100 and full.stop_reason == "strategy_done"
    assert adaptive.stop_reason != "budget"
    async with Client(server.endpoint, controller=ControllerConfig(max_samples=8)) as client:
        capped = await client.run("q?", strategy=SelfConsistency(n=100), seed=0, max_tokens=8)
    assert capped.generated == 8 and capped.stop_reason == "max_samples"
    assert capped.stop is not None and capped.stop.rule == "ControllerConfig.max_samples"
    assert capped.stop.threshold == 8


@pytest.mark.asyncio
async def test_low_gain_and_not_worth_cost_are_told_apart() -> None:
    server = Server(lambda request, i: answer(0))
    async with Client(server.endpoint) as client:
        low = await client.run("q?", strategy="adaptive", stop=low_marginal_gain(0.2), seed=0, max_tokens=8)
        cost = await client.run(
            "q?", strategy="adaptive", stop=low_marginal_gain(value_usd=1e-9), seed=0, max_tokens=8
        )
    assert low.stop_reason == "low_gain" and low.stop is not None and low.stop.rule == "low_marginal_gain"
    assert cost.stop_reason == "not_worth_cost"
    assert cost.stop is not None and cost.stop.value is not None and cost.stop.threshold is not None


def test_every_stop_reason_has_one_meaning_and_one_row_in_the_readme() -> None:
    assert set(typing.get_args(StopReason)) == set(STOP_REASONS)
    rows = re.findall(r"^\| `([a-z_]+)` \|", README.read_text(), flags=re.M)
    assert set(STOP_REASONS) <= set(rows)
    for retired in ('stop_reason == "budget_exhausted"', 'stop_reason == "ac_beta"'):
        assert retired not in README.read_text()


@pytest.mark.asyncio
async def test_every_trace_event_has_the_documented_fields_of_its_kind() -> None:
    def reply(request: Request, i: int) -> Response | str:
        if i == 2:
            raise ResponseError("malformed", endpoint="srv")
        if i == 5:
            return Response(
                completions=(Completion(text=answer(0)),), usage=Usage(prompt_tokens=5, completion_tokens=999)
            )
        return answer(i)

    server = Server(reply)
    events = []
    async with Client(server.endpoint, controller=ControllerConfig(batch_as_n=False, max_batch=2)) as client:
        for stop in (None, low_marginal_gain(0.3)):
            try:
                result = await client.run("q?", strategy="adaptive", stop=stop, seed=0, max_tokens=8)
            except AdaptiveError as exc:
                result = exc.receipt
            events.extend(result.trace)
        one = PRICE.worst_case_pico(prompt_token_bound(chat("q?")), 8) / 1e12
        result = await client.run(
            "q?",
            strategy=AdaptiveConsistency(),
            stop=vote_margin(1000),
            budget=Budget(usd=one * 1.5),
            seed=0,
            max_tokens=8,
        )
        events.extend(result.trace)
    kinds = {e.kind for e in events}
    assert {"decide", "send", "done", "error", "overrun", "refuse", "stop"} <= kinds
    for event in events:
        spec = EVENT_DATA[event.kind]
        hints = typing.get_type_hints(spec)
        assert set(event.data) <= set(hints), (event.kind, set(event.data) - set(hints))
        assert spec.__required_keys__ <= set(event.data), (
            event.kind,
            spec.__required_keys__ - set(event.data),
        )  # type: ignore[attr-defined]
        if event.kind in ("stop", "decide") and "reason" in event.data:
            assert event.data["reason"] in STOP_REASONS


class _Retrying:
    """An endpoint whose first attempt is cut mid-body and then retried, as the HTTP layer does.

    Before retrying it calls the installed meter's `before_retry` (the contract the endpoints
    are to follow); a refused retry raises the attempt's error.
    """

    def __init__(self) -> None:
        self.attempts = 0
        self.endpoint = FunctionEndpoint(self, name="retrying", price=PRICE)

    async def __call__(self, request: Request) -> str:
        from adaptive.endpoints import current_meter

        self.attempts += 1  # the first attempt: the server generated it, the body was lost
        lost = ResponseError("connection reset mid-body", endpoint="retrying")
        meter = current_meter()
        if meter is None or not meter.before_retry(lost):  # type: ignore[attr-defined]
            raise lost
        self.attempts += 1  # the retry
        return answer(0)


@pytest.mark.asyncio
async def test_a_retried_attempt_is_booked_under_its_own_reservation_or_refused() -> None:
    server = _Retrying()
    one = PRICE.worst_case_pico(prompt_token_bound(chat("q?")), 8) / 1e12
    async with Client(server.endpoint) as client:
        both = await client.run(
            "q?", strategy=SelfConsistency(n=1), budget=Budget(usd=one * 2.5), max_tokens=8
        )
        assert server.attempts == 2
        assert [c.status for c in both.charges] == ["failed", "ok"]
        assert both.charges[0].estimated and both.charges[0].usd == pytest.approx(one)
        assert any(e.kind == "error" and e.data.get("retried") for e in both.trace)
        server.attempts = 0
        with pytest.raises(AdaptiveError, match="mid-body") as info:  # no room for a second attempt
            await client.run("q?", strategy=SelfConsistency(n=1), budget=Budget(usd=one * 1.5), max_tokens=8)
    assert server.attempts == 1
    receipt = info.value.receipt
    assert (
        isinstance(receipt, Result)
        and receipt.cost_usd == pytest.approx(one)
        and receipt.cost_usd <= one * 1.5
    )
    assert any(e.kind == "refuse" and "retry" in e.data["why"] for e in receipt.trace)


@pytest.mark.asyncio
async def test_an_overrun_stays_the_stop_reason_of_an_error_that_came_with_it() -> None:
    def reply(request: Request, i: int) -> Response:
        if i == 0:
            usage = Usage(prompt_tokens=5, completion_tokens=900)
            return Response(completions=(Completion(text=answer(0)),), usage=usage)
        raise ResponseError("malformed", endpoint="srv")

    server = Server(reply)
    config = ControllerConfig(batch_as_n=False, max_batch=2, first_batch=2, early_cancel=False)
    async with Client(server.endpoint, controller=config) as client:
        try:
            result = await client.run("q?", strategy=SelfConsistency(n=4), seed=0, max_tokens=8)
        except AdaptiveError as exc:
            result = exc.receipt
    assert result.stop_reason == "overrun" and result.overruns


@pytest.mark.asyncio
async def test_an_answer_refused_for_more_choices_than_n_is_an_overrun() -> None:
    class TooManyChoices(ResponseError):
        """As an endpoint reports an answer with 3 choices for n=1 (it says how many)."""

        def __init__(self) -> None:
            super().__init__("the answer has 3 choices for n=1", endpoint="srv")
            self.choices = 3

    def reply(request: Request, i: int) -> str:
        if i == 0:
            raise TooManyChoices()
        return answer(i)

    server = Server(reply, delay=0.2)
    config = ControllerConfig(batch_as_n=False, max_batch=2, first_batch=2)
    async with Client(server.endpoint, controller=config) as client:
        result = await client.run("q?", strategy=SelfConsistency(n=6), seed=0, max_tokens=8)
    assert result.stop_reason == "overrun" and server.calls == 2
    [over] = result.overruns
    assert over.reported_samples == 3 and over.reserved_samples == 1
    assert sum(c.samples for c in result.charges) <= 2


class _FanOnce:
    """A strategy whose one plan is a single request for n=3 (fanned out by the endpoint)."""

    name = "fan-once"

    def start(self, task: Any) -> Any:
        return _FanOnceRun(task)

    def default_stop(self) -> None:
        return None


class _FanOnceRun:
    def __init__(self, task: Any) -> None:
        self.task, self.asked = task, False

    def answer_of(self, completion: Completion) -> str | None:
        return None

    def plan(self, state: Any) -> Any:
        from adaptive import Call, Plan, Sampling

        if self.asked:
            return None
        self.asked = True
        return Plan(calls=(Call(self.task.request(Sampling(max_tokens=16), n=3)),), stoppable=False)

    def observe(self, outcome: Any) -> None:
        pass

    def evidence(self) -> Any:
        from adaptive import Evidence

        return Evidence()

    def finish(self, state: Any) -> Any:
        from adaptive import Final

        return Final(answer=None)


@pytest.mark.asyncio
async def test_an_overrun_in_a_fan_out_cut_by_the_deadline_still_shows() -> None:
    calls = 0

    async def reply(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first part answers at once, claiming a prompt far over its bound
            usage = Usage(prompt_tokens=50_000, completion_tokens=3)
            return Response(completions=(Completion(text=answer(0)),), usage=usage)
        await anyio.sleep(30)  # the others are still running when the deadline cuts the call
        raise AssertionError("unreachable")

    endpoint = FunctionEndpoint(reply, name="fan", price=PRICE, supports_n=False)
    async with Client(endpoint) as client:
        result = await client.run("2 + 2?", strategy=_FanOnce(), budget=Budget(seconds=0.3))  # type: ignore[arg-type]
    assert result.stop_reason == "overrun" and len(result.overruns) == 1
    assert result.overruns[0].reported.prompt_tokens >= 50_000
    (charge,) = result.charges
    assert charge.status == "cancelled"


@pytest.mark.asyncio
async def test_a_fanned_out_part_refused_for_two_choices_is_an_overrun_of_the_fan_out() -> None:
    # n=3 on an endpoint that cannot return n > 1 becomes three single requests; one server
    # answer carries 2 choices for its n=1: refused, but billed, so 4 completions for 3 reserved.
    def reply(request: Request, i: int) -> Response:
        if i == 0:
            raise ResponseError(
                "the answer has 2 choices for n=1",
                endpoint="srv",
                usage=Usage(prompt_tokens=5, completion_tokens=6),
                choices=2,
            )
        return honest(request, i)

    server = Server(reply)
    assert not server.endpoint.supports_n
    async with Client(server.endpoint) as client:
        try:
            result = await client.run("q?", strategy=_FanOnce())
        except AdaptiveError as exc:
            result = exc.receipt
    assert server.calls == 3
    assert result.stop_reason == "overrun"
    [over] = result.overruns
    assert over.reported_samples == 4 and over.reserved_samples == 3
