"""Verifiers: request shapes, score parsing, local scores, configs."""

from __future__ import annotations

import math
from typing import Any

import pytest
from adaptive_strategies.verifiers import (
    ExactChecker,
    FunctionVerifier,
    LLMJudge,
    ProcessRewardModel,
    RewardModel,
    Verification,
    Verifier,
    scoring_calls,
    verifier_from_config,
    verifier_names,
)

from adaptive import (
    Budget,
    Call,
    Completion,
    ConfigError,
    FunctionEndpoint,
    Price,
    Request,
    Response,
    State,
    Usage,
)
from adaptive._costing import affordable, call_worst_case, calls_worst_case
from adaptive._ledger import Ledger


async def _never(request: Request) -> str:
    raise AssertionError("verifier tests never send")


def endpoint(name: str = "judge", price: Price | None = None) -> FunctionEndpoint:
    return FunctionEndpoint(_never, name=name, price=price)


def response(*completions: Completion, **extra: Any) -> Response:
    return Response(completions=completions, usage=Usage(prompt_tokens=3, completion_tokens=1), extra=extra)


# -- LLM judge ---------------------------------------------------------------------------


def test_llm_judge_request_and_reading() -> None:
    ep = endpoint()
    judge = LLMJudge(endpoint=ep, prompt_template="Q: {question}\nA: {solution}\nScore it.", system="be fair")
    v = judge.verification("What is {x} + 1?", "x + 1 = {2}", seed=5)
    assert len(v.calls) == 1
    call = v.calls[0]
    assert call.endpoint is judge.endpoint and call.purpose == "verify"
    assert call.request.messages is not None
    assert [m.role for m in call.request.messages] == ["system", "user"]
    # Braces in questions and solutions are not format fields.
    assert call.request.messages[1].content == "Q: What is {x} + 1?\nA: x + 1 = {2}\nScore it."
    assert call.request.seed == 5 and call.request.temperature == 0.0 and not call.request.logprobs
    assert v.finish([response(Completion(text="Fine. Score: 6"))]) == pytest.approx(0.6)
    assert v.finish([response(Completion(text="no idea"))]) is None
    assert v.finish([None]) is None
    assert judge.name == "judge:FunctionEndpoint(judge)"


def test_llm_judge_yes_no_asks_for_logprobs() -> None:
    judge = LLMJudge(endpoint=endpoint(), score_parser="yes_no")
    call = judge.verification("q", "s").calls[0]
    assert call.request.logprobs and call.request.top_logprobs == 5 and call.request.max_tokens == 2
    assert call.request.messages is not None and "Yes or No" in call.request.messages[-1].content
    v = judge.verification("q", "s")
    assert v.finish([response(Completion(text="Yes"))]) == 1.0


def test_llm_judge_custom_parser() -> None:
    def parser(c: Completion) -> float | None:
        if c.text == "boom":
            raise RuntimeError("bad")
        return len(c.text) / 10

    judge = LLMJudge(endpoint=endpoint(), score_parser=parser)
    v = judge.verification("q", "s")
    assert v.finish([response(Completion(text="abcd"))]) == pytest.approx(0.4)
    assert v.finish([response(Completion(text="boom"))]) is None
    # A parser that raises is a failure the strategy hears of, not an unparseable reply.
    assert v.outcome([response(Completion(text="boom"))]) == (None, "RuntimeError: bad")


def test_llm_judge_validation() -> None:
    with pytest.raises(ConfigError, match="solution"):
        LLMJudge(endpoint=endpoint(), prompt_template="Rate {question}")
    with pytest.raises(ConfigError, match="endpoint"):
        LLMJudge(endpoint="gpt-4o")
    with pytest.raises(ConfigError):
        LLMJudge(endpoint=endpoint(), score_parser="stars")


# -- reward models -----------------------------------------------------------------------


