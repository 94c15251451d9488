"""Latency: batch sizing per latency setting, rounds from the trace, work overlapped in a round."""

from __future__ import annotations

import math

import anyio
import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency
from adaptive_strategies.best_of_n import BestOfN
from adaptive_strategies.verifiers import LLMJudge, RewardModel

from adaptive import (
    Budget,
    Client,
    Completion,
    ControllerConfig,
    FunctionEndpoint,
    Price,
    Request,
    Result,
    Sampling,
    State,
    TraceEvent,
)
from adaptive._batching import hypothetical, split_hypothetical
from adaptive._latency import (
    BALANCED_MARGIN,
    FAST_OVERDRAW,
    FAST_WAIT_QUANTILE,
    RoundClock,
    batch_for,
    rounds_that_fit,
    singles_for,
)
from adaptive.sim import SimEndpoint, demo_problems

PRICE = Price(input=1.0, output=4.0)


def send_rounds(result: Result) -> int:
    return len({e.round for e in result.trace if e.kind == "send"})


def first_batch(result: Result) -> int:
    """Samples asked for before anything came back."""
    out = 0
    for e in result.trace:
        if e.kind == "done":
            break
        if e.kind == "send" and e.data["purpose"] == "generate":
            out += e.data["n"]
    return out


def round_samples(result: Result, rnd: int) -> int:
    """Samples asked for in one round (requests' n, generate only)."""
    return sum(
        e.data["n"]
        for e in result.trace
        if e.kind == "send" and e.round == rnd and e.data["purpose"] == "generate"
    )


# -- pure sizing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latency", "first", "expected_k"),
    [
        ("cheap", True, 4),
        ("cheap", False, 4),
        (None, False, 4),
        ("balanced", True, 4),
        ("balanced", False, math.ceil(9 * BALANCED_MARGIN)),
        ("fast", True, 4 * FAST_OVERDRAW),
        ("fast", False, 16),
    ],
)
def test_batch_for_each_setting(latency: str | None, first: bool, expected_k: int) -> None:
    k = batch_for(latency, least=4, expected=9, cap=16, first=first)  # type: ignore[arg-type]
    assert k == expected_k


def test_batch_for_never_goes_over_the_cap_and_the_deadline_asks_for_it() -> None:
    assert batch_for("fast", least=9, expected=30, cap=16, first=True) == 16
    assert batch_for("balanced", least=4, expected=30, cap=10, first=False) == 10
    assert batch_for("balanced", least=4, expected=2, cap=10, first=False) == 4  # never below least
    # The margin over the expected case, rounded up, never past the cap.
    assert batch_for("balanced", least=1, expected=3, cap=10, first=False) == math.ceil(3 * BALANCED_MARGIN)
    assert batch_for("balanced", least=1, expected=9, cap=10, first=False) == 10
    # A least at or above the cap is returned as it is (the caller's caps apply after).
    assert batch_for("fast", least=16, expected=16, cap=16, first=True) == 16
    # One round left before the deadline: everything the rules may need, whatever the setting.
    for latency in ("cheap", "balanced", "fast"):
        assert batch_for(latency, least=3, expected=5, cap=12, first=False, rounds_left=1) == 12  # type: ignore[arg-type]
        assert batch_for(latency, least=3, expected=5, cap=12, first=False, rounds_left=0) == 12  # type: ignore[arg-type]
    assert batch_for("cheap", least=3, expected=5, cap=12, first=False, rounds_left=2) == 3


def test_rounds_that_fit_and_singles() -> None:
    assert rounds_that_fit(None, 1.0) is None
    assert rounds_that_fit(10.0, None) is None
    assert rounds_that_fit(10.0, 0.0) is None
    assert rounds_that_fit(10.0, 3.0) == 3
    assert rounds_that_fit(2.0, 3.0) == 0
    assert singles_for("fast", first=True) and singles_for("fast", first=False)
    assert not singles_for("balanced", first=True) and not singles_for("balanced", first=False)
    assert not singles_for("cheap", first=False) and not singles_for(None, first=False)


