"""Latency per strategy: each strategy's wall time per call relative to one single-sample call.

Calls run one at a time (no queueing between calls), over the demo's questions, against the
simulated reasoner with a fixed time to the first token and a fixed time per token:

* `50ms+2ms/tok`   50 ms to the first token, 2 ms per token;
* `1s+10ms/tok`    1 s to the first token, 10 ms per token;

each both in process (`SimEndpoint`) and over real loopback HTTP (`python -m adaptive
serve-sim` in a process of its own, as a real server is, or with `--server loop` in the
measured event loop; a streamed `OpenAIChat` client, so a request the controller cancels is
charged what it streamed; the verifier is the server's "sim-verifier", paced like the
model). The simulated
delays are sleeps, so the ratios stay meaningful on a loaded machine: CPU contention adds the
SDK's own (small) time to both sides of a ratio, not the simulated decoding time.

For every strategy it prints p50 / p95 wall time over the single call's p50 / p95, samples,
dollars and sequential rounds per call (rounds are counted from the trace: the distinct rounds
that hold a "send" event), requests cancelled per call (each charged what it used, at an
upper bound: counted here rather than logged one warning each), accuracy, and the endpoint's
concurrency limit.

One more row, "adaptive one round": each question sent, in one round, exactly as many samples
as the default `adaptive` call drew on it (known only in hindsight). No sizing rule that
draws the default's samples without cancelling any can beat its wall time by much, so its
p95 says how far rounds, rather than the samples a question needs, set the default's.

    python benchmarks/latency.py                      # full delays, 20 questions
    python benchmarks/latency.py --scale 0.1          # delays x0.1 (a quick run; it says so)
    python benchmarks/latency.py --json               # last line: one JSON object
    python benchmarks/latency.py --no-stream          # over HTTP, an unstreamed client
    python benchmarks/latency.py --server loop        # the HTTP server in the measured loop

The JSON line is `{"strategies": {NAME: {"p50_ratio", "p95_ratio", "mean_usd", "mean_samples",
"mean_rounds"}}}` for the first setting measured, plus every setting under "settings".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anyio
from adaptive_strategies import AdaptiveConsistency, SelfConsistency
from anyio.streams.buffered import BufferedByteReceiveStream

from adaptive import Budget, Client, ControllerConfig, OpenAIChat, Result, Strategy
from adaptive.cli._demo import INSTRUCTIONS, DemoSetup
from adaptive.cli._main import demo_strategies
from adaptive.sim import Problem, SimEndpoint, SimModel, SimRewardEndpoint, SimVerifier, demo_problems

SETTINGS: dict[str, tuple[float, float]] = {"50ms+2ms/tok": (0.05, 0.002), "1s+10ms/tok": (1.0, 0.010)}
CONCURRENCY = 64  # the endpoint's limit on requests in flight (the benchmark reports it)
# Per call: enough to reserve every strategy's largest batch at once (`max_batch`, 40 samples,
# reserves about $0.0125 at worst), so rounds come from the strategies, not from the budget.
# Under the demo's $0.002 a fixed batch of 16 cannot be reserved at once and must take several
# rounds (the worst case is held before sending): pass --budget 0.002 to see that.
BUDGET_USD = 0.02
ONE_ROUND = "adaptive one round"  # the hindsight row (see the module docstring)


@dataclasses.dataclass
class Figures:
    """One strategy's calls in one setting."""

    walls: list[float] = dataclasses.field(default_factory=list)
    usd: list[float] = dataclasses.field(default_factory=list)
    samples: list[int] = dataclasses.field(default_factory=list)
    rounds: list[int] = dataclasses.field(default_factory=list)
    cancelled: list[int] = dataclasses.field(default_factory=list)
    correct: list[bool] = dataclasses.field(default_factory=list)

    def add(self, wall: float, result: Result, correct: bool) -> None:
        self.walls.append(wall)
        self.usd.append(result.cost_usd)
        self.samples.append(sum(1 for s in result.samples if s.purpose == "generate"))
        self.rounds.append(send_rounds(result))
        self.cancelled.append(sum(1 for c in result.charges if c.status == "cancelled"))
        self.correct.append(correct)