def test_reward_model_request_and_score_sources() -> None:
    ep = endpoint("rm")
    rm = RewardModel(endpoint=ep)
    v = rm.verification("What is 2 + 2?", "4")
    request = v.calls[0].request
    assert request.messages is not None
    assert [(m.role, m.content) for m in request.messages] == [("user", "What is 2 + 2?"), ("assistant", "4")]
    assert request.max_tokens == 1
    assert v.finish([response(Completion(text="", score=1.5))]) == 1.5
    assert v.finish([response(Completion(text=""), score=0.25)]) == 0.25
    assert v.finish([response(Completion(text=" -0.5 "))]) == -0.5
    assert v.finish([response(Completion(text='{"score": 0.7}'))]) == 0.7
    assert v.finish([response(Completion(text="great answer"))]) is None
    assert v.finish([response(Completion(text="", score=math.nan))]) is None
    assert v.finish([None]) is None
    sig = RewardModel(endpoint=ep, transform="sigmoid").verification("q", "s")
    assert sig.finish([response(Completion(text="", score=0.0))]) == 0.5
    assert sig.finish([response(Completion(text="", score=-1e6))]) == pytest.approx(0.0)


def test_endpoint_verifiers_take_the_endpoint_positionally() -> None:
    ep = endpoint("rm")
    assert RewardModel(ep).endpoint is RewardModel(endpoint=ep).endpoint
    assert LLMJudge(ep, score_parser="yes_no").score_parser == "yes_no"
    assert ProcessRewardModel(ep, aggregation="min").aggregation == "min"
    with pytest.raises(ConfigError, match="not both"):
        RewardModel(ep, endpoint=ep)
    with pytest.raises(ConfigError, match="endpoint"):
        RewardModel()


def test_process_reward_model_reads_step_scores() -> None:
    prm = ProcessRewardModel(endpoint=endpoint("prm"), aggregation="min", send_steps=True)
    v = prm.verification("q", "step one\n\nstep two\n\n")
    request = v.calls[0].request
    assert request.messages is not None and request.messages[-1].content == "step one\n\nstep two"
    assert request.extra == {"steps": ["step one", "step two"]}
    assert v.finish([response(Completion(text=""), step_scores=[0.9, 0.4])]) == (0.9, 0.4)
    assert v.finish([response(Completion(text='{"score": 0.4, "step_scores": [0.8, 0.3]}'))]) == (0.8, 0.3)
    two = response(Completion(text="", score=0.6), Completion(text="", score=0.2, index=1))
    assert v.finish([two]) == (0.6, 0.2)
    assert v.finish([response(Completion(text="", score=0.35))]) == 0.35
    assert v.finish([response(Completion(text="[0.5, 0.25]"))]) == (0.5, 0.25)
    assert v.finish([response(Completion(text=""), step_scores=[0.5, math.inf])]) is None
    assert v.finish([response(Completion(text="nothing"))]) is None
    assert prm.aggregate((0.9, 0.4)) == 0.4
    # Given steps win over splitting; no steps: nothing to score.
    assert prm.verification("q", "ignored", steps=["a", "b"]).calls[0].request.extra["steps"] == ["a", "b"]
    assert prm.verification("q", "  \n\n ").calls == ()
    plain = ProcessRewardModel(endpoint=endpoint("prm")).verification("q", "a\n\nb").calls[0].request
    assert plain.extra == {}


# -- exact checker -----------------------------------------------------------------------


def test_exact_checker_compares_normalized_answers() -> None:
    checker = ExactChecker("1,000")
    assert checker.verification("q", "so the answer is 1000.").score == 1.0
    assert checker.verification("q", "so the answer is 999").score == 0.0
    assert checker.verification("q", "no idea").score == 0.0
    assert ExactChecker(expected=42).verification("q", r"\boxed{42}").score == 1.0
    assert ExactChecker("B", answer="multiple-choice").verification("q", "The answer is (B)").score == 1.0
    assert checker.verification("q", "x").calls == ()


