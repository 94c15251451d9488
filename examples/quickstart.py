"""Quickstart: choose a strategy per request, give each call a dollar budget, read the receipt.

Runs offline on adaptive's simulated reasoner (no API key, a few seconds)::

    python examples/quickstart.py

The same code runs on a real model. Any OpenAI-compatible server (the key is read from
OPENAI_API_KEY)::

    python examples/quickstart.py --model gpt-4o-mini
    python examples/quickstart.py --base-url http://localhost:8000/v1 --model my-model --price 0.2,0.8

or build the endpoint yourself: `OpenAIChat("gpt-4o-mini", base_url=..., api_key=...)`, or
`Anthropic("claude-haiku-4-5")` (key from ANTHROPIC_API_KEY). A dollar budget needs a price:
known models are priced automatically; give `price=Price(input=..., output=...)` (dollars per
million tokens) for a model the price table does not know.
"""

from __future__ import annotations

import argparse

import anyio
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import Budget, Client, Endpoint, OpenAIChat, Price, Result, Sampling, Strategy
from adaptive.sim import SimEndpoint, demo_problems


def make_endpoint(args: argparse.Namespace) -> Endpoint:
    """The simulated model by default; a real OpenAI-compatible endpoint with --model."""
    if args.model is None:
        return SimEndpoint()
    price = None
    if args.price:
        dollars_in, dollars_out = (float(x) for x in args.price.split(","))
        price = Price(input=dollars_in, output=dollars_out)
    return OpenAIChat(args.model, base_url=args.base_url, price=price)


def choose(question: str) -> tuple[Strategy, Budget]:
    """A toy router: short problems get one greedy sample, longer ones adaptive voting.

    The budget is per call and hard: spend never exceeds it, whatever the strategy decides.
    """
    steps = question.count(".") - 1  # one sentence per step, after the opening one
    if steps <= 3:
        return SelfConsistency(n=1, sampling=Sampling(temperature=0.0)), Budget(usd=0.001)
    # Samples in batches; stops once 99% sure, or when one more sample would not pay.
    return AdaptiveConsistency(max_samples=32), Budget(usd=0.005)


def print_decisions(result: Result) -> None:
    """The controller's continue / stop decisions, with the numbers behind each."""
    print("decisions:")
    for event in result.trace:
        if event.kind not in ("decide", "stop"):
            continue
        d = event.data
        conf = "-" if d.get("confidence") is None else f"{d['confidence']:.3f}"
        what = "continue" if d.get("action") == "continue" else f"stop ({d['reason']})"
        print(
            f"  round {event.round:>2}: {what:<26} samples {d['samples']:>2}  confidence {conf:<5}  "
            f"spent ${d['spent_usd']:.6f}  next batch {d['next_batch']}"
        )


async def main(args: argparse.Namespace) -> None:
    problems = demo_problems(5)
    # `Client(endpoint, strategy=..., budget=...)` sets defaults; each call may replace them.
    async with Client(make_endpoint(args)) as client:
        costliest: Result | None = None
        for i, problem in enumerate(problems, 1):
            strategy, budget = choose(problem.question)
            result = await client.run(
                problem.question, strategy=strategy, budget=budget, seed=i, max_tokens=512
            )
            print(
                f"Q{i} [{result.strategy}] answer {result.answer} (expected {problem.answer})  "
                f"spent ${result.cost_usd:.6f} of ${budget.usd:.6f}  "
                f"stopped by {result.stop_reason}"
            )
            if costliest is None or result.cost_usd > costliest.cost_usd:
                costliest = result

    assert costliest is not None
    print("\nreceipt of the costliest call:")
    print(costliest.receipt())
    print_decisions(costliest)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a real model name (default: the offline simulator)")
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: OPENAI_BASE_URL or OpenAI)")
    parser.add_argument("--price", help="input,output dollars per million tokens, for unknown models")
    anyio.run(main, parser.parse_args())
