"""Best-of-n end to end through `Client`, on scripted endpoints and on the simulator."""

from __future__ import annotations

from typing import Any

import pytest
from adaptive_strategies.best_of_n import BestOfN
from adaptive_strategies.verifiers import (
    ExactChecker,
    FunctionVerifier,
    LLMJudge,
    ProcessRewardModel,
    RewardModel,
)

from adaptive import (
    Budget,
    Client,
    Completion,
    ConfigError,
    Final,
    FunctionEndpoint,
    Price,
    Request,
    Result,
    Sampling,
    score_threshold,
    strategy_from_config,
)
from adaptive.sim import SimEndpoint, SimRewardEndpoint, demo_problems

GEN_PRICE = Price(input=1.0, output=4.0)
RM_PRICE = Price(input=0.5, output=0.5)


def generator(answers: list[str], *, supports_n: bool = False, pad: int = 0) -> FunctionEndpoint:
    """Sample i (seeded run: seed = base + i) answers answers[i % len] after `pad` bytes of work."""

    def text(i: int) -> str:
        return "Work" + "." * pad + f"\nThe answer is {answers[i % len(answers)]}."

    async def fn(request: Request) -> str | list[str]:
        assert request.seed is not None
        if supports_n:
            return [text(request.seed + i) for i in range(request.n)]
        return text(request.seed)

    return FunctionEndpoint(fn, name="gen", price=GEN_PRICE, supports_n=supports_n)


def reward(scores: dict[str, float], *, name: str = "rm") -> FunctionEndpoint:
    """Score a candidate by its answer."""

    async def fn(request: Request) -> Completion:
        assert request.messages is not None and request.messages[-1].role == "assistant"
        answer = request.messages[-1].content.rsplit(" ", 1)[-1].rstrip(".")
        return Completion(text="", score=scores.get(answer))

    return FunctionEndpoint(fn, name=name, price=RM_PRICE)


def verify_samples(result: Result) -> list[Any]:
    return [s for s in result.samples if s.purpose == "verify"]


def strip_times(result: Result) -> list[tuple[str, int, dict[str, Any]]]:
    return [(e.kind, e.round, {k: v for k, v in e.data.items() if k != "elapsed"}) for e in result.trace]


@pytest.mark.asyncio
async def test_max_picks_the_best_scored_candidate_and_bills_the_verifier() -> None:
    gen = generator(["3", "5", "7", "5"])
    rm = reward({"3": 0.2, "5": 0.4, "7": 0.9})
    async with Client(gen) as client:
        result = await client.run("q?", strategy=BestOfN(n=8, verifier=RewardModel(endpoint=rm)), seed=0)
    assert result.answer == "7"
    assert result.text is not None and result.text.endswith("7.")
    assert result.generated == 8
    assert result.details["scores"] == [0.2, 0.4, 0.9, 0.4] * 2
    assert result.details["best_score"] == 0.9 and result.confidence == 0.9
    checks = verify_samples(result)
    assert len(checks) == 8 and all(s.endpoint == rm.name and s.score is not None for s in checks)
    # Verifier calls are charged at the verifier's price, on the receipt, inside the total.
    rm_charges = [c for c in result.charges if c.endpoint == rm.name]
    assert len(rm_charges) == 8
    assert all(c.usd == pytest.approx(RM_PRICE.cost_usd(c.usage)) and c.usd > 0 for c in rm_charges)
    assert result.cost_usd == pytest.approx(sum(c.usd for c in result.charges))
    assert result.cost_usd > sum(c.usd for c in rm_charges)
    assert result.stop_reason == "strategy_done"
    # One round: each candidate is scored as soon as it arrives, in the round that made it.
    decisions = [e.data for e in result.trace if e.kind == "decide" and e.data.get("action") == "continue"]
    assert [d["note"] for d in decisions] == ["generate up to 8 candidate(s)"]
    sends = [e for e in result.trace if e.kind == "send"]
    assert {e.round for e in sends} == {0} and sum(e.data["purpose"] == "verify" for e in sends) == 8


@pytest.mark.asyncio
async def test_weighted_majority_sums_scores_per_answer() -> None:
    gen = generator(["5", "7", "5", "5"], supports_n=True)
    rm = reward({"5": 0.5, "7": 0.9})
    async with Client(gen) as client:
        weighted = await client.run(
            "q?", strategy=BestOfN(n=4, verifier=RewardModel(endpoint=rm), select="weighted_majority"), seed=0
        )
        best = await client.run("q?", strategy=BestOfN(n=4, verifier=RewardModel(endpoint=rm)), seed=0)
    assert weighted.answer == "5" and best.answer == "7"
    assert weighted.details["weights"] == {"5": pytest.approx(1.5), "7": pytest.approx(0.9)}
    assert weighted.confidence == pytest.approx(1.5 / 2.4)
    assert weighted.votes == {"5": 3, "7": 1}


