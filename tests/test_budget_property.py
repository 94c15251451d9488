"""The budget invariant, tested over randomized runs: recorded spend never exceeds a limit.

Every case runs `Client.run` with AdaptiveConsistency on a scripted `FunctionEndpoint` whose
calls finish in a random order, report random usage within the request's bounds (or a partial
usage on a meter before they hang), fail at random (plain errors, streams cut with partial
usage) or are cancelled by an early stop or a deadline. Whatever happens, the dollars, tokens
and samples on the receipt, cancelled and failed requests included, stay within the budget.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import anyio
from adaptive_strategies import AdaptiveConsistency
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive import (
    AdaptiveError,
    Budget,
    BudgetTooSmallError,
    Client,
    Completion,
    ControllerConfig,
    FunctionEndpoint,
    Message,
    Price,
    Request,
    Response,
    ResponseError,
    Result,
    StopRule,
    StreamError,
    Usage,
    ac_beta,
    budget_exhausted,
    confident,
    esc_window,
    low_marginal_gain,
)
from adaptive._ledger import prompt_token_bound
from adaptive.endpoints import current_meter

PROMPT = "What is six times seven?"
BOUND = prompt_token_bound(Request(messages=(Message(role="user", content=PROMPT),)))

RULES: list[StopRule | None] = [
    None,  # the strategy's default: confident | low_marginal_gain | budget_exhausted
    ac_beta(0.95),
    confident(0.9) | budget_exhausted(),
    esc_window(3) | low_marginal_gain(0.01),
    confident(0.999),  # rarely stops: runs until a limit
]


@dataclass(frozen=True)
class Case:
    seed: int
    input_price: float
    output_price: float
    max_tokens: int
    usd: float | None
    tokens: int | None
    samples: int | None
    seconds: float | None
    full: bool
    fail_rate: float
    hang_rate: float
    answers: int
    max_samples: int
    max_batch: int
    shrink: bool
    rule: int


class Script:
    """The fake model: each call's behaviour is a pure function of (case seed, request seed)."""

    def __init__(self, case: Case, real_sleep: bool) -> None:
        self.case = case
        self.real_sleep = real_sleep
        self.started = 0
        self.ended = 0

    async def __call__(self, request: Request) -> Response:
        self.started += 1
        try:
            return await self._answer(request)
        finally:
            self.ended += 1

    async def _answer(self, request: Request) -> Response:
        case = self.case
        assert request.seed is not None and request.n == 1
        rng = random.Random(case.seed * 1_000_003 + request.seed)
        # A provider reports the same prompt tokens for the same prompt (at most the bound);
        # `full` cases use every token the request allows, so spend can meet the limit exactly.
        bound = prompt_token_bound(request)
        prompt_tokens = bound if case.full else random.Random(case.seed).randint(1, bound)
        completion = request.max_tokens if case.full else rng.randint(0, request.max_tokens)
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion)
        # Finish in a random order: checkpoints (some calls are slow enough to be caught by an
        # early stop and cancelled), or a tiny real sleep.
        if self.real_sleep:
            await anyio.sleep(rng.random() * 0.0015)
        else:
            for _ in range(rng.choice([0, 1, 2, 3, 40])):
                await anyio.lowlevel.checkpoint()
        roll = rng.random()
        if roll < case.fail_rate / 2:
            raise ResponseError("scripted failure")
        if roll < case.fail_rate:
            partial = Response(completions=(), usage=usage)
            raise StreamError("scripted cut stream", partial=partial)
        if roll < case.fail_rate + case.hang_rate:
            meter = current_meter()
            if meter is not None and rng.random() < 0.5:
                # What a stream had counted when it was cut: the prompt and part of the answer.
                meter.usage = usage.model_copy(
                    update={"completion_tokens": rng.randint(0, usage.completion_tokens)}
                )
                meter.samples = rng.randint(0, 1)
            await anyio.sleep_forever()
        answer = str(rng.randrange(case.answers))
        return Response(
            completions=(Completion(text=f"... so the answer is {answer}.", finish_reason="stop"),),
            usage=usage,
        )


