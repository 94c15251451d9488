"""The command line: `python -m adaptive demo | run | serve | serve-sim | calibrate | --version`.

`demo` runs five strategies on the same questions under the same per-call dollar budget and
prints what each bought (see `adaptive.cli._demo`); `serve-sim` serves the simulated reasoner and
verifier as an OpenAI-compatible HTTP server (see `adaptive.sim.SimServer`); `calibrate` fits
the controller's `ConsistencyPrior` on a log of votes or recorded samples and saves it, for
`Client(endpoint, prior=ConsistencyPrior.load(path))`.

This is the one module of `adaptive` that imports the `adaptive_strategies` package (for the demo's
built-in strategies).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from .. import __version__
from .._exceptions import AdaptiveError, ConfigError
from .._strategy import Sampling, Strategy
from ._args import non_negative_float, non_negative_int, port, positive_float, positive_int, price_pair
from ._batch import add_batch_parser, batch_command
from ._calibrate import DEFAULT_EXTRACTOR, DEFAULT_PRIOR, calibrate
from ._demo import (
    DEFAULT_BUDGET_USD,
    DEFAULT_CONCURRENCY,
    DEFAULT_QUESTIONS,
    STRATEGY_NAMES,
    DemoConfig,
    DemoReport,
    DemoSetup,
    RemoteSpec,
    render_report,
    run_demo,
    save_plot,
    worker_main,
)
from ._extras import require_server_extra
from ._run import add_run_parser, run_command
from ._serve import add_serve_parser, serve_command

__all__ = ["build_parser", "demo_strategies", "main"]

DEFAULT_PLOT = "adaptive-demo.png"
# Vote counts (leader, runner-up) at which `calibrate` compares fitted and uniform confidence.
WORKER_COMMAND = "_demo-worker"
SC_SAMPLES = 16
BEST_OF = 16
BEAM_WIDTH = 2
BEAM_CANDIDATES = 4


def demo_strategies(setup: DemoSetup) -> Mapping[str, Strategy]:
    """The demo's five strategies on `setup`'s endpoints.

    `single` is one sample (its answer read like the voters' answers); `self-consistency`
    always draws 16 samples and votes; `adaptive` lets the controller stop when more samples
    no longer pay; `best-of-n` scores 16 candidates with the reward model (or an LLM judge on
    the generator, when there is no reward model) and keeps the best; `beam-search` keeps the
    2 best of 4 partial solutions per step by process-reward score. Under the budget the last
    four may do less than that.
    """
    from adaptive_strategies import AdaptiveConsistency, SelfConsistency
    from adaptive_strategies.beam_search import BeamSearch
    from adaptive_strategies.best_of_n import BestOfN
    from adaptive_strategies.verifiers import LLMJudge, ProcessRewardModel, RewardModel, Verifier

    if setup.simulated:
        solve, step = Sampling(max_tokens=384, temperature=0.7), Sampling(max_tokens=64, temperature=0.7)
    else:
        solve, step = Sampling(max_tokens=640, temperature=0.7), Sampling(max_tokens=160, temperature=0.7)
    verifier: Verifier
    prm: Verifier
    if setup.reward is not None:
        verifier = RewardModel(endpoint=setup.reward)
        prm = ProcessRewardModel(endpoint=setup.reward)
    else:
        verifier = prm = LLMJudge(endpoint=setup.generator, max_tokens=256)
    return {
        "single": SelfConsistency(n=1, sampling=solve),
        "self-consistency": SelfConsistency(n=SC_SAMPLES, sampling=solve),
        "adaptive": AdaptiveConsistency(sampling=solve),
        "best-of-n": BestOfN(n=BEST_OF, verifier=verifier, sampling=solve),
        "beam-search": BeamSearch(width=BEAM_WIDTH, candidates=BEAM_CANDIDATES, prm=prm, sampling=step),
    }


# -- arguments -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m adaptive`."""
    parser = argparse.ArgumentParser(
        prog="adaptive",
        description=(
            "Adaptive test-time compute under per-call budgets: demo, simulated model server, and "
            "calibration of the controller's confidence on your logs."
        ),
    )
    parser.add_argument("--version", action="version", version=f"adaptive {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="compare five strategies under one per-call dollar budget",
        description=(
            "Answer a fixed, seeded set of word problems with single, self-consistency, adaptive, "
            "best-of-n and beam-search under the same per-call dollar budget, then print accuracy, "
            "samples, tokens, dollars and latency per strategy. Runs offline on the simulated "
            "reasoner unless --base-url is given."
        ),
    )
    demo.add_argument(
        "--questions", type=positive_int, default=DEFAULT_QUESTIONS, help="questions (default: %(default)s)"
    )
    demo.add_argument(
        "--budget-usd",
        type=positive_float,
        default=DEFAULT_BUDGET_USD,
        help="dollar budget per call, the same for every strategy (default: %(default)s)",
    )
    demo.add_argument(
        "--seed", type=non_negative_int, default=0, help="seeds the questions and sampling (default: 0)"
    )
    demo.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        help="questions in flight at once, per process (default: %(default)s)",
    )
    demo.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes for the simulator (default: one per CPU, at most 4; 1 runs in process)",
    )
    demo.add_argument("--json", action="store_true", help="end the output with one line of JSON figures")
    demo.add_argument(
        "--plot",
        default=DEFAULT_PLOT,
        metavar="PATH",
        help="where to save the accuracy-vs-cost PNG, with matplotlib (default: %(default)s)",
    )
    demo.add_argument("--no-plot", action="store_true", help="do not save a plot")
    sim = demo.add_argument_group("simulated decoding time (simulator only)")
    sim.add_argument("--first-token-ms", type=non_negative_float, default=0.0, metavar="MS")
    sim.add_argument("--latency-ms-per-token", type=non_negative_float, default=0.0, metavar="MS")
    remote = demo.add_argument_group(
        "a real endpoint",
        "Run the same demo against an OpenAI-compatible chat endpoint. best-of-n and beam-search "
        "then use an LLM judge on the same model (or --verifier-model); beam-search continues "
        "partial answers as assistant prefills, which servers such as vLLM and SGLang support.",
    )
    remote.add_argument("--base-url", help="API root, e.g. http://127.0.0.1:8000/v1")
    remote.add_argument("--model", help="model name (required with --base-url)")
    remote.add_argument("--api-key", help="API key (default: env OPENAI_API_KEY)")
    remote.add_argument(
        "--price-in", type=non_negative_float, metavar="USD", help="$ per million input tokens"
    )
    remote.add_argument(
        "--price-out", type=non_negative_float, metavar="USD", help="$ per million output tokens"
    )
    remote.add_argument(
        "--verifier-model",
        help="a reward model at the same base URL that answers with its score (serve-sim: sim-verifier)",
    )
    remote.add_argument("--verifier-price-in", type=non_negative_float, metavar="USD")
    remote.add_argument("--verifier-price-out", type=non_negative_float, metavar="USD")

    add_run_parser(sub)
    add_serve_parser(sub)
    add_batch_parser(sub)

    serve = sub.add_parser(
        "serve-sim",
        help="serve the simulated model over OpenAI- and Anthropic-compatible HTTP APIs",
        description=(
            "Serve the simulated reasoner (model 'sim-reasoner') and its verifier ('sim-verifier') "
            "at /v1/chat/completions, /v1/completions, /v1/messages (Anthropic), /v1/models, "
            "/v1/models/{id} and /v1/reward until interrupted. Needs the server extra: "
            "pip install 'adaptive-ttc[server]'."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=port, default=8000, help="port, 0 for any free one (default: %(default)s)"
    )
    serve.add_argument(
        "--seed", type=non_negative_int, default=0, help="seeds the simulated models (default: 0)"
    )
    serve.add_argument("--first-token-ms", type=non_negative_float, default=0.0, metavar="MS")
    serve.add_argument("--latency-ms-per-token", type=non_negative_float, default=0.0, metavar="MS")

    calibrate = sub.add_parser(
        "calibrate",
        help="fit the controller's consistency prior on logged votes and save it",
        description=(
            "Fit a ConsistencyPrior (how strongly the model agrees with itself) on a JSONL log and "
            "save it as JSON for Client(endpoint, prior=ConsistencyPrior.load(PATH)). Each line is a "
            'recorded question in the replay format ({"id", "prompt", "gold", "samples": [...]}) or '
            'a vote log ({"votes": {"answer": count, ...}}, e.g. from Result.votes); a file may mix '
            "both. Logs of early-stopped calls are fine to fit on."
        ),
    )
    calibrate.add_argument("logs", metavar="LOGS.jsonl", help="the log to fit on")
    calibrate.add_argument(
        "--out", default=DEFAULT_PRIOR, metavar="PATH", help="where to save the prior (default: %(default)s)"
    )
    calibrate.add_argument(
        "--extract",
        default=DEFAULT_EXTRACTOR,
        metavar="NAME",
        help="answer extractor for sample texts without a pre-extracted answer: answer-is, boxed, "
        "last-number, ... (default: %(default)s)",
    )
    calibrate.add_argument(
        "--first",
        type=positive_int,
        default=None,
        metavar="K",
        help="use only each recorded question's first K samples (default: all; vote logs are used as is)",
    )
    calibrate.add_argument("--json", action="store_true", help="end the output with one line of JSON figures")
    return parser


def demo_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> DemoConfig:
    """Turn parsed `demo` arguments into a `DemoConfig` (exits with a usage error when inconsistent)."""
    remote: RemoteSpec | None = None
    remote_flags = ("model", "api_key", "price_in", "price_out", "verifier_model")
    if args.base_url is None:
        given = [f"--{f.replace('_', '-')}" for f in remote_flags if getattr(args, f) is not None]
        if given:
            parser.error(f"{', '.join(given)} only apply with --base-url")
    else:
        if not args.model:
            parser.error("--base-url needs --model (the model name the server knows)")
        price = price_pair(parser, "--price", args.price_in, args.price_out)
        remote = RemoteSpec(
            base_url=args.base_url,
            model=args.model,
            api_key=args.api_key,
            price=price,
            verifier_model=args.verifier_model,
            verifier_price=price_pair(
                parser, "--verifier-price", args.verifier_price_in, args.verifier_price_out
            ),
        )
    return DemoConfig(
        questions=args.questions,
        budget_usd=args.budget_usd,
        seed=args.seed,
        concurrency=args.concurrency,
        workers=args.workers,
        first_token_seconds=args.first_token_ms / 1000.0,
        seconds_per_token=args.latency_ms_per_token / 1000.0,
        remote=remote,
    )


def _run_with_progress(config: DemoConfig, show: bool) -> DemoReport:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description:>16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not show,
    )
    tasks = {name: progress.add_task(name, total=config.questions) for name in STRATEGY_NAMES}

    def done(name: str) -> None:
        progress.advance(tasks[name])

    with progress:
        return anyio.run(lambda: run_demo(config, demo_strategies, on_done=done))


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rich.console import Console

    config = demo_config(parser, args)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    where = "the simulated reasoner (offline)" if config.remote is None else config.remote.base_url
    console.print(
        f"Running {config.questions} questions x {len(STRATEGY_NAMES)} strategies on {where}, "
        f"budget ${config.budget_usd:g} per call ...",
    )
    report = _run_with_progress(config, show=True)
    render_report(report, console)
    if not args.no_plot:
        saved = save_plot(report, args.plot)
        if saved is None:
            console.print(
                "No plot: matplotlib is not installed (pip install 'adaptive-ttc[plot]').", markup=False
            )
        else:
            console.print(f"Plot of accuracy against mean cost saved to {saved}.")
    if args.json:
        console.file.flush()
        print(json.dumps(report.to_json()), flush=True)
    failed = {name: s for name, s in report.strategies.items() if s.errors}
    if failed:
        # A demo whose calls failed measured nothing: say so and exit non-zero, never a 0% table.
        total = len(report.strategies) * report.questions
        first = next(s.first_error for s in failed.values() if s.first_error)
        print(
            f"adaptive: {sum(s.errors for s in failed.values())} of {total} calls failed "
            f"({', '.join(f'{n}: {s.errors}' for n, s in failed.items())}); first error: {first}",
            file=sys.stderr,
        )
        return 1
    return 0


