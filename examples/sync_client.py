"""SyncClient: the same client without async, for scripts and notebooks.

`SyncClient` runs one event loop in a background thread for its lifetime (connections are
reused across calls) and takes the same arguments as `Client`. Strategies and stop rules can
also be given by name or as plain dicts, e.g. read from a config file.

Runs offline on the simulated reasoner::

    python examples/sync_client.py

On a real model (key from OPENAI_API_KEY; `--base-url` for any OpenAI-compatible server)::

    python examples/sync_client.py --model gpt-4o-mini
"""

from __future__ import annotations

import argparse

from adaptive import Budget, ConfigError, Endpoint, OpenAIChat, SyncClient
from adaptive.sim import SimEndpoint, demo_problems


def make_endpoint(args: argparse.Namespace) -> Endpoint:
    return SimEndpoint() if args.model is None else OpenAIChat(args.model, base_url=args.base_url)


def main(args: argparse.Namespace) -> None:
    problems = demo_problems(4)
    budget = Budget(usd=0.004)

    # Defaults for every call: adaptive self-consistency (by name) under a $0.004 budget.
    with SyncClient(make_endpoint(args), strategy="adaptive", budget=budget) as client:
        for i, problem in enumerate(problems):
            result = client.run(problem.question, seed=i, max_tokens=512)
            print(
                f"answer {result.answer} (expected {problem.answer})  {result.generated} samples  "
                f"spent ${result.cost_usd:.6f} of ${budget.usd:.6f}  stopped by {result.stop_reason}"
            )

        # Per call: a strategy and a stop rule from config dicts, e.g. loaded from YAML.
        result = client.run(
            problems[0].question,
            strategy={"name": "self-consistency", "n": 8},
            seed=7,
            max_tokens=512,
        )
        print(f"self-consistency n=8: answer {result.answer}, votes {result.votes}")
        result = client.run(
            problems[1].question,
            strategy="adaptive",
            stop={"any": [{"name": "vote-margin", "margin": 3}, "budget-exhausted"]},
            seed=7,
            max_tokens=512,
        )
        fired = result.stop.rule if result.stop is not None else "-"
        print(f"adaptive, vote_margin(3): answer {result.answer}, stopped by {result.stop_reason} ({fired})")

        # Bad input is a typed error that says what to fix, raised before anything is spent.
        try:
            client.run(problems[0].question, strategy="best-of-everything")
        except ConfigError as exc:
            print(f"ConfigError: {exc}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a real model name (default: the offline simulator)")
    parser.add_argument("--base-url", help="an OpenAI-compatible server (default: OPENAI_BASE_URL or OpenAI)")
    main(parser.parse_args())
