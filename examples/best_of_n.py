"""Best-of-n: sample candidates, score each with a verifier, keep the best (or vote by score).

Verifiers are pluggable: an outcome reward model behind an endpoint (`RewardModel`), an LLM as
judge on any chat endpoint (`LLMJudge`), or any Python function (`FunctionVerifier`: unit
tests, a calculator, a schema check). Verifier calls go through the same per-call budget as
generation: the receipt counts them and the budget covers them.

Runs offline: the simulated reasoner writes the candidates, the simulated reward model scores
them, and a stand-in judge (a function endpoint) plays the LLM judge::

    python examples/best_of_n.py

On real models, swap the endpoints; nothing else changes::

    client = Client(OpenAIChat("gpt-4o-mini"))                    # key from OPENAI_API_KEY
    judge = LLMJudge(endpoint=Anthropic("claude-haiku-4-5"))      # key from ANTHROPIC_API_KEY
    reward = RewardModel(endpoint=OpenAIChat("my-rm", base_url="http://localhost:8000/v1",
                                             price=Price(input=0.1, output=0.1)))
"""

from __future__ import annotations

import re

import anyio
from adaptive_strategies.best_of_n import BestOfN
from adaptive_strategies.verifiers import FunctionVerifier, LLMJudge, RewardModel

from adaptive import Budget, Client, FunctionEndpoint, Price, Request, StopRule, Strategy, score_threshold
from adaptive.sim import SimEndpoint, SimRewardEndpoint, SimVerifier, demo_problems

BUDGET = Budget(usd=0.02)  # per call, verifier calls included
PROBLEMS = demo_problems(6)

# -- a stand-in LLM judge ------------------------------------------------------------------------
# LLMJudge sends this prompt to its endpoint and reads the last "Score: N" line of the reply.
JUDGE_PROMPT = (
    "Problem:\n{question}\n\nSolution:\n{solution}\n\n"
    "Check the solution step by step. End with a line 'Score: N', N from 0 (wrong) to 10 (right)."
)


def sim_judge(request: Request) -> str:
    """Reply like a judge model would; the simulated verifier decides the grade."""
    assert request.messages is not None
    prompt = request.messages[-1].content
    problem, rest = prompt.removeprefix("Problem:\n").split("\n\nSolution:\n", 1)
    solution = rest.rsplit("\n\nCheck the solution", 1)[0]
    p = SimVerifier().score(problem, solution)
    verdict = "The steps look right." if p >= 0.5 else "I think a step is wrong."
    return f"{verdict}\nScore: {round(10 * p)}"


# Priced like a small hosted model, so its calls show on the receipt and count to the budget.
judge_endpoint = FunctionEndpoint(sim_judge, name="sim-judge", price=Price(input=0.15, output=0.60))


# -- a function verifier: check the arithmetic with a calculator ---------------------------------
EQUATION = re.compile(r"(\d+) ([-+×÷]) (\d+) = (\d+)")


def arithmetic_checks_out(question: str, solution: str) -> float:
    """Share of the solution's equations that are arithmetically right (free and local).

    It catches slips like `35 - 24 = 11`, not a misread problem: a cheap, imperfect signal.
    """
    equations = EQUATION.findall(solution)
    if not equations:
        return 0.0
    ops = {"+": int.__add__, "-": int.__sub__, "×": int.__mul__, "÷": int.__floordiv__}
    right = sum(ops[op](int(a), int(b)) == int(c) for a, op, b, c in equations)
    return right / len(equations)


async def evaluate(label: str, strategy: Strategy, stop: StopRule | None = None) -> None:
    correct = candidates = checks = 0
    cost = worst = 0.0
    async with Client(SimEndpoint(), budget=BUDGET) as client:
        for i, problem in enumerate(PROBLEMS):
            result = await client.run(problem.question, strategy=strategy, stop=stop, seed=i)
            correct += result.answer == problem.answer
            candidates += result.generated
            checks += len(result.samples) - result.generated
            cost += result.cost_usd
            worst = max(worst, result.cost_usd)
    n = len(PROBLEMS)
    print(
        f"{label:<40} {correct:>3}/{n}  {candidates / n:>5.1f} candidates  {checks / n:>5.1f} verifier calls"
        f"  ${cost:.5f} total  max ${worst:.6f} per call"
    )


async def main() -> None:
    reward = RewardModel(endpoint=SimRewardEndpoint())
    print(f"best-of-n on {len(PROBLEMS)} problems, budget ${BUDGET.usd} per call\n")
    await evaluate("reward model, pick the max", BestOfN(n=8, verifier=reward))
    await evaluate(
        "reward model, score-weighted vote", BestOfN(n=8, verifier=reward, select="weighted_majority")
    )
    # Generate 4 at a time and stop as soon as some candidate scores 0.9 or more.
    await evaluate(
        "reward model, stop at score >= 0.9",
        BestOfN(n=16, batch=4, verifier=reward),
        stop=score_threshold(0.9),
    )
    judge = LLMJudge(endpoint=judge_endpoint, prompt_template=JUDGE_PROMPT)
    await evaluate("LLM judge (0-10 rating), pick the max", BestOfN(n=8, verifier=judge))
    calculator = FunctionVerifier(arithmetic_checks_out)
    await evaluate(
        "calculator check, score-weighted vote", BestOfN(n=8, verifier=calculator, select="weighted_majority")
    )

    # One receipt in full: verifier calls appear next to the samples they scored.
    async with Client(SimEndpoint()) as client:
        result = await client.run(
            PROBLEMS[0].question, strategy=BestOfN(n=4, verifier=judge), budget=BUDGET, seed=0
        )
    print(f"\nexpected {PROBLEMS[0].answer}; scores {result.details['scores']}")
    print(result.receipt())


if __name__ == "__main__":
    anyio.run(main)