def send_rounds(result: Result) -> int:
    """Sequential rounds of a call: the distinct rounds in which some request was sent."""
    return len({e.round for e in result.trace if e.kind == "send"})


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by the nearest-rank rule (no interpolation: small samples stay honest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def strategies(setup: DemoSetup) -> dict[str, Strategy]:
    """The demo's strategies, and the adaptive one at each latency setting."""
    out = dict(demo_strategies(setup))
    base = out["adaptive"]
    assert isinstance(base, AdaptiveConsistency)
    for latency in ("fast", "cheap"):
        out[f"adaptive-{latency}"] = base.model_copy(update={"latency": latency})
    return out


@contextlib.asynccontextmanager
async def sim_server(first: float, per_token: float, *, in_loop: bool) -> AsyncIterator[str]:
    """The simulated server's OpenAI base URL while the block runs.

    By default `python -m adaptive serve-sim` in a process of its own, as a real server is:
    the server's work (16-40 streams at once, an event per token) is then not done in the
    event loop whose wall time is measured. `in_loop` runs `serve_sim` in this event loop
    instead (the benchmark's setting before: both sides' CPU in one loop).
    """
    if in_loop:
        from adaptive.sim import serve_sim

        async with serve_sim(first_token_seconds=first, seconds_per_token=per_token) as running:
            yield running.url + "/v1"
        return
    command = [
        sys.executable,
        "-m",
        "adaptive",
        "serve-sim",
        "--port",
        "0",
        "--first-token-ms",
        repr(first * 1000),
        "--latency-ms-per-token",
        repr(per_token * 1000),
    ]
    with tempfile.TemporaryFile() as errors:
        process = await anyio.open_process(command, stdout=subprocess.PIPE, stderr=errors)
        try:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            try:
                with anyio.fail_after(60):
                    url = (await lines.receive_until(b"\n", 4096)).decode().strip()
            except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead) as exc:
                errors.seek(0)
                said = errors.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"serve-sim did not start: {said or exc!r}") from exc
            yield url
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.terminate()
                    with anyio.move_on_after(10):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                await process.aclose()


@contextlib.asynccontextmanager
async def endpoints(
    transport: str, first: float, per_token: float, *, stream: bool = True, server: str = "process"
) -> AsyncIterator[DemoSetup]:
    """The demo's endpoints in process, or over loopback HTTP from the sim server (same delays)."""
    if transport == "inproc":
        gen = SimEndpoint(first_token_seconds=first, seconds_per_token=per_token, max_concurrency=CONCURRENCY)
        yield DemoSetup(gen, SimRewardEndpoint(max_concurrency=CONCURRENCY), simulated=True)
        return
    async with sim_server(first, per_token, in_loop=server == "loop") as url:
        chat = OpenAIChat(
            "sim-reasoner",
            base_url=url,
            api_key="sk-local",
            price=SimModel().price,
            max_concurrency=CONCURRENCY,
            stream=stream,  # a cancelled request is charged what it streamed, not its worst case
        )
        reward = OpenAIChat(
            "sim-verifier",
            base_url=url,
            api_key="sk-local",
            price=SimVerifier().price,
            max_concurrency=CONCURRENCY,
        )
        try:
            yield DemoSetup(chat, reward, simulated=True)
        finally:
            await chat.aclose()
            await reward.aclose()


async def run_setting(
    transport: str,
    first: float,
    per_token: float,
    questions: int,
    budget_usd: float,
    names: Sequence[str] | None,
    progress: Callable[[str], None],
    stream: bool = True,
    server: str = "process",
) -> dict[str, Figures]:
    problems = demo_problems(questions, seed=0)
    out: dict[str, Figures] = {}
    async with endpoints(transport, first, per_token, stream=stream, server=server) as setup:
        built = strategies(setup)
        chosen = [n for n in built if names is None or n in names or n == "single"]
        for name in chosen:
            out[name] = await run_calls(setup, problems, lambda i: built[name], budget_usd)  # noqa: B023
            progress(f"{transport} {name}: p50 {quantile(out[name].walls, 0.5):.3f}s")
        if "adaptive" in out:
            # Hindsight: each question's own sample count from the default's call, in one round.
            drawn = out["adaptive"].samples
            # Budget and batch cap enough for up to max_samples at once: neither splits the round.
            out[ONE_ROUND] = await run_calls(
                setup,
                problems,
                lambda i: SelfConsistency(n=max(1, drawn[i])),
                4 * budget_usd,
                ControllerConfig(max_batch=128),
            )
            progress(f"{transport} {ONE_ROUND}: p50 {quantile(out[ONE_ROUND].walls, 0.5):.3f}s")
    return out


async def run_calls(
    setup: DemoSetup,
    problems: Sequence[Problem],
    strategy: Callable[[int], Strategy],
    budget_usd: float,
    controller: ControllerConfig | None = None,
) -> Figures:
    """One strategy's calls, one at a time, on a fresh client (its prior learned from these calls)."""
    client = Client(setup.generator, controller=controller)
    figs = Figures()
    for i, problem in enumerate(problems):
        messages = [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": problem.question},
        ]
        t0 = time.perf_counter()
        result = await client.run(
            messages, strategy=strategy(i), budget=Budget(usd=budget_usd), seed=1000 * (i + 1)
        )
        wall = time.perf_counter() - t0
        figs.add(wall, result, _correct(result.answer, problem.answer))
    return figs