def _serve_sim(args: argparse.Namespace) -> int:
    require_server_extra("serve-sim")
    from ..sim import SimServer, run_sim_server

    def ready(server: Any, sim: SimServer) -> None:
        model, verifier = sim.model, sim.verifier
        print(f"{server.url}/v1", flush=True)
        print(
            f"adaptive sim server: models {model.name!r} (${model.price.input}/${model.price.output} per "
            f"MTok) and {verifier.name!r} (${verifier.price.input}/${verifier.price.output}); "
            "Ctrl-C stops it.",
            file=sys.stderr,
            flush=True,
        )

    try:
        run_sim_server(
            args.host,
            args.port,
            seed=args.seed,
            first_token_seconds=args.first_token_ms / 1000.0,
            seconds_per_token=args.latency_ms_per_token / 1000.0,
            on_ready=ready,
        )
    except OSError as exc:  # a busy port, a host that does not resolve or is not this machine's
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot serve on {args.host}:{args.port}: {reason} (pick a free --port, or a --host "
            "that is an address of this machine, e.g. 127.0.0.1)"
        ) from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == [WORKER_COMMAND]:  # internal: a worker process of the demo (not in --help)
        worker_main(demo_strategies)
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(parser, args)
        if args.command == "serve-sim":
            return _serve_sim(args)
        if args.command == "calibrate":
            return calibrate(args)
        if args.command == "run":
            return run_command(parser, args)
        if args.command == "serve":
            return serve_command(parser, args)
        if args.command == "batch":
            return batch_command(parser, args)
    except ConfigError as exc:
        print(f"adaptive: error: {exc}", file=sys.stderr)
        return 2
    except AdaptiveError as exc:
        print(f"adaptive: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("adaptive: interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 2