def check_invariant(case: Case, result: Result) -> None:
    budget = budget_of(case)
    if budget.usd is not None:
        assert result.cost_usd <= budget.usd, (result.cost_usd, budget.usd)
        assert sum(c.usd for c in result.charges) <= budget.usd * (1 + 1e-9)
    if budget.tokens is not None:
        assert result.usage.total_tokens <= budget.tokens
        assert sum(c.usage.total_tokens for c in result.charges) <= budget.tokens
    if budget.samples is not None:
        assert sum(c.samples for c in result.charges) <= budget.samples
        assert result.generated <= budget.samples
    assert all(not c.overrun for c in result.charges), "usages were within the reserved bounds"


def budget_of(case: Case) -> Budget:
    return Budget(usd=case.usd, tokens=case.tokens, samples=case.samples, seconds=case.seconds)


async def run_case(case: Case, real_sleep: bool) -> None:
    script = Script(case, real_sleep)
    endpoint = FunctionEndpoint(
        script, name="scripted", price=Price(input=case.input_price, output=case.output_price)
    )
    config = ControllerConfig(
        batch_as_n=False,
        max_batch=case.max_batch,
        shrink_max_tokens=case.shrink,
        min_max_tokens=4,
        calibrate=False,
    )
    client = Client(endpoint, controller=config)
    strategy = AdaptiveConsistency(max_samples=case.max_samples)
    try:
        with anyio.fail_after(30):  # a safety net only: a hang fails instead of blocking CI
            result = await client.run(
                PROMPT,
                strategy=strategy,
                stop=RULES[case.rule],
                budget=budget_of(case),
                seed=case.seed,
                max_tokens=case.max_tokens,
            )
    except BudgetTooSmallError:  # the first request cannot fit: refused before anything is sent
        assert script.started == 0
        return
    except AdaptiveError as exc:  # every call of a round failed: the receipt holds the spend
        assert isinstance(exc, ResponseError)
        assert isinstance(exc.receipt, Result)
        result = exc.receipt
    check_invariant(case, result)
    assert script.started == script.ended  # nothing left running


@st.composite
def cases(draw: st.DrawFn, *, deadlines: bool) -> Case:
    input_price = draw(st.sampled_from([0.0, 0.15, 1.0, 3.0, 15.0]))
    output_price = draw(st.sampled_from([0.0, 0.6, 2.0, 15.0, 75.0]))
    max_tokens = draw(st.integers(1, 300))
    # One request's worst case, to put the limits where refusals actually happen.
    worst_pico = BOUND * round(input_price * 1e6) + max_tokens * round(output_price * 1e6)
    usd = None
    if draw(st.booleans()):
        scale = draw(st.floats(0.3, 25.0))
        usd = max(worst_pico * scale, 1.0) / 1e12 if worst_pico else draw(st.floats(1e-9, 1.0))
    tokens = None
    if draw(st.booleans()):
        tokens = max(1, int((BOUND + max_tokens) * draw(st.floats(0.3, 25.0))))
    samples = draw(st.none() | st.integers(1, 20))
    seconds = draw(st.floats(0.0005, 0.004)) if deadlines else None
    return Case(
        seed=draw(st.integers(0, 2**20)),
        input_price=input_price,
        output_price=output_price,
        max_tokens=max_tokens,
        usd=usd,
        tokens=tokens,
        samples=samples,
        seconds=seconds,
        full=draw(st.booleans()),
        fail_rate=draw(st.sampled_from([0.0, 0.1, 0.4])),
        hang_rate=draw(st.sampled_from([0.0, 0.15, 0.5])) if deadlines else 0.0,
        answers=draw(st.integers(1, 3)),
        max_samples=draw(st.integers(1, 24)),
        max_batch=draw(st.integers(1, 8)),
        shrink=draw(st.booleans()),
        rule=draw(st.integers(0, len(RULES) - 1)),
    )


COMMON = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow],
}


@settings(max_examples=700, **COMMON)  # type: ignore[arg-type]
@given(case=cases(deadlines=False))
def test_spend_never_exceeds_the_budget(case: Case) -> None:
    anyio.run(run_case, case, False)


@settings(max_examples=400, **COMMON)  # type: ignore[arg-type]
@given(case=cases(deadlines=True))
def test_spend_never_exceeds_the_budget_under_deadlines(case: Case) -> None:
    anyio.run(run_case, case, True)