def test_round_clock_learns_per_endpoint() -> None:
    clock = RoundClock(weight=0.5)
    assert clock.per_round("a") is None
    clock.observe("a", 2.0)
    clock.observe("a", 4.0)
    clock.observe("b", 1.0)
    clock.observe("b", float("nan"))  # ignored
    assert clock.per_round("a") == pytest.approx(3.0)
    assert clock.per_round("b") == pytest.approx(1.0)


def test_round_clock_first_wait_is_a_nearest_rank_quantile_over_a_window() -> None:
    clock = RoundClock(window=4)
    assert clock.first_wait("a", 0.5) is None  # nothing seen: no timed top-up
    for s in (0.4, 0.1, 0.3, 0.2):
        clock.observe_first("a", s)
    clock.observe_first("a", float("inf"))  # ignored
    clock.observe_first("a", -1.0)  # ignored
    assert clock.first_wait("a", 0.5) == 0.2
    assert clock.first_wait("a", 0.75) == 0.3
    assert clock.first_wait("a", 1.0) == 0.4 and clock.first_wait("a", 0.0) == 0.1
    clock.observe_first("a", 5.0)  # the window keeps the last 4: 0.4 falls out
    assert clock.first_wait("a", 1.0) == 5.0 and clock.first_wait("a", 0.5) == 0.2
    assert clock.first_wait("b", 0.5) is None  # per endpoint


def _state(votes: dict[str, int]) -> State:
    from adaptive._batching import ordered

    v = ordered(votes)
    return State(
        round=1,
        samples=sum(v.values()),
        votes=v,
        abstentions=0,
        history=tuple(a for a, n in v.items() for _ in range(n)),
        weights={},
        scores=(),
        best_score=None,
        spent_usd=0.0,
        spent_tokens=0,
        elapsed=0.0,
        remaining_usd=None,
        remaining_tokens=None,
        remaining_samples=None,
        remaining_seconds=None,
        next_batch=1,
        next_cost_usd=None,
        next_tokens=0,
        confidence=None,
        marginal_gain=None,
    )


def test_split_hypothetical_shares_votes_in_proportion() -> None:
    def assessor(votes: dict[str, int]) -> tuple[float | None, None]:
        return None, None

    s = split_hypothetical(_state({"a": 3, "b": 1}), 8, assessor)
    assert s.votes == {"a": 9, "b": 3} and s.samples == 12 and len(s.history) == 12
    s = split_hypothetical(_state({"a": 1, "b": 1, "c": 1}), 4, assessor)
    assert sum(s.votes.values()) == 7 and s.votes["a"] == 3  # the remainder goes to the leader first
    # No votes yet: like the best case, all to the leader.
    empty = _state({})
    assert split_hypothetical(empty, 5, assessor).votes == hypothetical(empty, 5, assessor).votes


def test_expected_batch_is_at_least_the_best_case() -> None:
    from adaptive import confident
    from adaptive._controller import Controller

    c = Controller()
    rule = confident(0.95)
    for votes in ({"a": 2, "b": 1}, {"a": 3, "b": 2}, {"a": 4}):
        st = _state(votes)
        least = c.next_batch(st, rule, cap=40)
        expected = c.expected_batch(st, rule, cap=40)
        assert least <= expected <= 40
    # A split vote needs more samples in the expected case than in the best case.
    st = _state({"a": 3, "b": 2})
    assert c.expected_batch(st, rule, cap=40) > c.next_batch(st, rule, cap=40)


# -- end to end ------------------------------------------------------------------------------


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": demo_problems(12, seed=3)[i].question}]


@pytest.mark.asyncio
async def test_fixed_self_consistency_sends_all_samples_in_one_round() -> None:
    for supports_n in (True, False):
        ep = SimEndpoint()
        ep.supports_n = supports_n
        async with Client(ep) as client:
            result = await client.run(
                _messages(0), strategy=SelfConsistency(n=8), budget=Budget(usd=1.0), seed=1
            )
        assert send_rounds(result) == 1
        assert round_samples(result, 0) == 8 and result.generated == 8