def _correct(answer: str | None, truth: str) -> bool:
    from adaptive import answers_equivalent

    return answers_equivalent(answer, truth)


def summarize(figs: Mapping[str, Figures]) -> dict[str, dict[str, float]]:
    single = figs["single"]
    s50, s95 = quantile(single.walls, 0.5), quantile(single.walls, 0.95)
    out: dict[str, dict[str, float]] = {}
    for name, f in figs.items():
        p50, p95 = quantile(f.walls, 0.5), quantile(f.walls, 0.95)
        out[name] = {
            "p50_s": round(p50, 4),
            "p95_s": round(p95, 4),
            "p50_ratio": round(p50 / s50, 3),
            "p95_ratio": round(p95 / s95, 3),
            "mean_usd": round(statistics.fmean(f.usd), 7),
            "mean_samples": round(statistics.fmean(f.samples), 2),
            "mean_rounds": round(statistics.fmean(f.rounds), 2),
            "mean_cancelled": round(statistics.fmean(f.cancelled), 2),
            "accuracy": round(statistics.fmean(f.correct), 4),
        }
    return out


def render(title: str, table: Mapping[str, Mapping[str, float]]) -> str:
    lines = [
        title,
        f"{'strategy':<20}{'p50 s':>8}{'p95 s':>8}{'p50/1':>7}{'p95/1':>7}"
        f"{'samples':>9}{'rounds':>8}{'cancel':>8}{'$/call':>11}{'acc':>7}",
    ]
    for name, r in table.items():
        lines.append(
            f"{name:<20}{r['p50_s']:>8.3f}{r['p95_s']:>8.3f}{r['p50_ratio']:>7.2f}{r['p95_ratio']:>7.2f}"
            f"{r['mean_samples']:>9.1f}{r['mean_rounds']:>8.2f}{r['mean_cancelled']:>8.1f}"
            f"{r['mean_usd']:>11.6f}{r['accuracy']:>7.1%}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=20, help="calls per strategy and setting")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every simulated delay by this")
    parser.add_argument("--budget", type=float, default=BUDGET_USD, help="per-call dollar budget")
    parser.add_argument("--transport", choices=("inproc", "http", "both"), default="both")
    parser.add_argument("--setting", choices=(*SETTINGS, "both"), default="both")
    parser.add_argument("--strategies", nargs="*", default=None, help="names to run (single always runs)")
    parser.add_argument(
        "--no-stream",
        action="store_true",
        help="over HTTP, an unstreamed client: less work per token; a cancel is charged its worst case",
    )
    parser.add_argument(
        "--server",
        choices=("process", "loop"),
        default="process",
        help="over HTTP, the sim server in a process of its own (default) or in the measured event loop",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be > 0")
    transports = ("inproc", "http") if args.transport == "both" else (args.transport,)
    settings = list(SETTINGS) if args.setting == "both" else [args.setting]

    def progress(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)

    print(
        f"latency per call, calls one at a time, {args.questions} questions, budget ${args.budget}/call, "
        f"endpoint concurrency limit {CONCURRENCY}; delays x{args.scale:g}"
        + (" (scaled down: a quick run)" if args.scale != 1 else " (full delays)")
        + "; simulated delays are sleeps, so the ratios hold on a loaded machine"
    )
    results: dict[str, dict[str, dict[str, float]]] = {}
    # Every cancelled request is booked at an upper bound, which the `adaptive` logger warns
    # of one line each: the table counts them ("cancel") instead (the level is put back).
    logger = logging.getLogger("adaptive")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        for setting in settings:
            first, per_token = (x * args.scale for x in SETTINGS[setting])
            for transport in transports:
                figs = anyio.run(
                    run_setting,
                    transport,
                    first,
                    per_token,
                    args.questions,
                    args.budget,
                    args.strategies,
                    progress,
                    not args.no_stream,
                    args.server,
                )
                plain = args.no_stream and transport == "http"
                key = f"{setting} {transport}" + (" unstreamed" if plain else "")
                if transport == "http" and args.server == "loop":
                    key += " server-in-loop"
                results[key] = table = summarize(figs)
                delays = f"first token {first * 1000:g} ms, {per_token * 1000:g} ms/token"
                print()
                print(render(f"{key} ({delays})", table))
    finally:
        logger.setLevel(level)
    if args.json:
        first_key = next(iter(results))
        keep = ("p50_ratio", "p95_ratio", "mean_usd", "mean_samples", "mean_rounds")
        payload: dict[str, Any] = {
            "strategies": {n: {k: r[k] for k in keep} for n, r in results[first_key].items()},
            "setting": first_key,
            "scale": args.scale,
            "concurrency": CONCURRENCY,
            "server": args.server,
            "settings": results,
        }
        print(json.dumps(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
