"""`adaptive run "PROMPT"`: answer one prompt with a strategy and a budget, and show the receipt.

Offline on the simulated reasoner by default; `--base-url URL --model M` runs it against any
OpenAI-compatible endpoint. A live progress line follows the controller's decisions while it
runs (on a terminal); `--json` prints one JSON object instead of the rich receipt.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from .._budget import Budget
from .._client import Client
from .._exceptions import AdaptiveError, ConfigError
from .._result import Result, TraceEvent
from ..endpoints._base import Endpoint
from ._args import non_negative_float, positive_float, positive_int, price_pair

__all__ = ["add_run_parser", "run_command"]


def add_run_parser(sub: Any) -> None:
    """Declare `adaptive run` and its arguments on the command line's subparsers."""
    run = sub.add_parser(
        "run",
        help="answer one prompt with a strategy under a budget and print the receipt",
        description=(
            "Answer PROMPT with a test-time strategy under a per-call budget and print the answer "
            "and its receipt. Offline on the simulated reasoner unless --base-url is given."
        ),
    )
    run.add_argument("prompt", help="the question (for the simulator: an arithmetic word problem)")
    run.add_argument(
        "--strategy",
        default="adaptive",
        help="a strategy name (single, self-consistency, adaptive, best-of-n, beam-search, dvts) "
        'or a JSON config such as \'{"name": "adaptive", "max_samples": 16}\' (default: %(default)s)',
    )
    run.add_argument("--budget-usd", type=positive_float, metavar="USD", help="dollars this call may spend")
    run.add_argument("--budget-tokens", type=positive_int, metavar="N", help="tokens this call may use")
    run.add_argument("--budget-samples", type=positive_int, metavar="N", help="completions it may request")
    run.add_argument("--budget-seconds", type=positive_float, metavar="S", help="its wall-clock deadline")
    run.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    run.add_argument("--base-url", help="an OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1")
    run.add_argument("--model", help="model name (required with --base-url)")
    run.add_argument("--api-key", help="API key (default: env OPENAI_API_KEY)")
    run.add_argument("--price-in", type=non_negative_float, metavar="USD", help="$ per million input tokens")
    run.add_argument(
        "--price-out", type=non_negative_float, metavar="USD", help="$ per million output tokens"
    )
    run.add_argument("--json", action="store_true", help="print one JSON object (answer and receipt)")


def _strategy(text: str) -> str | dict[str, Any]:
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--strategy: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(config, dict):
        raise ConfigError('--strategy: a JSON config is an object, e.g. {"name": "adaptive"}')
    return config


def _endpoint(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Endpoint:
    price = price_pair(parser, "--price", args.price_in, args.price_out)
    if args.base_url is None:
        if args.model or args.api_key or price is not None:
            parser.error("--model, --api-key and --price-in/--price-out go with --base-url")
        from ..sim import SimEndpoint

        return SimEndpoint()
    if not args.model:
        parser.error("--base-url needs --model")
    from ..endpoints.openai_chat import OpenAIChat

    settings: dict[str, Any] = {"base_url": args.base_url}
    if args.api_key:
        settings["api_key"] = args.api_key
    if price is not None:
        settings["price"] = price
    return OpenAIChat(args.model, **settings)


def _budget(args: argparse.Namespace) -> Budget | None:
    limits = {
        "usd": args.budget_usd,
        "tokens": args.budget_tokens,
        "samples": args.budget_samples,
        "seconds": args.budget_seconds,
    }
    given = {k: v for k, v in limits.items() if v is not None}
    return Budget(**given) if given else None


def _report(result: Result) -> dict[str, Any]:
    return {
        "answer": result.answer,
        "confidence": result.confidence,
        "strategy": result.strategy,
        "stop_reason": result.stop_reason,
        "stop": None if result.stop is None else result.stop.model_dump(),
        "samples": result.generated,
        "verifier_calls": len(result.samples) - result.generated,
        "rounds": result.rounds,
        "usage": {**result.usage.model_dump(), "total_tokens": result.usage.total_tokens},
        "cost_usd": result.cost_usd,
        "elapsed_s": round(result.elapsed_s, 4),
        "votes": result.votes,
        "warnings": list(result.warnings),
        "overruns": len(result.overruns),
    }


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run `adaptive run` with parsed arguments; returns the exit status."""
    from rich.console import Console

    strategy = _strategy(args.strategy)
    budget = _budget(args)
    endpoint = _endpoint(parser, args)
    console = Console(stderr=True, highlight=False)
    live = console.is_terminal and not args.json

    async def main() -> Result:
        async with Client(endpoint) as client:
            if not live:
                return await client.run(args.prompt, strategy=strategy, budget=budget, seed=args.seed)
            with console.status("starting ...") as status:

                def progress(event: TraceEvent) -> None:
                    d = event.data
                    if event.kind == "decide":
                        conf = d.get("confidence")
                        status.update(
                            f"round {event.round}: {d.get('action')} - {d.get('samples', 0)} sample(s), "
                            f"confidence {'-' if conf is None else f'{conf:.3f}'}, "
                            f"${d.get('spent_usd', 0.0):.6f} spent"
                        )

                return await client.run(
                    args.prompt, strategy=strategy, budget=budget, seed=args.seed, on_event=progress
                )

    try:
        result = anyio.run(main)
    except AdaptiveError as exc:
        if args.json and isinstance(exc.receipt, Result):
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}", **_report(exc.receipt)}), flush=True)
        raise
    if args.json:
        print(json.dumps(_report(result)), flush=True)
        return 0
    out = Console(highlight=False)
    out.print(result.receipt(), markup=False)
    return 0