@pytest.mark.asyncio
async def test_best_of_n_scores_the_first_candidate_before_the_last_arrives() -> None:
    scored = anyio.Event()

    async def gen(request: Request) -> str:
        assert request.seed is not None
        if request.seed % 4 == 3:  # the last candidate: it comes back only once one was scored
            with anyio.fail_after(10):  # a controller that scores after all arrive deadlocks here
                await scored.wait()
        return f"Work.\nThe answer is {request.seed % 4}."

    async def rm(request: Request) -> Completion:
        scored.set()
        assert request.messages is not None
        return Completion(text="", score=0.5 if request.messages[-1].content.endswith("2.") else 0.1)

    generator = FunctionEndpoint(gen, name="gen", price=PRICE)
    reward = FunctionEndpoint(rm, name="rm", price=PRICE)
    async with Client(generator) as client:
        result = await client.run(
            "q?", strategy=BestOfN(n=4, verifier=RewardModel(endpoint=reward)), budget=Budget(usd=1.0), seed=0
        )
    assert result.answer == "2" and result.generated == 4
    kinds = [(e.kind, e.data.get("purpose")) for e in result.trace if e.kind in ("send", "done")]
    first_verify = kinds.index(("send", "verify"))
    last_generate = max(i for i, k in enumerate(kinds) if k == ("done", "generate"))
    assert first_verify < last_generate
    assert send_rounds(result) == 1


@pytest.mark.asyncio
async def test_best_of_n_score_threshold_stops_a_single_round_early() -> None:
    gate = anyio.Event()

    async def gen(request: Request) -> str:
        assert request.seed is not None
        if request.seed % 8 != 0:
            with anyio.fail_after(10):
                await gate.wait()  # never set: only a stop ends these (they are cancelled)
        return f"Work.\nThe answer is {request.seed % 8}."

    async def rm(request: Request) -> Completion:
        return Completion(text="", score=0.99)

    from adaptive import score_threshold

    generator = FunctionEndpoint(gen, name="gen", price=PRICE)
    reward = FunctionEndpoint(rm, name="rm", price=PRICE)
    async with Client(generator) as client:
        result = await client.run(
            "q?",
            strategy=BestOfN(n=8, verifier=RewardModel(endpoint=reward), one_per_request=True),
            budget=Budget(usd=1.0),
            stop=score_threshold(0.9),
            seed=0,
        )
    assert result.answer == "0" and result.generated == 1
    assert result.stop_reason != "strategy_done"
    cancelled = [e for e in result.trace if e.kind == "cancel"]
    assert len(cancelled) == 7 and send_rounds(result) == 1


@pytest.mark.asyncio
async def test_latency_settings_change_round_counts_as_documented() -> None:
    sampling = Sampling(max_tokens=384, temperature=0.7)
    rounds: dict[str, list[int]] = {}
    first: dict[str, list[int]] = {}
    for latency in ("cheap", "balanced", "fast"):
        strategy = AdaptiveConsistency(sampling=sampling, latency=latency)
        # Not calibrated: each setting's calls then start from the same prior.
        async with Client(SimEndpoint(), controller=ControllerConfig(calibrate=False)) as client:
            for i in range(12):
                result = await client.run(
                    _messages(i), strategy=strategy, budget=Budget(usd=1.0), seed=100 * i
                )
                rounds.setdefault(latency, []).append(send_rounds(result))
                first.setdefault(latency, []).append(first_batch(result))
    # The first batch: "balanced" is "cheap"'s; "fast" draws FAST_OVERDRAW times as many.
    assert first["balanced"] == first["cheap"], first
    cap = ControllerConfig().max_batch
    pairs = zip(first["fast"], first["cheap"], strict=True)
    assert all(f == min(cap, FAST_OVERDRAW * c) for f, c in pairs), first
    # Fewer sequential rounds the faster the setting; "fast" tops up in the round instead.
    assert sum(rounds["fast"]) <= sum(rounds["balanced"]) <= sum(rounds["cheap"])
    assert sum(rounds["fast"]) < sum(rounds["cheap"])
    assert max(rounds["fast"]) == 1


