"""The demo behind `python -m adaptive demo`: five strategies, one per-call dollar budget.

A fixed, seeded set of arithmetic word problems (`adaptive.sim.demo_problems`) is answered by
each strategy in turn, `concurrency` questions at a time, through one `Client` per strategy
(so the controller's consistency prior calibrates across the questions, as in a live system).
Every call gets the same `Budget(usd=budget_usd)`. By default the model is the in-process
simulated reasoner and the verifier its simulated reward model; with `RemoteSpec` the same
demo runs against any OpenAI-compatible endpoint.

The strategies themselves come from a factory (`StrategyFactory`) so that this module
depends only on adaptive's public protocol; the CLI passes the built-in ones.

On the simulator the work is CPU-bound: with more than one worker the questions are spread
over worker processes (each runs `python -m adaptive _demo-worker` and reads its share from
stdin). The strategy `adaptive` always runs in one process, over every question in order, so
its prior sees every call. Results do not depend on the number of workers: every call is
seeded by its question.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread
import numpy as np
from anyio.streams.buffered import BufferedByteReceiveStream

from .._budget import Budget
from .._client import Client
from .._exceptions import AdaptiveError, ConfigError
from .._normalize import answers_equivalent
from .._prices import Price, usd_to_pico
from .._result import Result
from .._strategy import Strategy
from ..endpoints._base import Endpoint
from ..endpoints.openai_chat import OpenAIChat
from ..sim import Problem, SimEndpoint, SimRewardEndpoint, demo_problems

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "CLAIM",
    "DEFAULT_BUDGET_USD",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_QUESTIONS",
    "INSTRUCTIONS",
    "STRATEGY_NAMES",
    "CallRecord",
    "DemoConfig",
    "DemoReport",
    "DemoSetup",
    "PairedComparison",
    "RemoteSpec",
    "StrategyFactory",
    "StrategySummary",
    "available_cpus",
    "check_budget",
    "compare_paired",
    "describe_paired",
    "render_report",
    "run_demo",
    "save_plot",
    "stopped_early",
    "summarize",
    "worker_main",
]

STRATEGY_NAMES = ("single", "self-consistency", "adaptive", "best-of-n", "beam-search")
"""The strategies of the demo, in the order they run and are shown."""

DEFAULT_QUESTIONS = 1000
"""Enough that adaptive's accuracy against self-consistency's, paired on the same questions,
has a standard error near half a point (about 60 s of CPU on the simulator)."""
DEFAULT_CONCURRENCY = 16
DEFAULT_BUDGET_USD = 0.002
"""Per call. On the simulator (priced like gpt-4o-mini) one sample costs about $0.0001 and
reserves at most $0.0003, so a single sample never feels the budget, while 16 samples (with
or without a verifier) or a step-level search cannot all fit in it."""

INSTRUCTIONS = (
    "Solve the problem step by step. Write each step as its own paragraph, separated by a blank "
    "line, and end with a sentence of the form 'The answer is N.'"
)
"""The system message sent with every question (the simulator ignores it)."""

_SEED_STRIDE = 1000  # each question's samples are seeded from its own block of seeds
_FINISHED = ("strategy_done", "max_samples")
_AUTO_WORKER_MIN_QUESTIONS = 48  # below this a worker process costs more than it saves
_MAX_AUTO_WORKERS = 4


# -- configuration -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RemoteSpec:
    """Run the demo against an OpenAI-compatible chat endpoint instead of the simulator.

    Attributes:
        base_url: The API root, e.g. "http://127.0.0.1:8000/v1".
        model: The generation model's name.
        api_key: Bearer token (None: env OPENAI_API_KEY, else none); never shown.
        price: The model's price; None looks it up in genai-prices.
        verifier_model: A reward model served at the same base URL (it must answer with the
            score as the message content, as `serve-sim`'s "sim-verifier" does); None uses an
            LLM judge on the generation model.
        verifier_price: The reward model's price; None uses `price`.
    """

    base_url: str
    model: str
    api_key: str | None = dataclasses.field(default=None, repr=False)
    price: Price | None = None
    verifier_model: str | None = None
    verifier_price: Price | None = None


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Attributes:
        questions: How many problems (the first `questions` of the seeded demo set).
        budget_usd: The per-call dollar budget, the same for every strategy.
        seed: Seeds the problem set and every call's sampling.
        concurrency: Questions in flight at once (per worker process).
        workers: Worker processes for the simulator (1: run in this process; None: one per
            available CPU, at most 4, when there are enough questions). Remote runs use 1.
        first_token_seconds: Simulated time to the first token (simulator only).
        seconds_per_token: Simulated decoding time per token (simulator only).
        remote: Run against this endpoint instead of the simulator.

    Raises:
        ConfigError: A value is out of range.
    """

    questions: int = DEFAULT_QUESTIONS
    budget_usd: float = DEFAULT_BUDGET_USD
    seed: int = 0
    concurrency: int = DEFAULT_CONCURRENCY
    workers: int | None = None
    first_token_seconds: float = 0.0
    seconds_per_token: float = 0.0
    remote: RemoteSpec | None = None

    def __post_init__(self) -> None:
        if self.questions < 1:
            raise ConfigError(f"questions must be at least 1, got {self.questions}")
        if not (math.isfinite(self.budget_usd) and self.budget_usd > 0):
            raise ConfigError(f"budget_usd must be a positive number of dollars, got {self.budget_usd}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1 (or None for automatic), got {self.workers}")
        for label, value in (
            ("first_token_seconds", self.first_token_seconds),
            ("seconds_per_token", self.seconds_per_token),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{label} must be a finite number >= 0, got {value}")

    def resolved_workers(self) -> int:
        """The number of worker processes this run uses."""
        if self.remote is not None:
            return 1  # network-bound: one event loop is enough, and the key stays in-process
        if self.workers is not None:
            return self.workers
        if self.questions < _AUTO_WORKER_MIN_QUESTIONS:
            return 1
        return max(1, min(available_cpus(), _MAX_AUTO_WORKERS))

    def model_label(self) -> str:
        """What the report calls the model."""
        return "simulated reasoner" if self.remote is None else self.remote.model


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class DemoSetup:
    """What a `StrategyFactory` builds the demo's strategies on.

    Attributes:
        generator: The generation endpoint.
        reward: A reward-model endpoint answering with scores (`RewardModel` /
            `ProcessRewardModel` read them), or None: then judge with the generator.
        simulated: Whether the generator is the simulator (its solutions are at most ~320
            tokens and its steps ~60, so tighter `max_tokens` fit).
    """

    generator: Endpoint
    reward: Endpoint | None
    simulated: bool


StrategyFactory = Callable[[DemoSetup], Mapping[str, Strategy]]
"""Builds the strategies named in `STRATEGY_NAMES` on the given endpoints."""


# -- results -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CallRecord:
    """One question answered by one strategy.

    Attributes:
        index: The question's position in the demo set.
        correct: Whether the answer matches the problem's (after normalization).
        samples: Completions generated (verifier calls excluded).
        tokens: Every token of the call, prompt and completion, verifier calls included.
        usd: What the call cost.
        seconds: The call's wall-clock time (`Result.elapsed_s`).
        stop_reason: Why it stopped ("error" when the call raised).
        error: The error's type and message when the call raised, else None.
    """

    index: int
    correct: bool
    samples: int
    tokens: int
    usd: float
    seconds: float
    stop_reason: str
    error: str | None = None

    @classmethod
    def of(cls, index: int, problem: Problem, result: Result) -> CallRecord:
        """Score a result against the problem's answer."""
        return cls(
            index=index,
            correct=answers_equivalent(result.answer, problem.answer),
            samples=result.generated,
            tokens=result.usage.total_tokens,
            usd=result.cost_usd,
            seconds=result.elapsed_s,
            stop_reason=result.stop_reason,
        )


def stopped_early(stop_reason: str) -> bool:
    """Whether a call stopped before its strategy finished its plan.

    True when a stop rule fired ("confident", "low_gain", "budget", ...),
    the budget left no room for the next request ("budget"), or the deadline passed; False
    when the strategy ran to its end ("strategy_done") or hit the controller's sample cap
    ("max_samples"), and for calls that failed ("error").
    """
    return stop_reason not in (*_FINISHED, "error")


@dataclasses.dataclass(frozen=True)
class StrategySummary:
    """One strategy's figures over the demo's questions (means are per call).

    Attributes:
        accuracy: Share of questions answered correctly.
        mean_samples: Mean completions generated per call.
        mean_tokens: Mean tokens per call (verifier calls included).
        mean_usd: Mean dollars per call.
        p50_s: Median call latency, seconds.
        p95_s: 95th-percentile call latency, seconds.
        max_usd: The most any call cost.
        stopped_early: Share of calls that stopped early (see `stopped_early`).
        errors: Calls that raised (remote endpoints only).
        first_error: The first of those errors (type and message), else None.
    """

    accuracy: float
    mean_samples: float
    mean_tokens: float
    mean_usd: float
    p50_s: float
    p95_s: float
    max_usd: float
    stopped_early: float
    errors: int = 0
    first_error: str | None = None

    def as_json(self) -> dict[str, float]:
        """The figures of the JSON report."""
        return {
            "accuracy": self.accuracy,
            "mean_samples": self.mean_samples,
            "mean_tokens": self.mean_tokens,
            "mean_usd": self.mean_usd,
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "max_usd": self.max_usd,
            "stopped_early": self.stopped_early,
        }


def summarize(records: Sequence[CallRecord]) -> StrategySummary:
    """Summarize one strategy's calls.

    Raises:
        ConfigError: `records` is empty.
    """
    if not records:
        raise ConfigError("no calls to summarize")
    seconds = np.array([r.seconds for r in records], dtype=np.float64)
    n = len(records)
    return StrategySummary(
        accuracy=sum(r.correct for r in records) / n,
        mean_samples=sum(r.samples for r in records) / n,
        mean_tokens=sum(r.tokens for r in records) / n,
        mean_usd=math.fsum(r.usd for r in records) / n,
        p50_s=float(np.percentile(seconds, 50)),
        p95_s=float(np.percentile(seconds, 95)),
        max_usd=max(r.usd for r in records),
        stopped_early=sum(stopped_early(r.stop_reason) for r in records) / n,
        errors=sum(r.stop_reason == "error" for r in records),
        first_error=next((r.error for r in records if r.error is not None), None),
    )


CLAIM = ("adaptive", "self-consistency")
"""The comparison the demo is about: the controller against fixed self-consistency."""

_Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """One strategy against another on the same questions (same seeds), question by question.

    Both strategies answer the same questions, so the accuracy difference is measured per
    question: its standard error comes from the questions where exactly one of them is right
    (an unpaired comparison would add both strategies' question-to-question spread).

    Attributes:
        name: The strategy compared.
        baseline: The strategy it is compared against.
        questions: Questions answered by both.
        difference: Accuracy of `name` minus `baseline`'s (a share: 0.01 is one point).
        se: Standard error of `difference` (the paired differences' standard deviation over
            the square root of `questions`); None with a single question, where it is undefined.
        low: The 95% interval's lower end (normal approximation), None when `se` is.
        high: Its upper end, None when `se` is.
        wins: Questions only `name` answered correctly.
        losses: Questions only `baseline` answered correctly.
        usd_ratio: `name`'s mean dollars per call over `baseline`'s; None when the baseline
            spent nothing (every call of a remote run failed before it was billed).
    """

    name: str
    baseline: str
    questions: int
    difference: float
    se: float | None
    low: float | None
    high: float | None
    wins: int
    losses: int
    usd_ratio: float | None

    def as_json(self) -> dict[str, Any]:
        """The figures of the JSON report (`se`, `low`, `high`, `usd_ratio`: null when undefined)."""
        return dataclasses.asdict(self)


def compare_paired(
    name: str, records: Sequence[CallRecord], baseline: str, base: Sequence[CallRecord]
) -> PairedComparison:
    """Compare two strategies' calls on the same questions.

    Raises:
        ConfigError: The two lists are empty or do not cover the same questions in the same
            order.
    """
    if not records or [r.index for r in records] != [r.index for r in base]:
        raise ConfigError(f"{name} and {baseline} must answer the same questions, in the same order")
    base_usd = math.fsum(r.usd for r in base)
    pairs = zip(records, base, strict=True)
    d = np.array([int(a.correct) - int(b.correct) for a, b in pairs], dtype=np.float64)
    n = len(d)
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return PairedComparison(
        name=name,
        baseline=baseline,
        questions=n,
        difference=mean,
        se=se,
        low=None if se is None else mean - _Z95 * se,
        high=None if se is None else mean + _Z95 * se,
        wins=int((d > 0).sum()),
        losses=int((d < 0).sum()),
        usd_ratio=math.fsum(r.usd for r in records) / base_usd if base_usd > 0 else None,
    )


@dataclasses.dataclass(frozen=True)
class DemoReport:
    """What the demo measured.

    Attributes:
        strategies: Figures per strategy, in `STRATEGY_NAMES` order.
        budget_usd: The per-call budget.
        questions: Questions answered by each strategy.
        seconds: Wall-clock time of the whole run.
        workers: Worker processes used.
        concurrency: Questions in flight at once (per worker).
        model: What answered ("simulated reasoner" or the remote model's name).
        simulated_latency: Whether decoding time was simulated.
        paired: `adaptive` against `self-consistency` on the same questions (see `CLAIM`),
            or None when either did not run.
    """

    strategies: dict[str, StrategySummary]
    budget_usd: float
    questions: int
    seconds: float
    workers: int = 1
    concurrency: int = DEFAULT_CONCURRENCY
    model: str = "simulated reasoner"
    simulated_latency: bool = False
    paired: PairedComparison | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as the JSON object `--json` prints ("paired": null when it is None)."""
        return {
            "strategies": {name: s.as_json() for name, s in self.strategies.items()},
            "budget_usd": self.budget_usd,
            "questions": self.questions,
            "seconds": round(self.seconds, 3),
            "paired": None if self.paired is None else self.paired.as_json(),
        }


def check_budget(report: DemoReport) -> None:
    """Make sure no call spent more than the budget (the SDK's promise).

    Raises:
        AdaptiveError: Some call cost more than the budget (a bug in adaptive).
    """
    limit = usd_to_pico(report.budget_usd)
    for name, s in report.strategies.items():
        if round(s.max_usd * 1e12) > limit:
            raise AdaptiveError(
                f"{name}: a call cost ${s.max_usd:.9f}, more than its ${report.budget_usd} budget; "
                "this is a bug in adaptive, please report it"
            )


# -- running -------------------------------------------------------------------------------


def _messages(problem: Problem) -> list[dict[str, str]]:
    return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": problem.question}]


def _question_seed(config: DemoConfig, index: int) -> int:
    return (config.seed * 1_000_003 + index) * _SEED_STRIDE


@dataclasses.dataclass
class _Endpoints:
    setup: DemoSetup
    owned: list[Endpoint]

    async def aclose(self) -> None:
        for endpoint in self.owned:
            close = getattr(endpoint, "aclose", None)
            if callable(close):
                await close()


def _endpoints(config: DemoConfig) -> _Endpoints:
    remote = config.remote
    if remote is None:
        generator = SimEndpoint(
            first_token_seconds=config.first_token_seconds, seconds_per_token=config.seconds_per_token
        )
        return _Endpoints(DemoSetup(generator, SimRewardEndpoint(), simulated=True), [])
    chat = OpenAIChat(
        remote.model,
        base_url=remote.base_url,
        api_key=remote.api_key,
        price=remote.price,
        max_concurrency=max(64, config.concurrency * 4),
    )
    owned: list[Endpoint] = [chat]
    reward: Endpoint | None = None
    if remote.verifier_model is not None:
        rm = OpenAIChat(
            remote.verifier_model,
            base_url=remote.base_url,
            api_key=remote.api_key,
            price=remote.verifier_price or remote.price,
            max_concurrency=max(64, config.concurrency * 4),
        )
        owned.append(rm)
        reward = rm
    return _Endpoints(DemoSetup(chat, reward, simulated=False), owned)


def _check_prices(setup: DemoSetup) -> None:
    for endpoint in (setup.generator, setup.reward):
        if endpoint is not None and endpoint.price is None:
            raise ConfigError(
                f"{endpoint.name} has no known price, so a dollar budget cannot be enforced: give "
                "--price-in and --price-out ($ per million tokens; --verifier-price-in/-out for the "
                "verifier model)"
            )


async def _run_strategy(
    config: DemoConfig,
    factory: StrategyFactory,
    name: str,
    indices: Sequence[int],
    problems: Sequence[Problem],
    on_done: Callable[[str], None],
) -> list[CallRecord]:
    """Answer the questions `indices` with one strategy through one client."""
    endpoints = _endpoints(config)
    try:
        setup = endpoints.setup
        _check_prices(setup)
        strategy = factory(setup)[name]
        client = Client(setup.generator)
        budget = Budget(usd=config.budget_usd)
        limiter = anyio.CapacityLimiter(config.concurrency)
        records: dict[int, CallRecord] = {}

        async def one(i: int) -> None:
            async with limiter:
                problem = problems[i]
                try:
                    result = await client.run(
                        _messages(problem), strategy=strategy, budget=budget, seed=_question_seed(config, i)
                    )
                except AdaptiveError as exc:
                    # Bad configuration is fatal; the simulator never fails, so an error there
                    # is a bug to surface. A remote call that failed counts as a wrong answer.
                    if config.remote is None or isinstance(exc, ConfigError):
                        raise
                    receipt = exc.receipt if isinstance(exc.receipt, Result) else Result(answer=None)
                    records[i] = dataclasses.replace(
                        CallRecord.of(i, problem, receipt),
                        correct=False,
                        stop_reason="error",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                else:
                    records[i] = CallRecord.of(i, problem, result)
            on_done(name)

        async with anyio.create_task_group() as tg:
            for i in indices:
                tg.start_soon(one, i)
        return [records[i] for i in indices]
    finally:
        await endpoints.aclose()


@dataclasses.dataclass(frozen=True)
class _Unit:
    """A share of the work: one strategy over a range of questions."""

    name: str
    start: int
    stop: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "start": self.start, "stop": self.stop}


def _units(config: DemoConfig, workers: int) -> list[_Unit]:
    """Split the work for `workers` processes, the biggest shares first."""
    q = config.questions
    if workers == 1:
        return [_Unit(name, 0, q) for name in STRATEGY_NAMES]
    size = max(1, -(-q // (2 * workers)))
    units = [_Unit("adaptive", 0, q)]  # one process sees every call: its prior calibrates on all
    for name in ("beam-search", "best-of-n", "self-consistency"):
        units.extend(_Unit(name, s, min(q, s + size)) for s in range(0, q, size))
    units.append(_Unit("single", 0, q))  # one sample per question: cheap
    return units


async def run_demo(
    config: DemoConfig,
    factory: StrategyFactory,
    *,
    on_done: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the demo and summarize it.

    Args:
        config: What to run.
        factory: Builds the strategies (the CLI passes adaptive's built-in ones).
        on_done: Called with the strategy's name after each answered question (progress).

    Raises:
        ConfigError: Bad configuration, or a remote model with no known price.
        AdaptiveError: A worker process failed.
    """
    notify = on_done or (lambda name: None)
    t0 = time.perf_counter()
    problems = demo_problems(config.questions, seed=config.seed)
    workers = config.resolved_workers()
    records: dict[str, list[CallRecord]] = {name: [] for name in STRATEGY_NAMES}
    if workers == 1:
        for unit in _units(config, 1):
            indices = range(unit.start, unit.stop)
            records[unit.name] = await _run_strategy(config, factory, unit.name, indices, problems, notify)
    else:
        queue = _units(config, workers)
        errors: list[AdaptiveError] = []
        async with anyio.create_task_group() as tg:
            for _ in range(min(workers, len(queue))):
                tg.start_soon(_drive_worker, config, queue, records, notify, errors, tg.cancel_scope)
        if errors:
            raise errors[0]
        if queue:  # pragma: no cover - a worker that exits 0 early is a bug
            raise AdaptiveError("the demo workers stopped before doing all the work")
    seconds = time.perf_counter() - t0
    summaries = {}
    ordered: dict[str, list[CallRecord]] = {}
    for name in STRATEGY_NAMES:
        ordered[name] = sorted(records[name], key=lambda r: r.index)
        summaries[name] = summarize(ordered[name])
    paired = compare_paired(CLAIM[0], ordered[CLAIM[0]], CLAIM[1], ordered[CLAIM[1]])
    report = DemoReport(
        strategies=summaries,
        budget_usd=config.budget_usd,
        questions=config.questions,
        seconds=seconds,
        workers=workers,
        concurrency=config.concurrency,
        model=config.model_label(),
        simulated_latency=config.remote is None
        and (config.first_token_seconds > 0 or config.seconds_per_token > 0),
        paired=paired,
    )
    check_budget(report)
    return report


# -- worker processes ----------------------------------------------------------------------


def _config_json(config: DemoConfig) -> dict[str, Any]:
    assert config.remote is None, "remote runs stay in one process"
    return {
        "questions": config.questions,
        "budget_usd": config.budget_usd,
        "seed": config.seed,
        "concurrency": config.concurrency,
        "first_token_seconds": config.first_token_seconds,
        "seconds_per_token": config.seconds_per_token,
    }


def _worker_env() -> dict[str, str]:
    # The workers import adaptive and strategies from where this process found them.
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


async def _drive_worker(
    config: DemoConfig,
    queue: list[_Unit],
    records: dict[str, list[CallRecord]],
    notify: Callable[[str], None],
    errors: list[AdaptiveError],
    scope: anyio.CancelScope,
) -> None:
    """Feed units to one worker process until the queue is empty; collect its records.

    A failure is added to `errors` and cancels `scope` (the other workers): the caller raises
    one error rather than a group.
    """
    stderr = bytearray()
    cause: Exception | None = None
    try:
        code = await _worker_session(config, queue, records, notify, stderr)
    except Exception as exc:  # a broken pipe, a malformed line: the exit code tells more
        code, cause = -1, exc
    if code != 0:
        tail = bytes(stderr).decode(errors="replace").strip()[-2000:]
        detail = tail or (f"{type(cause).__name__}: {cause}" if cause is not None else "")
        errors.append(
            AdaptiveError(
                f"a demo worker process failed (exit code {code}); --workers 1 runs the demo in one "
                f"process instead:\n{detail}"
            )
        )
        scope.cancel()


async def _worker_session(
    config: DemoConfig,
    queue: list[_Unit],
    records: dict[str, list[CallRecord]],
    notify: Callable[[str], None],
    stderr: bytearray,
) -> int:
    """Run one worker process to the end and return its exit code."""
    command = [sys.executable, "-m", "adaptive", "_demo-worker"]
    process = await anyio.open_process(command, env=_worker_env())
    async with process:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        stdin, err = process.stdin, process.stderr

        async def send(obj: dict[str, Any] | None) -> None:
            if obj is None:
                await stdin.aclose()
            else:
                await stdin.send(json.dumps(obj).encode() + b"\n")

        async def next_unit() -> None:
            # One event loop: popping from the shared queue cannot race.
            await send(queue.pop(0).as_json() if queue else None)

        async def drain_stderr() -> None:
            async for chunk in err:
                stderr.extend(chunk)
                del stderr[:-65536]  # the tail is what explains a failure

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain_stderr)
            try:
                await send(_config_json(config))
                await next_unit()
                reader = BufferedByteReceiveStream(process.stdout)
                while True:
                    try:
                        line = (await reader.receive_until(b"\n", 1 << 24)).decode()
                    except (anyio.EndOfStream, anyio.IncompleteRead):
                        break
                    if line.startswith("P "):
                        notify(line[2:])
                    elif line.startswith("R "):
                        data = json.loads(line[2:])
                        records[data["name"]].extend(CallRecord(**r) for r in data["records"])
                        await next_unit()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the worker went away: its exit code and stderr say why
        return await process.wait()


def worker_main(factory: StrategyFactory) -> None:
    """Run as a demo worker: config and then units on stdin, progress and records on stdout.

    Protocol (one JSON object per line): stdin holds the config, then one unit
    `{"name", "start", "stop"}` at a time, each sent after the previous unit's records, and
    ends when there is no more work. Stdout gets `P <name>` per answered question and
    `R {"name", "records"}` per finished unit.
    """
    first = sys.stdin.readline()
    config = DemoConfig(**json.loads(first))
    problems = demo_problems(config.questions, seed=config.seed)

    def done(name: str) -> None:
        sys.stdout.write(f"P {name}\n")
        sys.stdout.flush()

    async def main() -> None:
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line.strip():
                return
            unit = json.loads(line)
            indices = range(unit["start"], unit["stop"])
            got = await _run_strategy(config, factory, unit["name"], indices, problems, done)
            payload = {"name": unit["name"], "records": [dataclasses.asdict(r) for r in got]}
            sys.stdout.write("R " + json.dumps(payload) + "\n")
            sys.stdout.flush()

    anyio.run(main)


# -- showing -------------------------------------------------------------------------------


def render_report(report: DemoReport, console: Console) -> None:
    """Print the report's table and notes on a rich `Console`."""
    from rich.table import Table

    title = (
        f"{report.questions} questions, {report.model}, budget ${report.budget_usd:g} per call "
        "for every strategy"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("strategy", style="bold")
    for header in ("accuracy", "samples", "tokens", "mean $", "p50 s", "p95 s", "stopped early", "max $"):
        table.add_column(header, justify="right")
    show_errors = any(s.errors for s in report.strategies.values())
    if show_errors:
        table.add_column("errors", justify="right")
    for name, s in report.strategies.items():
        row = [
            name,
            f"{s.accuracy:.1%}",
            f"{s.mean_samples:.1f}",
            f"{s.mean_tokens:,.0f}",
            f"{s.mean_usd:.6f}",
            f"{s.p50_s:.3f}",
            f"{s.p95_s:.3f}",
            f"{s.stopped_early:.0%}",
            f"{s.max_usd:.6f}",
        ]
        if show_errors:
            row.append(str(s.errors))
        table.add_row(*row)
    console.print(table)
    if report.paired is not None:
        console.print(describe_paired(report.paired), highlight=False)
    top = max(s.max_usd for s in report.strategies.values())
    console.print(
        f"Max $ per call: ${top:.6f} <= budget ${report.budget_usd:g} for every strategy (checked)."
    )
    latency = "per-call wall time"
    if report.model == "simulated reasoner" and not report.simulated_latency:
        latency += (
            " (compute only: the simulator answers at once; --first-token-ms and "
            "--latency-ms-per-token simulate decoding)"
        )
    console.print(
        "[dim]samples: completions generated per call, verifier calls excluded. tokens: every token "
        f"of the call, verifier included. p50/p95: {latency}. stopped early: the call ended because "
        "a stop rule fired or the budget had no room for more (stop_reason not 'strategy_done' or "
        "'max_samples').[/dim]",
        highlight=False,
    )
    how = "in this process" if report.workers == 1 else f"over {report.workers} worker processes"
    console.print(
        f"Ran in {report.seconds:.1f} s ({how}, {report.concurrency} questions at a time).", highlight=False
    )


def describe_paired(p: PairedComparison) -> str:
    """One sentence for a paired comparison: the difference, its uncertainty, the dollars."""
    head = f"{p.name} vs {p.baseline}, paired on the same {p.questions} questions: "
    diff = f"{p.difference * 100:+.1f} points"
    if p.se is None or p.low is None or p.high is None:
        spread = " (one question: no uncertainty can be given)"
    else:
        spread = f" (standard error {p.se * 100:.1f}; 95% interval {p.low * 100:+.1f} to {p.high * 100:+.1f})"
    if p.usd_ratio is None:
        dollars = f"{p.baseline} spent nothing, so there is no dollar ratio."
    else:
        dollars = f"at {p.usd_ratio:.0%} of its mean dollars."
    return f"{head}{diff}{spread}; right on {p.wins} it missed, wrong on {p.losses} it got; {dollars}"


def save_plot(report: DemoReport, path: str | Path) -> Path | None:
    """Save accuracy against mean cost per call as a PNG; None when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    markers = "osD^vP*X"
    for i, (name, s) in enumerate(report.strategies.items()):
        ax.scatter(
            [s.mean_usd * 1000], [s.accuracy * 100], s=50, marker=markers[i % len(markers)], label=name
        )
    # A legend, not labels beside the points: strategies of similar cost and accuracy overlap.
    ax.legend(loc="best", fontsize=9)
    ax.set_xlabel("mean cost per question (thousandths of a dollar)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"{report.model}: {report.questions} questions, ${report.budget_usd:g} budget per call", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    return out