@pytest.mark.asyncio
async def test_score_threshold_stops_between_batches() -> None:
    gen = generator(["1", "2", "9", "3", "4", "5"])
    rm = reward({"1": 0.1, "2": 0.2, "9": 0.95, "3": 0.3, "4": 0.4, "5": 0.5})
    strategy = BestOfN(n=12, batch=2, verifier=RewardModel(endpoint=rm))
    async with Client(gen) as client:
        stopped = await client.run("q?", strategy=strategy, stop=score_threshold(0.9), seed=0)
        full = await client.run("q?", strategy=strategy, seed=0)
    # Batches of two: [1, 2] then [9, 3]; 0.95 >= 0.9 ends it before a third batch.
    assert stopped.stop_reason == "confident" and stopped.stop is not None
    assert stopped.stop.rule == "score_threshold"
    assert stopped.generated == 4 and len(verify_samples(stopped)) == 4
    assert stopped.answer == "9"
    assert full.generated == 12 and full.answer == "9" and full.cost_usd > stopped.cost_usd


@pytest.mark.asyncio
async def test_tight_budget_scores_every_candidate_it_pays_for() -> None:
    # Candidates of about max_tokens tokens (four bytes each), so generation costs its worst case.
    gen = generator(["3", "5", "7"], pad=230)
    rm = reward({"3": 0.2, "5": 0.4, "7": 0.9})
    strategy = BestOfN(n=16, verifier=RewardModel(endpoint=rm), sampling=Sampling(max_tokens=64))
    async with Client(gen) as client:
        free = await client.run("q?", strategy=strategy, seed=0)
        budget = Budget(usd=free.cost_usd * 0.3)
        tight = await client.run("q?", strategy=strategy, seed=0, budget=budget)
        with pytest.warns(Final.Warning, match="scored none of the"):  # every scoring call refused
            careless = await client.run(
                "q?",
                strategy=strategy.model_copy(update={"reserve_for_scoring": False}),
                seed=0,
                budget=budget,
            )
    assert 1 <= tight.generated < 16
    assert tight.details["scored"] == tight.generated  # nothing paid for went unscored
    assert tight.cost_usd <= budget.usd  # type: ignore[operator]
    # Without holding budget back for scoring, generation eats it and candidates go unscored.
    assert careless.details["scored"] < careless.generated
    assert careless.cost_usd <= budget.usd  # type: ignore[operator]


@pytest.mark.asyncio
async def test_unscored_candidates_and_fallback() -> None:
    gen = generator(["3", "5", "5"])
    replies = {"3": "Score: 8", "5": "looks fine"}

    async def judge_fn(request: Request) -> str:
        assert request.messages is not None
        content = request.messages[-1].content
        return next(r for a, r in replies.items() if f"answer is {a}." in content)

    judge = FunctionEndpoint(judge_fn, name="judge")
    async with Client(gen) as client:
        some = await client.run("q?", strategy=BestOfN(n=3, verifier=LLMJudge(endpoint=judge)), seed=0)
        replies["3"] = "hmm"
        with pytest.warns(Final.Warning, match="scored none of the 3 candidates.*plain majority"):
            none = await client.run("q?", strategy=BestOfN(n=3, verifier=LLMJudge(endpoint=judge)), seed=0)
    # The only scored candidate wins over the unparseable majority.
    assert some.answer == "3" and some.details["scored"] == 1 and not some.details["fallback"]
    assert some.details["scores"] == [pytest.approx(0.8), None, None]
    # Nothing scored: plain majority over all candidates.
    assert (
        none.answer == "5" and none.details["fallback"].startswith("majority") and none.details["scored"] == 0
    )


@pytest.mark.asyncio
async def test_local_and_async_function_verifiers() -> None:
    gen = generator(["3", "42", "5"])
    async with Client(gen) as client:
        exact = await client.run("q?", strategy=BestOfN(n=3, verifier=ExactChecker("42")), seed=0)

        async def check(question: str, solution: str) -> float:
            return 1.0 if solution.endswith("5.") else 0.0

        fn = await client.run("q?", strategy=BestOfN(n=3, verifier=FunctionVerifier(check)), seed=0)
    assert exact.answer == "42" and verify_samples(exact) == [] and exact.rounds == 1
    assert fn.answer == "5"
    checks = verify_samples(fn)
    assert len(checks) == 3 and all(s.endpoint == "FunctionEndpoint(verifier:check)" for s in checks)
    verify_cost = sum(c.usd for c in fn.charges if c.endpoint == "FunctionEndpoint(verifier:check)")
    assert verify_cost == 0.0