@pytest.mark.asyncio
async def test_a_seconds_budget_asks_for_the_cap_in_the_last_round_that_fits() -> None:
    strategy = AdaptiveConsistency(sampling=Sampling(max_tokens=384, temperature=0.7), latency="cheap")
    ep = SimEndpoint()
    async with Client(ep) as client:
        client.controller.clock.observe(ep.name, 100.0)  # learned: a round takes 100 s here
        result = await client.run(
            _messages(1), strategy=strategy, budget=Budget(usd=1.0, seconds=150), seed=7
        )
    # Only one round fits 150 s: the first batch is the cap (max_batch, 40 like max_samples),
    # not the fewest that could stop.
    assert round_samples(result, 0) == ControllerConfig().max_batch == strategy.max_samples


@pytest.mark.asyncio
async def test_best_of_n_verifier_seeds_follow_the_candidate_not_its_arrival() -> None:
    # Candidates come back in reverse order of their seeds; each is scored as it arrives, and
    # its verifier call is seeded like the candidate itself (as when scored in order).
    arrived: list[int] = []
    gates = {i: anyio.Event() for i in range(4)}

    async def gen(request: Request) -> str:
        assert request.seed is not None
        i = request.seed - 50
        if i < 3:
            with anyio.fail_after(10):
                await gates[i + 1].wait()
        arrived.append(i)
        gates[i].set()
        return f"Work.\nThe answer is {i}."

    pairs: list[tuple[str, int | None]] = []

    async def judge(request: Request) -> str:
        assert request.messages is not None
        asked = request.messages[-1].content
        answer = next(str(i) for i in range(4) if f"The answer is {i}." in asked)
        pairs.append((answer, request.seed))
        return "Score: 5"

    generator = FunctionEndpoint(gen, name="gen", price=PRICE)
    judging = FunctionEndpoint(judge, name="judge", price=PRICE)
    async with Client(generator) as client:
        result = await client.run(
            "q?", strategy=BestOfN(n=4, verifier=LLMJudge(endpoint=judging)), budget=Budget(usd=1.0), seed=50
        )
    assert arrived == [3, 2, 1, 0] and result.generated == 4
    assert sorted(pairs) == [(str(i), 50 + i) for i in range(4)]
    assert [a for a, _ in pairs] == ["3", "2", "1", "0"]  # scored in arrival order


@pytest.mark.asyncio
async def test_beam_search_scores_a_step_before_the_rounds_last_expansion_arrives() -> None:
    import sys
    from pathlib import Path

    from adaptive_strategies.beam_search import BeamSearch
    from adaptive_strategies.verifiers import ProcessRewardModel

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import latency as bench

    scored = anyio.Event()

    async def gen(request: Request) -> list[str]:
        last = (request.prefill or "").strip().split("\n\n")[-1]
        if last == "step B":  # the second beam's expansion comes back only once a step of
            with anyio.fail_after(10):  # the first beam's was scored: two rounds deadlock here
                await scored.wait()
        depth = len([s for s in (request.prefill or "").split("\n\n") if s.strip()])
        if depth == 1:
            return [f"{last} then {c}. The answer is {i}." for i, c in enumerate("AB"[: request.n])]
        return [f"step {c}" for c in "ABCD"[: request.n]]

    async def prm(request: Request) -> Completion:
        assert request.messages is not None
        if request.messages[-1].content.count("\n\n") == 1:  # a second step
            scored.set()
        return Completion(text="", score=0.9 if "step A" in request.messages[-1].content else 0.5)

    generator = FunctionEndpoint(gen, name="gen", price=PRICE, supports_n=True, supports_prefill=True)
    reward = FunctionEndpoint(prm, name="prm", price=PRICE)
    strategy = BeamSearch(width=2, candidates=4, prm=ProcessRewardModel(endpoint=reward))
    async with Client(generator) as client:
        result = await client.run("q?", strategy=strategy, budget=Budget(usd=1.0), seed=0)
    assert result.details["rounds"] == 2 and result.details["finished"]
    # Two steps, two sequential rounds as the benchmark counts them (each step's scoring
    # overlaps its expansions), and each round holds both.
    assert bench.send_rounds(result) == send_rounds(result) == result.rounds == 2
    purposes = {(e.round, e.data["purpose"]) for e in result.trace if e.kind == "send"}
    assert purposes == {(r, p) for r in (0, 1) for p in ("generate", "verify")}