def test_exact_checker_with_a_check_function() -> None:
    def passes(solution: str) -> bool:
        if "crash" in solution:
            raise RuntimeError("test harness broke")
        return "def f" in solution

    checker = ExactChecker(passes)
    assert checker.verification("q", "def f(): pass").score == 1.0
    assert checker.verification("q", "print()").score == 0.0
    crashed = checker.verification("q", "crash")
    assert crashed.score is None and crashed.error == "RuntimeError: test harness broke"
    assert crashed.outcome([]) == (None, "RuntimeError: test harness broke")
    with pytest.raises(ConfigError, match="exactly one"):
        ExactChecker()
    with pytest.raises(ConfigError, match="exactly one"):
        ExactChecker("1", check=passes)
    with pytest.raises(ConfigError, match="not both"):
        ExactChecker("1", expected="2")
    with pytest.raises(ConfigError, match="empty"):
        ExactChecker("  ")


# -- function verifier -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sync_function_verifier_runs_in_a_worker_thread() -> None:
    import threading

    threads: set[int] = set()

    def score(question: str, solution: str) -> float | bool | None:
        threads.add(threading.get_ident())
        if solution == "crash":
            raise ValueError("bad")
        if solution == "nan":
            return math.nan
        if solution == "yes":
            return True
        return len(solution) / 10

    v = FunctionVerifier(score)
    assert v.name == "score"

    async def outcome(solution: str) -> tuple[float | None, str | None]:
        verification = v.verification("q", solution)
        (call,) = verification.calls
        assert call.purpose == "verify" and call.endpoint is not None
        return verification.outcome([await call.endpoint.request(call.request)])

    assert (await outcome("abc"))[0] == pytest.approx(0.3)
    assert await outcome("yes") == (1.0, None)
    assert await outcome("crash") == (None, "ValueError: bad")
    assert await outcome("nan") == (None, None)  # NaN is unscored, not a failure
    assert threading.get_ident() not in threads  # never on the event loop's thread
    with pytest.raises(ConfigError, match="not both"):
        FunctionVerifier(score, fn=score)


@pytest.mark.asyncio
async def test_async_function_verifier_goes_through_a_free_call() -> None:
    seen: list[tuple[str, str]] = []

    async def score(question: str, solution: str) -> float:
        seen.append((question, solution))
        if solution == "crash":
            raise ValueError("bad")
        return 0.25

    fv = FunctionVerifier(score, label="async-check")
    v = fv.verification("Q?", "sol")
    assert len(v.calls) == 1 and v.calls[0].purpose == "verify"
    ep = v.calls[0].endpoint
    assert ep is not None and ep.price == Price(input=0, output=0)
    assert ep.name == "FunctionEndpoint(verifier:async-check)"
    got = await ep.request(v.calls[0].request)
    assert seen == [("Q?", "sol")]
    assert got.usage == Usage()
    assert v.finish([got]) == 0.25
    crashed = await ep.request(fv.verification("Q?", "crash").calls[0].request)
    assert v.finish([crashed]) is None
    assert v.outcome([crashed]) == (None, "ValueError: bad")
    # One endpoint per verifier, reused.
    assert fv.verification("a", "b").calls[0].endpoint is ep


# -- protocol, configs, costs ------------------------------------------------------------


def test_verification_needs_a_reader_for_calls() -> None:
    call = Call(request=Request(prompt="x"), purpose="verify")
    with pytest.raises(ConfigError, match="read"):
        Verification(calls=(call,))
    local = Verification(score=0.5)
    assert local.finish([]) == 0.5
    assert Verification(score=math.inf).finish([]) is None

    def choke(responses: object) -> float:
        raise KeyError("score")

    assert Verification(calls=(call,), read=choke).finish([None]) is None
    assert Verification(calls=(call,), read=choke).outcome([None]) == (None, "KeyError: 'score'")