@pytest.mark.asyncio
async def test_prm_as_outcome_verifier_aggregates_steps() -> None:
    async def gen_fn(request: Request) -> str:
        assert request.seed is not None
        return ["a\n\nb\n\nThe answer is 1.", "c\n\nThe answer is 2."][request.seed % 2]

    async def prm_fn(request: Request) -> Completion:
        assert request.messages is not None
        steps = request.messages[-1].content.split("\n\n")
        table = {"a": 0.2, "b": 0.9, "c": 0.6, "The answer is 1.": 0.95, "The answer is 2.": 0.7}
        return Completion(text="[" + ", ".join(str(table[s]) for s in steps) + "]")

    prm = ProcessRewardModel(endpoint=FunctionEndpoint(prm_fn, name="prm"), aggregation="min")
    async with Client(FunctionEndpoint(gen_fn, name="gen")) as client:
        by_min = await client.run("q?", strategy=BestOfN(n=2, verifier=prm), seed=0)
        by_last = await client.run("q?", strategy=BestOfN(n=2, verifier=prm, aggregation="last"), seed=0)
    assert by_min.answer == "2" and by_min.details["scores"] == [0.2, 0.6]
    assert by_last.answer == "1" and by_last.details["scores"] == [0.95, 0.7]


@pytest.mark.asyncio
async def test_seeded_runs_reproduce_decision_for_decision() -> None:
    gen = generator(["3", "5", "7", "5", "2"])
    rm = reward({"3": 0.2, "5": 0.4, "7": 0.9, "2": 0.1})
    strategy = BestOfN(n=10, batch=3, verifier=RewardModel(endpoint=rm), select="weighted_majority")
    runs = []
    for _ in range(2):
        async with Client(gen) as client:
            runs.append(await client.run("q?", strategy=strategy, seed=11, budget=Budget(usd=0.01)))
    a, b = runs
    assert strip_times(a) == strip_times(b)
    assert (a.answer, a.details, a.cost_usd) == (b.answer, b.details, b.cost_usd)
    assert [s.text for s in a.samples] == [s.text for s in b.samples]


@pytest.mark.asyncio
async def test_registered_and_built_from_config() -> None:
    gen = generator(["3", "42"])
    config = {"name": "best-of-n", "n": 2, "verifier": {"name": "exact", "expected": "42"}}
    strategy = strategy_from_config(config)
    assert isinstance(strategy, BestOfN) and isinstance(strategy.verifier, ExactChecker)
    async with Client(gen) as client:
        result = await client.run("q?", strategy=config, seed=0)
    assert result.answer == "42" and result.strategy == "best-of-n"


def test_validation() -> None:
    with pytest.raises(ConfigError, match="verifier"):
        BestOfN(verifier=3)
    with pytest.raises(ConfigError, match="n"):
        BestOfN(n=0, verifier=ExactChecker("1"))
    with pytest.raises(ConfigError, match="select"):
        BestOfN(verifier=ExactChecker("1"), select="min")
    with pytest.raises(ConfigError, match="unknown verifier"):
        BestOfN(verifier={"name": "oracle"})
    assert BestOfN(verifier=ExactChecker("1")).default_stop() is not None


@pytest.mark.asyncio
async def test_on_the_simulator_with_the_sim_reward_model() -> None:
    problems = demo_problems(3)
    verifier = RewardModel(endpoint=SimRewardEndpoint())
    strategy = BestOfN(n=6, verifier=verifier, sampling=Sampling(temperature=0.8))
    async with Client(SimEndpoint()) as client:
        for problem in problems:
            result = await client.run(problem.question, strategy=strategy, seed=3, budget=Budget(usd=0.01))
            scores = result.details["scores"]
            answers = result.details["answers"]
            assert result.generated == 6 and len(verify_samples(result)) == 6
            assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
            # The answer is that of the best-scored candidate.
            assert result.answer == answers[scores.index(max(scores))]
            assert result.cost_usd <= 0.01
            assert {s.endpoint for s in verify_samples(result)} == {"SimRewardEndpoint(sim-verifier)"}


@pytest.mark.asyncio
async def test_a_plain_function_is_a_verifier() -> None:
    problem = demo_problems(1)[0]

    def has_the_answer(question: str, solution: str) -> float:
        return float(f"The answer is {problem.answer}" in solution)

    strategy = BestOfN(n=6, verifier=has_the_answer)
    assert strategy.verifier.name == "has_the_answer"
    async with Client(SimEndpoint()) as client:
        result = await client.run(problem.question, strategy=strategy, seed=2)
    verify = [s for s in result.samples if s.purpose == "verify"]
    assert len(verify) == 6 and result.cost_usd > 0  # scored by free calls, generation billed
    assert result.answer == problem.answer
