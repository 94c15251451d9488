"""Step-level search guided by a process reward model (PRM): beam search and DVTS.

The model writes one reasoning step at a time (steps end at a blank line); the PRM scores each
partial solution and only the best ones are continued. `BeamSearch` keeps the `width` best
partial solutions overall; `DVTS` runs independent greedy subtrees and votes over their best
leaves, weighted by score. Every expansion and every PRM call is paid from the call's budget.

Runs offline on the simulated reasoner and its simulated PRM::

    python examples/beam_search.py

On real models: the generator must continue a partial answer, so use a chat endpoint that
takes an assistant prefill (`Anthropic(...)`, or `OpenAIChat(..., base_url=...)` on a server
that continues prefills, such as vLLM) or a completions endpoint (`OpenAICompletions`, with
`mode="raw"`); the PRM is any endpoint returning per-step scores::

    generator = OpenAICompletions("Qwen/Qwen2.5-Math-7B-Instruct", base_url="http://localhost:8000/v1",
                                  price=Price(input=0.05, output=0.1))
    prm = ProcessRewardModel(endpoint=OpenAIChat("my-prm", base_url="http://localhost:8001/v1",
                                                 price=Price(input=0.02, output=0.02)))
"""

from __future__ import annotations

import anyio
from adaptive_strategies.beam_search import DVTS, BeamSearch
from adaptive_strategies.verifiers import ProcessRewardModel

from adaptive import Budget, Client, Result, Sampling, Strategy
from adaptive.sim import SimEndpoint, SimRewardEndpoint, demo_problems

BUDGET = Budget(usd=0.02)  # per call: expansions and PRM calls together
PROBLEMS = demo_problems(5)
STEP_SAMPLING = Sampling(temperature=0.8, max_tokens=200)  # max_tokens is per step


async def evaluate(label: str, strategy: Strategy) -> list[Result]:
    async with Client(SimEndpoint(), budget=BUDGET) as client:
        results = [
            await client.run(problem.question, strategy=strategy, seed=i)
            for i, problem in enumerate(PROBLEMS)
        ]
    correct = sum(r.answer == p.answer for r, p in zip(results, PROBLEMS, strict=True))
    cost = sum(r.cost_usd for r in results)
    worst = max(r.cost_usd for r in results)
    print(f"{label:<44} {correct}/{len(PROBLEMS)} right  ${cost:.5f} total  max ${worst:.6f} per call")
    return results


async def main() -> None:
    prm = ProcessRewardModel(endpoint=SimRewardEndpoint(), aggregation="last")
    print(f"step-level search on {len(PROBLEMS)} problems, budget ${BUDGET.usd} per call\n")
    beam = BeamSearch(width=2, candidates=8, prm=prm, sampling=STEP_SAMPLING)
    results = await evaluate("beam search (keep 2 of 8 per round)", beam)
    # The weakest step decides: a solution is only as good as its worst step.
    strict = BeamSearch(width=2, candidates=8, prm=prm, aggregation="min", sampling=STEP_SAMPLING)
    await evaluate("beam search, min over step scores", strict)
    dvts = DVTS(subtrees=4, width=2, prm=prm, sampling=STEP_SAMPLING)
    await evaluate("DVTS (4 subtrees x 2), score-weighted vote", dvts)

    # The longest beam search, round by round.
    i = max(range(len(results)), key=lambda j: len(results[j].details["beams"]))
    result = results[i]
    print(f"\nbeam search on problem {i + 1}: answer {result.answer} (expected {PROBLEMS[i].answer})")
    for entry in result.details["beams"]:
        kept = ", ".join(f"{k['score']:.2f}{' done' if k['finished'] else ''}" for k in entry["kept"])
        print(f"  round {entry['round']}: {entry['candidates']} scored, kept [{kept}]")
    print(result.receipt())


if __name__ == "__main__":
    anyio.run(main)
