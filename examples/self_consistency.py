"""Self-consistency: fixed-N voting against adaptive stopping, with a prior fitted on your logs.

Fixed-N self-consistency draws N samples for every question and votes. Adaptive consistency
samples in small batches and stops as soon as the votes settle, so easy questions cost a few
samples and hard ones get more. Stop rules are small predicates composed with `|` (any) and
`&` (all); every call also has a hard dollar budget.

A `ConsistencyPrior` fitted on vote counts from your own logs tells the controller how
consistent your model usually is, so it can stop sooner on questions where it agrees with
itself (with the default uniform prior the confidence is Adaptive-Consistency's Beta rule).

Runs offline on the simulated reasoner::

    python examples/self_consistency.py

On a real model (key from OPENAI_API_KEY; `--base-url` for any OpenAI-compatible server)::

    python examples/self_consistency.py --model gpt-4o-mini
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import anyio
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import (
    Budget,
    Client,
    ConsistencyPrior,
    ControllerConfig,
    Endpoint,
    OpenAIChat,
    StopRule,
    Strategy,
    ac_beta,
    budget_exhausted,
    esc_window,
)
from adaptive.sim import Problem, SimEndpoint, demo_problems

BUDGET = Budget(usd=0.01)  # per call
MAX_TOKENS = 512


@dataclasses.dataclass
class Row:
    label: str
    correct: int = 0
    questions: int = 0
    samples: int = 0
    cost_usd: float = 0.0
    max_call_usd: float = 0.0


def make_endpoint(args: argparse.Namespace) -> Endpoint:
    return SimEndpoint() if args.model is None else OpenAIChat(args.model, base_url=args.base_url)


async def evaluate(
    label: str,
    endpoint: Endpoint,
    problems: list[Problem],
    strategy: Strategy,
    stop: StopRule | None = None,
    prior: ConsistencyPrior | None = None,
) -> Row:
    # calibrate=False keeps the prior fixed during the comparison; by default a client keeps
    # learning it from its own calls.
    config = ControllerConfig(calibrate=False)
    row = Row(label)
    async with Client(endpoint, budget=BUDGET, controller=config, prior=prior) as client:
        for i, problem in enumerate(problems):
            result = await client.run(
                problem.question, strategy=strategy, stop=stop, seed=1000 + i, max_tokens=MAX_TOKENS
            )
            row.correct += result.answer == problem.answer
            row.questions += 1
            row.samples += result.generated
            row.cost_usd += result.cost_usd
            row.max_call_usd = max(row.max_call_usd, result.cost_usd)
    return row


async def collect_logs(endpoint: Endpoint, problems: list[Problem]) -> list[dict[str, int]]:
    """Vote counts per question: what you would read from your own request logs."""
    logs = []
    async with Client(endpoint, strategy=SelfConsistency(n=12)) as client:
        for i, problem in enumerate(problems):
            result = await client.run(problem.question, seed=i, max_tokens=MAX_TOKENS)
            logs.append(result.votes)
    return logs


async def main(args: argparse.Namespace) -> None:
    endpoint = make_endpoint(args)
    problems = demo_problems(16)

    # Adaptive-Consistency's Beta rule, or Early-Stopping SC's window, whichever fires first;
    # and never start a batch the budget cannot cover.
    ac_rule = ac_beta(0.95) | esc_window(5) | budget_exhausted()
    print("composed stop rule:", ac_rule.config())

    # Fit the prior on logged vote counts ((v1, v2) pairs or per-question vote maps).
    logs = await collect_logs(endpoint, demo_problems(20, seed=1))
    prior = ConsistencyPrior()
    prior.fit(logs)
    print(f"fitted {prior}")
    # Fit once, keep it: save it and load it in your service (`python -m adaptive calibrate
    # LOGS.jsonl` does the same from a log file). A loaded prior keeps learning from there.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prior.json"
        prior.save(path)
        prior = ConsistencyPrior.load(path)
    print(f"saved and loaded {prior}")
    uniform = ConsistencyPrior()
    print(
        f"confidence after 3 votes to 0: uniform {uniform.confidence(3, 0):.3f}, "
        f"fitted {prior.confidence(3, 0):.3f}"
    )

    adaptive = AdaptiveConsistency(max_samples=32)
    rows = [
        await evaluate("fixed N=16", endpoint, problems, SelfConsistency(n=16)),
        await evaluate("adaptive, ac_beta | esc_window | budget", endpoint, problems, adaptive, stop=ac_rule),
        await evaluate("adaptive, default rule", endpoint, problems, adaptive),
        await evaluate("adaptive, default rule + fitted prior", endpoint, problems, adaptive, prior=prior),
    ]

    print(f"\n{'strategy':<42} {'accuracy':>8} {'samples/q':>9} {'total $':>9} {'max $/call':>10}")
    for r in rows:
        print(
            f"{r.label:<42} {r.correct:>5}/{r.questions:<2} {r.samples / r.questions:>9.1f} "
            f"{r.cost_usd:>9.5f} {r.max_call_usd:>10.6f}"
        )
    worst = max(r.max_call_usd for r in rows)
    print(f"\nmost any call spent: ${worst:.6f} (budget ${BUDGET.usd:.6f} per call)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a real model name (default: the offline simulator)")
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: OPENAI_BASE_URL or OpenAI)")
    anyio.run(main, parser.parse_args())