def test_verifier_from_config() -> None:
    assert set(verifier_names()) >= {"exact", "function", "llm-judge", "reward-model", "prm"}
    ep = endpoint("rm")
    rm = verifier_from_config({"name": "reward-model", "endpoint": ep, "transform": "sigmoid"})
    assert isinstance(rm, RewardModel) and rm.transform == "sigmoid"
    exact = verifier_from_config("exact", {"expected": "7"})
    assert isinstance(exact, ExactChecker) and exact.verification("q", "answer is 7").score == 1.0
    assert verifier_from_config(exact) is exact
    assert isinstance(exact, Verifier)
    with pytest.raises(ConfigError, match="unknown verifier"):
        verifier_from_config("oracle")
    with pytest.raises(ConfigError, match="needs a 'name'"):
        verifier_from_config({"expected": "7"})
    with pytest.raises(ConfigError, match="cannot build"):
        verifier_from_config(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="transform"):
        verifier_from_config({"name": "reward-model", "endpoint": ep, "transform": "tanh"})


def scoring_worst_case(
    verifier: Any, question: str, size: int, default: Any, default_price: Price | None = None
) -> tuple[int, int, int]:
    """What scoring one candidate of `size` bytes may cost at most (the calls a plan holds back for)."""
    return calls_worst_case(scoring_calls(verifier, question, size), default, default_price=default_price)


def test_call_worst_case_matches_the_ledger() -> None:
    price = Price(input=2.0, output=8.0)
    for supports_n in (False, True):
        ep = FunctionEndpoint(_never, name="gen", price=price, supports_n=supports_n)
        base = RewardModel(endpoint=ep).verification("q" * 50, "s" * 70).calls[0].request
        request = base.model_copy(update={"n": 3, "max_tokens": 40})
        copies = 1 if supports_n else 3
        assert call_worst_case(Call(request=request, endpoint=ep), ep) == Ledger(Budget()).worst_case(
            request, price, prompt_copies=copies
        )


def test_call_worst_case_uses_the_calls_price_for_the_task_endpoint() -> None:
    own, override = Price(input=1.0, output=1.0), Price(input=3.0, output=5.0)
    gen, judge = endpoint("gen", own), endpoint("judge", own)
    request = RewardModel(endpoint=gen).verification("q", "s" * 40).calls[0].request
    bound = Ledger(Budget()).worst_case
    # a call to the task's endpoint is charged at the call's price (`Task.price`)
    assert call_worst_case(Call(request=request), gen, default_price=override) == bound(request, override)
    assert call_worst_case(Call(request=request), gen) == bound(request, own)
    # another endpoint keeps its own price
    assert call_worst_case(Call(request=request, endpoint=judge), gen, default_price=override) == bound(
        request, own
    )
    # scoring through a judge on the task's endpoint sees the override too
    on_task = LLMJudge(endpoint=gen)
    cheap = scoring_worst_case(on_task, "q", 100, gen)
    dear = scoring_worst_case(on_task, "q", 100, gen, default_price=override)
    assert dear[0] > cheap[0] and dear[1:] == cheap[1:]


def test_scoring_worst_case_and_affordable() -> None:
    price = Price(input=1.0, output=1.0)
    rm = RewardModel(endpoint=endpoint("rm", price))
    pico, tokens, samples = scoring_worst_case(rm, "question", 400, endpoint("gen"))
    assert samples == 1 and tokens > 400 and pico == tokens * 10**6
    assert scoring_worst_case(ExactChecker("1"), "q", 400, endpoint("gen")) == (0, 0, 0)
    state = State(remaining_usd=1e-3, remaining_tokens=1000, remaining_samples=7)
    assert affordable(state, 10**8, 10, 1) == 7  # samples bind
    assert affordable(state, 10**8, 300, 1) == 3  # tokens bind
    assert affordable(state, 4 * 10**8, 1, 1) == 2  # dollars bind
    assert affordable(State(), 10**8, 10, 1) is None
    assert affordable(State(remaining_usd=0.0), 1, 0, 0) == 0
