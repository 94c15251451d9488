"""The controller: batch sizing, early stop with cancellation, deadlines, failures, traces."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import (
    Budget,
    Client,
    ConsistencyPrior,
    ControllerConfig,
    FunctionEndpoint,
    Message,
    Price,
    Request,
    ResponseError,
    Result,
    State,
    ac_beta,
    budget_exhausted,
    confident,
    esc_window,
    low_marginal_gain,
    max_samples,
    vote_margin,
)
from adaptive._controller import Controller
from adaptive._ledger import Ledger
from adaptive._posterior import beta_confidence

PRICE = Price(input=1.0, output=2.0)
SAFETY = 10  # seconds; only so that a broken cancellation fails instead of hanging


class Fake:
    """A scripted endpoint: `answer(seed)` gives each sample's answer; None blocks forever.

    Counts the calls that started and ended (in `finally`), so a test can check that nothing
    is left running.
    """

    def __init__(self, answer: Callable[[int], str | Exception | None]) -> None:
        self.answer = answer
        self.started = 0
        self.ended = 0
        self.cancelled = 0
        self.seeds: list[int] = []

    async def __call__(self, request: Request) -> str:
        self.started += 1
        try:
            assert request.seed is not None
            self.seeds.append(request.seed)
            await anyio.lowlevel.checkpoint()
            out = self.answer(request.seed)
            if isinstance(out, Exception):
                raise out
            if out is None:
                await anyio.sleep_forever()
            return f"Thinking... The answer is {out}."
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.ended += 1

    def endpoint(self, **kwargs: Any) -> FunctionEndpoint:
        return FunctionEndpoint(self, name="fake", price=PRICE, **kwargs)


def split(seed: int) -> str:
    return random.Random(seed).choice("ab")


def strip_times(result: Result) -> list[tuple[str, int, dict[str, Any]]]:
    return [(e.kind, e.round, {k: v for k, v in e.data.items() if k != "elapsed"}) for e in result.trace]


def task_ids() -> set[int]:
    return {t.id for t in anyio.get_running_tasks()}


# -- batch sizing (a pure function of the state) ------------------------------------------


def test_next_batch_is_the_fewest_samples_that_could_stop() -> None:
    c = Controller()
    rule = ac_beta(0.95)
    assert c.next_batch(State(), rule, cap=16) == 4  # 4 unanimous votes: 0.969
    # (3, 1) needs 3 more for the leader: (6, 1) = 0.965, (5, 1) = 0.9375.
    state = State(votes={"a": 3, "b": 1}, samples=4)
    assert c.next_batch(state, rule, cap=16) == 3
    assert c.next_batch(state, vote_margin(5), cap=16) == 3
    four = State(votes={"a": 4}, samples=4, history=("a",) * 4)
    assert c.next_batch(four, esc_window(5), cap=16) == 1
    mixed = State(votes={"a": 3, "b": 1}, samples=4, history=("a", "a", "b", "a"))
    assert c.next_batch(mixed, esc_window(5), cap=16) == 4  # the "b" must leave the window


def test_next_batch_caps_and_floors() -> None:
    c = Controller()
    rule = ac_beta(0.95)
    assert c.next_batch(State(), rule, cap=2) == 2  # nothing up to the cap could stop: the cap
    assert c.next_batch(State(), rule, cap=0) == 0
    assert c.next_batch(State(), rule, cap=16, min_batch=6) == 6
    assert c.next_batch(State(), None, cap=7) == 7  # no rule: as many as allowed
    # A rule no batch can satisfy: the largest batch.
    assert c.next_batch(State(), max_samples(100), cap=9) == 9


def test_first_batch_from_the_config() -> None:
    c = Controller(ControllerConfig(first_batch=3))
    assert c.next_batch(State(), ac_beta(0.95), cap=16, first=True) == 3
    assert c.next_batch(State(), ac_beta(0.95), cap=2, first=True) == 2
    assert c.next_batch(State(), ac_beta(0.95), cap=16, first=False) == 4


def test_hypothetical_and_assess() -> None:
    c = Controller()
    state = State(votes={"a": 2, "b": 1}, samples=3, history=("a", "b", "a"))
    h = c.hypothetical(state, 2)
    assert dict(h.votes) == {"a": 4, "b": 1}
    assert h.samples == 5 and h.history[-2:] == ("a", "a")
    assert h.confidence == pytest.approx(beta_confidence(4, 1), abs=1e-3)
    conf, gain = c.assess({})
    assert conf is None and gain is None
    conf, gain = c.assess({"a": 3, "b": 3})
    assert conf == pytest.approx(0.5)
    assert gain is not None and (g := gain()) is not None and g > 0


@pytest.mark.asyncio
async def test_first_round_is_capped_by_max_batch_budget_and_samples() -> None:
    fake = Fake(split)
    ep = fake.endpoint()

    async def first_calls(config: ControllerConfig, budget: Budget | None) -> int:
        client = Client(ep, controller=config)
        result = await client.run(
            "q?", strategy=AdaptiveConsistency(), stop=ac_beta(0.95), seed=0, budget=budget
        )
        decide = next(e for e in result.trace if e.kind == "decide")
        assert decide.data["action"] == "continue"
        return int(decide.data["calls"])

    base = ControllerConfig(batch_as_n=False)
    assert await first_calls(base, None) == 4
    assert await first_calls(ControllerConfig(batch_as_n=False, max_batch=3), None) == 3
    assert await first_calls(base, Budget(samples=2)) == 2
    assert await first_calls(ControllerConfig(batch_as_n=False, max_samples=1), None) == 1
    # Dollars for exactly two samples' worst case.
    request = Request(messages=(Message(role="user", content="q?"),), max_tokens=1024)
    pico, _ = Ledger().worst_case(request, PRICE)
    assert await first_calls(base, Budget(usd=(2 * pico + pico // 2) / 1e12)) == 2


# -- early stop part-way through a round --------------------------------------------------


@pytest.mark.asyncio
async def test_early_stop_mid_round_cancels_in_flight_requests_and_charges_them() -> None:
    # Samples 0-3 agree at once; 4-7 never answer. AC's rule stops at 4 votes (0.969).
    fake = Fake(lambda seed: "42" if seed < 4 else None)
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False, first_batch=8))
    before = task_ids()
    with anyio.fail_after(SAFETY):
        result = await client.run("q?", strategy=AdaptiveConsistency(), stop=ac_beta(0.95), seed=0)
    assert result.answer == "42"
    assert result.stop_reason == "confident"
    assert result.stop is not None and result.stop.rule == "ac_beta"
    assert result.votes == {"42": 4}
    statuses = sorted(c.status for c in result.charges)
    assert statuses == ["cancelled"] * 4 + ["ok"] * 4
    assert result.cancelled == 4
    cancelled = [c for c in result.charges if c.status == "cancelled"]
    assert all(c.usd > 0 and c.estimated for c in cancelled)
    assert result.cost_usd == pytest.approx(sum(c.usd for c in result.charges))
    # Nothing is left running: every started call ended, and no task outlives the run.
    assert fake.started == fake.ended == 8
    assert fake.cancelled == 4
    assert task_ids() == before
    kinds = [e.kind for e in result.trace]
    assert kinds.count("cancel") == 4
    stop = [e for e in result.trace if e.kind == "decide" and e.data["action"] == "stop"]
    assert stop and stop[0].data["during"] == "round" and stop[0].data["reason"] == "confident"
    assert stop[0].data["rule"] == "ac_beta"


@pytest.mark.asyncio
async def test_early_cancel_off_waits_for_the_round() -> None:
    fake = Fake(lambda seed: "42" if seed < 4 else ("43" if seed < 6 else "44"))
    client = Client(
        fake.endpoint(), controller=ControllerConfig(batch_as_n=False, first_batch=8, early_cancel=False)
    )
    result = await client.run("q?", strategy=AdaptiveConsistency(), stop=ac_beta(0.95), seed=0)
    assert result.cancelled == 0
    assert result.generated >= 8
    assert fake.started == fake.ended


# -- deadlines ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_deadline_cancels_and_charges() -> None:
    fake = Fake(lambda seed: "7" if seed < 2 else None)
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False, first_batch=6))
    before = task_ids()
    with anyio.fail_after(SAFETY):
        result = await client.run(
            "q?", strategy=AdaptiveConsistency(), stop=ac_beta(0.95), seed=0, budget=Budget(seconds=0.2)
        )
    assert result.stop_reason == "deadline"
    statuses = sorted(c.status for c in result.charges)
    # The two quick samples answer long before the deadline (on any machine not frozen for
    # 0.2 s); the test holds either way: what did not answer was cancelled and charged.
    ok = statuses.count("ok")
    assert ok <= 2 and statuses == ["cancelled"] * (6 - ok) + ["ok"] * ok
    assert result.answer == ("7" if ok else None)
    assert all(c.usd > 0 for c in result.charges)
    assert result.cost_usd == pytest.approx(sum(c.usd for c in result.charges))
    assert fake.started == fake.ended == 6
    assert task_ids() == before
    assert any(e.kind == "stop" and e.data["reason"] == "deadline" for e in result.trace)


@pytest.mark.asyncio
async def test_deadline_with_nothing_answered() -> None:
    fake = Fake(lambda seed: None)
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False))
    with anyio.fail_after(SAFETY):
        result = await client.run("q?", strategy=SelfConsistency(n=3), seed=0, budget=Budget(seconds=0.02))
    assert result.answer is None
    assert result.stop_reason == "deadline"
    assert [c.status for c in result.charges] == ["cancelled"] * 3
    assert fake.started == fake.ended == 3


# -- failures ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_round_where_every_call_fails_raises_with_the_receipt() -> None:
    fake = Fake(lambda seed: "5" if seed < 2 else ResponseError("the model broke"))
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False, max_batch=2))
    with pytest.raises(ResponseError, match="the model broke") as info:
        await client.run("q?", strategy=SelfConsistency(n=4), seed=0)
    receipt = info.value.receipt
    assert isinstance(receipt, Result)
    assert receipt.stop_reason == "error"
    assert [c.status for c in receipt.charges] == ["ok", "ok", "failed", "failed"]
    paid = sum(c.usd for c in receipt.charges if c.status == "ok")
    # A ResponseError says nothing of what was billed: the server may have generated it all,
    # so each failed request is booked at its reserved worst case, marked estimated.
    failed = [c for c in receipt.charges if c.status == "failed"]
    assert paid > 0 and all(c.estimated and c.usd > 0 and c.samples == 1 for c in failed)
    assert receipt.cost_usd == pytest.approx(paid + sum(c.usd for c in failed))
    assert info.value.endpoint == "FunctionEndpoint(fake)"
    assert fake.started == fake.ended


@pytest.mark.asyncio
async def test_a_failing_user_function_keeps_its_exception_type_and_gets_a_receipt() -> None:
    fake = Fake(lambda seed: RuntimeError("bug in my code"))
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False))
    with pytest.raises(RuntimeError, match="bug in my code") as info:
        await client.run("q?", strategy=SelfConsistency(n=2), seed=0)
    receipt = info.value.receipt  # type: ignore[attr-defined]
    assert isinstance(receipt, Result)
    assert receipt.cost_usd == 0.0 and len(receipt.charges) == 2


@pytest.mark.asyncio
async def test_a_partial_failure_continues() -> None:
    fake = Fake(lambda seed: ResponseError("flaky") if seed == 1 else "9")
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False))
    result = await client.run("q?", strategy=SelfConsistency(n=4), seed=0)
    assert result.answer == "9"
    assert result.votes == {"9": 4}  # n answers: the failed sample is drawn again
    assert sorted(c.status for c in result.charges) == ["failed", "ok", "ok", "ok", "ok"]
    assert result.rounds == 2
    errors = [e for e in result.trace if e.kind == "error"]
    assert len(errors) == 1 and errors[0].data["error"] == "ResponseError"
    assert "flaky" in errors[0].data["message"]


# -- trace, budget stop, reproducibility, calibration ------------------------------------


@pytest.mark.asyncio
async def test_trace_has_decide_events_with_the_numbers() -> None:
    fake = Fake(split)
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False))
    result = await client.run("q?", strategy=AdaptiveConsistency(), seed=0, budget=Budget(usd=1.0))
    decides = [e for e in result.trace if e.kind == "decide"]
    assert len(decides) >= 2
    later = [e for e in decides if e.data["samples"] > 0]
    assert later
    for e in later:
        d = e.data
        assert 0.0 <= d["confidence"] <= 1.0
        assert d["marginal_gain"] is not None
        assert d["spent_usd"] > 0
        assert 0 < d["remaining_usd"] < 1.0
        assert d["votes"]
    cont = [e for e in decides if e.data["action"] == "continue"]
    assert all(e.data["calls"] >= 1 and e.data["reserved_usd"] > 0 for e in cont)
    assert all(e.data["next_batch"] >= 1 and e.data["next_cost_usd"] > 0 for e in cont)
    # The last decision names the rule the receipt names.
    assert decides[-1].data["action"] == "stop"
    assert decides[-1].data["reason"] == result.stop_reason


@pytest.mark.asyncio
async def test_budget_exhausted_fires_when_no_sample_fits() -> None:
    fake = Fake(split)
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False))
    result = await client.run(
        "q?",
        strategy=AdaptiveConsistency(),
        stop=confident(0.999) | budget_exhausted(),
        seed=0,
        budget=Budget(samples=5),
    )
    assert result.stop_reason == "budget"
    assert result.stop is not None and result.stop.rule == "budget_exhausted"
    assert result.generated == 5
    last = [e for e in result.trace if e.kind == "decide"][-1]
    assert last.data["next_batch"] == 0


@pytest.mark.asyncio
async def test_without_budget_exhausted_the_reason_is_budget() -> None:
    fake = Fake(split)
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False))
    result = await client.run(
        "q?", strategy=AdaptiveConsistency(), stop=confident(0.999), seed=0, budget=Budget(samples=5)
    )
    assert result.stop_reason == "budget"
    assert result.generated == 5


@pytest.mark.asyncio
@pytest.mark.parametrize("batch_as_n", [False, True])
async def test_seeded_runs_are_reproducible_decision_for_decision(batch_as_n: bool) -> None:
    async def once() -> Result:
        fake = Fake(split)
        client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=batch_as_n))
        return await client.run(
            "q?",
            strategy=AdaptiveConsistency(),
            stop=confident(0.95) | low_marginal_gain(0.002),
            seed=11,
            budget=Budget(usd=0.05),
        )

    a, b = await once(), await once()
    assert strip_times(a) == strip_times(b)
    assert [s.answer for s in a.samples] == [s.answer for s in b.samples]
    assert a.cost_usd == b.cost_usd and a.answer == b.answer and a.stop_reason == b.stop_reason
    assert sum(1 for e in a.trace if e.kind == "decide") >= 2


@pytest.mark.asyncio
async def test_the_client_prior_learns_across_calls() -> None:
    fake = Fake(lambda seed: "1")
    client = Client(fake.endpoint(), controller=ControllerConfig(batch_as_n=False))
    before = client.prior.confidence(2, 0)
    assert before == pytest.approx(beta_confidence(2, 0), abs=1e-3)
    for i in range(30):
        await client.run("q?", strategy=AdaptiveConsistency(), seed=100 * i)
    after = client.prior.confidence(2, 0)
    assert after > before + 0.03
    assert sum(client.prior.counts.values()) == 30


@pytest.mark.asyncio
async def test_calibrate_off_keeps_the_prior() -> None:
    fake = Fake(lambda seed: "1")
    prior = ConsistencyPrior()
    client = Client(fake.endpoint(), controller=ControllerConfig(calibrate=False), prior=prior)
    assert client.prior is prior
    for i in range(5):
        await client.run("q?", strategy=AdaptiveConsistency(), seed=i)
    assert not prior.counts