def test_the_benchmark_reports_every_row_and_streams_over_http(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import latency as bench

    logger = logging.getLogger("adaptive")
    before = logger.level
    argv = ["--questions", "4", "--scale", "0.02", "--setting", "50ms+2ms/tok", "--json"]
    assert bench.main([*argv, "--strategies", "adaptive", "adaptive-fast"]) == 0
    assert logger.level == before  # the benchmark quiets the logger only while it measures
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("50ms+2ms/tok inproc", "50ms+2ms/tok http"):
        table = out["settings"][key]
        assert set(table) == {"single", "adaptive", "adaptive-fast", bench.ONE_ROUND}
        # The hindsight row draws each question's default sample count, in one round.
        assert table[bench.ONE_ROUND]["mean_samples"] == table["adaptive"]["mean_samples"]
        assert table[bench.ONE_ROUND]["mean_rounds"] == 1.0
        assert table["single"]["mean_cancelled"] == 0.0
    assert set(out["strategies"]["adaptive"]) == {
        "p50_ratio",
        "p95_ratio",
        "mean_usd",
        "mean_samples",
        "mean_rounds",
    }


def test_the_benchmark_can_run_the_http_server_in_the_measured_loop(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import latency as bench

    argv = ["--questions", "2", "--scale", "0.02", "--setting", "50ms+2ms/tok", "--transport", "http"]
    assert bench.main([*argv, "--server", "loop", "--strategies", "single", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["server"] == "loop" and set(out["settings"]) == {"50ms+2ms/tok http server-in-loop"}


@pytest.mark.asyncio
async def test_the_benchmarks_http_reasoner_streams_so_a_cancel_is_charged_what_it_used() -> None:
    import sys
    from pathlib import Path

    from adaptive.cli._demo import INSTRUCTIONS
    from adaptive.sim import demo_problems

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    import latency as bench

    problem = demo_problems(1, seed=0)[0]
    messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": problem.question}]
    async with bench.endpoints("http", 0.005, 0.0005) as setup:
        assert setup.generator.stream_responses  # type: ignore[attr-defined]
        strategy = bench.strategies(setup)["adaptive-fast"]
        async with Client(setup.generator) as client:
            result = await client.run(messages, strategy=strategy, budget=Budget(usd=0.01), seed=1000)
    cancelled = [c for c in result.charges if c.status == "cancelled"]
    done = [c for c in result.charges if c.status == "ok"]
    (max_tokens,) = {e.data["max_tokens"] for e in result.trace if e.kind == "send"}
    assert cancelled and done  # "fast" cancelled the samples it no longer needed
    for c in cancelled:
        # What it streamed, not the worst case; the prompt at the exact count the answers
        # that came back reported while it was out, not the byte bound it was reserved at.
        assert 0 < c.usage.completion_tokens < max_tokens
        assert c.usage.prompt_tokens == done[0].usage.prompt_tokens


# -- "fast": the timed top-up ------------------------------------------------------------------


def _is_timed(e: TraceEvent) -> bool:
    """Whether a trace event is the timed top-up's decision."""
    return e.kind == "decide" and "no sample back yet" in str(e.data.get("note", ""))


def _timed_notes(result: Result) -> list[str]:
    return [e.data["note"] for e in result.trace if _is_timed(e)]


def _before_timed(result: Result) -> int:
    """Samples asked for before the timed top-up's decision."""
    out = 0
    for e in result.trace:
        if _is_timed(e):
            return out
        if e.kind == "send" and e.data["purpose"] == "generate":
            out += e.data["n"]
    raise AssertionError("no timed top-up")


def _unanimous(delay: float, calls: list[int]) -> FunctionEndpoint:
    async def gen(request: Request) -> str:
        calls.append(1)
        await anyio.sleep(delay)
        return "Work.\nThe answer is 7."

    return FunctionEndpoint(gen, name="gen", price=PRICE)


async def _fast_call(ep: FunctionEndpoint, learned: float, usd: float = 1.0, max_tokens: int = 384) -> Result:
    """One uncalibrated "fast" call on `ep`, the client having learned `learned` s as the wait."""
    strategy = AdaptiveConsistency(latency="fast", sampling=Sampling(max_tokens=max_tokens))
    async with Client(ep, controller=ControllerConfig(calibrate=False)) as client:
        client.controller.clock.observe_first(ep.name, learned)
        return await client.run("q?", strategy=strategy, budget=Budget(usd=usd), seed=0)


@pytest.mark.asyncio
async def test_fast_tops_up_to_the_cap_when_no_sample_is_back_by_the_learned_wait() -> None:
    calls: list[int] = []
    result = await _fast_call(_unanimous(0.3, calls), 0.02)  # learned: a first sample in 20 ms
    sent = len(calls)
    await anyio.sleep(0.4)  # nothing of the call is left running once it returned
    assert len(calls) == sent and result.answer == "7"
    async with Client(_unanimous(0.0, []), controller=ControllerConfig(calibrate=False)) as client:
        cheap = await client.run("q?", strategy=AdaptiveConsistency(latency="cheap"), budget=Budget(usd=1.0))
    first = _before_timed(result)
    assert first == FAST_OVERDRAW * first_batch(cheap)  # the first batch, as without the timer
    assert _timed_notes(result) == [f"top up {40 - first}: no sample back yet"]
    # One round: the first batch, then the top-up to the cap (max_batch = max_samples = 40)
    # while it was out; the rules stopped on the first answers back and cancelled the rest.
    assert send_rounds(result) == 1 and round_samples(result, 0) == 40 == sent
    assert result.generated < 40 and any(e.kind == "cancel" for e in result.trace)
    assert sum(c.status == "cancelled" for c in result.charges) == 40 - result.generated


@pytest.mark.asyncio
async def test_fast_does_not_top_up_on_time_when_a_sample_is_back_first_nor_wait_on_the_timer() -> None:
    with anyio.fail_after(10):  # a round that waited on its 30 s timer would fail here
        result = await _fast_call(_unanimous(0.0, []), 30.0)
    assert result.answer == "7" and _timed_notes(result) == []
    assert round_samples(result, 0) == first_batch(result)


@pytest.mark.asyncio
async def test_only_fast_first_rounds_are_timed_and_a_client_learns_the_wait_from_its_calls() -> None:
    for latency in ("balanced", "cheap"):
        calls: list[int] = []
        ep = _unanimous(0.05, calls)
        async with Client(ep) as client:
            client.controller.clock.observe_first(ep.name, 0.001)
            result = await client.run(
                "q?", strategy=AdaptiveConsistency(latency=latency), budget=Budget(usd=1.0), seed=0
            )
        assert _timed_notes(result) == [], latency
    calls = []
    ep = _unanimous(0.05, calls)
    async with Client(ep) as client:
        clock = client.controller.clock
        assert clock.first_wait(ep.name, FAST_WAIT_QUANTILE) is None
        result = await client.run(
            "q?", strategy=AdaptiveConsistency(latency="fast"), budget=Budget(usd=1.0), seed=0
        )
        assert _timed_notes(result) == []  # nothing learned yet: no timer on the first call
        wait = clock.first_wait(ep.name, FAST_WAIT_QUANTILE)
        assert wait is not None and 0.04 < wait < 5.0


@pytest.mark.asyncio
async def test_a_timed_top_up_sends_only_what_the_budget_holds() -> None:
    # A sample's worst case here is about $0.00043 (what a cancel of this unstreamed endpoint
    # is charged too): $0.0086 holds the first batch and some more, not the cap of 40.
    result = await _fast_call(_unanimous(0.3, []), 0.02, usd=0.0086, max_tokens=100)
    assert len(_timed_notes(result)) == 1
    assert _before_timed(result) < round_samples(result, 0) < 40
    assert result.cost_usd <= 0.0086 and result.answer == "7"
