"""Fault injection: thousands of seeded trials against servers that fail or lie (issue #9, item 12).

Every trial (`faults.plans.make_trial(seed)`) runs one `client.run` through a real HTTP
endpoint (OpenAI chat, OpenAI completions or Anthropic, streamed or not) with a built-in
strategy named by its registry name, under one budget kind, against a fault server that
applies the trial's seeded plan of faults. The trials run concurrently in batches in one
event loop, against one server per endpoint kind. Every trial must show:

1. recorded spend (`cost_usd`, `usage` tokens, samples, elapsed) within the budget;
2. the server's own bill within the budget, when the server stayed within what the SDK
   could reserve (honest usage, prompt within the byte bound, completion within max_tokens,
   choices == n);
3. `stop_reason == "overrun"` when the server reported more than could be reserved, and no
   new request after the first overrun;
4. every failure an `AdaptiveError` (never an ExceptionGroup or a bare Python error), with the
   partial result as `error.receipt` when money was spent;
5. nothing left behind: no connection open on the server once the trial's endpoints are
   closed, no task alive but the driver's.

`ADAPTIVE_FAULT_TRIALS` sets the number of trials (default 2000); `ADAPTIVE_FAULT_SEED` the
first seed. A failing trial is printed as one line with its seed and plan;
`ADAPTIVE_FAULT_SEEDS=17,203` reruns just those seeds.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import gc
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from adaptive_strategies.verifiers import FunctionVerifier, LLMJudge, ProcessRewardModel
from faults.bill import INPUT_PICO, OUTPUT_PICO, TrialBill
from faults.plans import ENDPOINTS, FAMILIES, Trial, make_trial
from faults.server import FaultServer, fault_servers
from faults.tap import Tap

import adaptive
from adaptive import AdaptiveError, Anthropic, Budget, Client, OpenAIChat, OpenAICompletions, Price, Result
from adaptive.endpoints import RetryPolicy

TRIALS = int(os.environ.get("ADAPTIVE_FAULT_TRIALS", "2000"))
FIRST_SEED = int(os.environ.get("ADAPTIVE_FAULT_SEED", "0"))
SEEDS = os.environ.get("ADAPTIVE_FAULT_SEEDS", "")
BATCH = 32
TRIAL_TIMEOUT = 30.0
PRICE = Price(input=INPUT_PICO / 1e6, output=OUTPUT_PICO / 1e6)
QUESTION = "What is 6 times 7? Think step by step."
RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05)

COLUMNS = ("trials", "rec_over", "bill_over", "no_overrun", "untyped", "no_receipt", "leaks", "hung")
# Not invariants: trials refused as bad input (a chat strategy on a raw-prompt endpoint), and
# the `AdaptiveWarning`s (`Final.Warning`) the strategies emitted when they took a fallback.
INFO = ("config_err", "warnings")
# A deadline is enforced by cancellation: the run ends a little after it (cleanup, a loaded loop).
DEADLINE_SLACK = 1.0
# The trial whose code is running (the SDK's tasks inherit it): warnings are counted per trial.
_TRIAL: contextvars.ContextVar[Outcome | None] = contextvars.ContextVar("fault_trial", default=None)


@dataclasses.dataclass
class Outcome:
    """What one trial did, and which invariants it broke."""

    trial: Trial
    result: Result | None = None
    error: BaseException | None = None
    hung: bool = False
    bill: TrialBill = dataclasses.field(default_factory=TrialBill)
    broken: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def recorded(self) -> Result | None:
        """The result, or the partial result an error carried."""
        if self.result is not None:
            return self.result
        receipt = getattr(self.error, "receipt", None)
        return receipt if isinstance(receipt, Result) else None


# -- building a trial -----------------------------------------------------------------------
def _settings(trial: Trial, server: FaultServer) -> dict[str, Any]:
    return {
        "api_key": "sk-fault-injection",
        "price": PRICE,
        "stream": trial.stream,
        "headers": {"x-fault-trial": trial.id},
        "retry": RETRY,
        "timeout": 5.0,
        "max_concurrency": 8,
    }


def _endpoints(trial: Trial, server: FaultServer) -> tuple[Any, Any]:
    """(the trial's endpoint, a chat endpoint on the same server for judges and PRMs)."""
    s = _settings(trial, server)
    if trial.endpoint == "openai-chat":
        ep = OpenAIChat("fault-chat", base_url=server.url + "/v1", **s)
        return ep, ep
    if trial.endpoint == "anthropic":
        ep = Anthropic("fault-claude", base_url=server.url, **s)
        return ep, ep
    # Legacy completions take raw prompts only: judges and PRMs need a chat route.
    lm = OpenAICompletions("fault-lm", base_url=server.url + "/v1", **s)
    return lm, OpenAIChat("fault-judge", base_url=server.url + "/v1", **s)


def _has_42(question: str, solution: str) -> float:
    return float("42" in solution)


def _fast(trial: Trial) -> bool:
    """Every other adaptive trial is "fast", its timed top-up due at once (see `run_trial`).

    From the seed, not the trial's random draws: the other trials stay as they were.
    """
    return trial.strategy == "adaptive" and (trial.seed // 36) % 2 == 1


def _strategy(trial: Trial, chat: Any) -> str | dict[str, Any]:
    function = FunctionVerifier(_has_42)
    if trial.strategy == "single":
        return "single"
    if trial.strategy == "self-consistency":
        return {"name": "self-consistency", "n": 6}
    if trial.strategy == "adaptive":
        if _fast(trial):
            return {"name": "adaptive", "max_samples": 10, "latency": "fast"}
        return {"name": "adaptive", "max_samples": 10}
    if trial.strategy == "best-of-n":
        judge = LLMJudge(chat, max_tokens=32) if trial.verifier == "judge" else function
        return {"name": "best-of-n", "n": 4, "verifier": judge}
    prm = ProcessRewardModel(chat) if trial.verifier == "judge" else function
    if trial.strategy == "beam-search":
        return {"name": "beam-search", "width": 2, "candidates": 4, "max_depth": 4, "prm": prm}
    assert trial.strategy == "dvts"
    return {"name": "dvts", "subtrees": 2, "width": 2, "max_depth": 4, "prm": prm}


def _budget(trial: Trial) -> Budget:
    value: float | int = trial.budget if trial.budget_kind in ("usd", "seconds") else int(trial.budget)
    return Budget(**{trial.budget_kind: value})


async def run_trial(trial: Trial, server: FaultServer) -> Outcome:
    out = Outcome(trial)
    _TRIAL.set(out)
    server.register(trial)
    main, chat = _endpoints(trial, server)
    try:
        with anyio.move_on_after(TRIAL_TIMEOUT) as scope:
            async with Client(main) as client:
                if _fast(trial):  # learned: no first sample within 0 s, so the top-up fires
                    client.controller.clock.observe_first(main.name, 0.0)
                try:
                    out.result = await client.run(
                        QUESTION,
                        strategy=_strategy(trial, chat),
                        budget=_budget(trial),
                        seed=trial.seed,
                        max_tokens=trial.max_tokens,
                    )
                except Exception as exc:  # ExceptionGroup included: judged below, never lost
                    out.error = exc
        out.hung = scope.cancelled_caught
    finally:
        if chat is not main:
            await chat.aclose()
    return out


# -- judging a trial ------------------------------------------------------------------------
def _pico(usd: float) -> int:
    return round(usd * 1e12)


def judge(out: Outcome, bill: TrialBill, tap: Tap) -> None:
    """Fill `out.broken` with the invariants the trial broke (name -> what happened)."""
    budget = _budget(out.trial)
    out.bill = bill
    rec = out.recorded
    if out.hung:
        out.broken["hung"] = f"no answer within {TRIAL_TIMEOUT}s"
    # 4. typed errors and receipts
    if out.error is not None and not isinstance(out.error, AdaptiveError):
        out.broken["untyped"] = f"{type(out.error).__name__}: {str(out.error)[:160]}"
    if out.error is not None and bill.tokens > 0 and rec is None:
        out.broken["no_receipt"] = (
            f"{type(out.error).__name__} after the server billed {bill.tokens} tokens, no receipt"
        )
    # 1. recorded spend within the budget
    if rec is not None:
        samples = sum(c.samples for c in rec.charges)
        over = []
        if budget.usd is not None and _pico(rec.cost_usd) > _pico(budget.usd):
            over.append(f"cost_usd {rec.cost_usd:.9f} > {budget.usd}")
        if budget.tokens is not None and rec.usage.total_tokens > budget.tokens:
            over.append(f"tokens {rec.usage.total_tokens} > {budget.tokens}")
        if budget.samples is not None and samples > budget.samples:
            over.append(f"samples {samples} > {budget.samples}")
        if budget.seconds is not None and rec.elapsed_s > budget.seconds + DEADLINE_SLACK:
            over.append(f"elapsed {rec.elapsed_s:.3f}s > {budget.seconds}s")
        negative = [c for c in rec.charges if c.usd < 0 or c.usage.total_tokens < 0]
        if negative:
            over.append(f"{len(negative)} negative charge(s), e.g. {negative[0].usage!r}")
        if over:
            out.broken["rec_over"] = "; ".join(over)
    # 2. the server's bill within the budget when it stayed within the reservation bound
    if bill.within_bound:
        over = []
        if budget.usd is not None and bill.pico > _pico(budget.usd):
            over.append(f"billed ${bill.pico / 1e12:.9f} > {budget.usd}")
        if budget.tokens is not None and bill.tokens > budget.tokens:
            over.append(f"billed {bill.tokens} tokens > {budget.tokens}")
        if budget.samples is not None and bill.samples > budget.samples:
            over.append(f"billed {bill.samples} samples > {budget.samples}")
        if over:
            recorded = f"recorded ${rec.cost_usd:.9f}/{rec.usage.total_tokens} tok" if rec else "no record"
            out.broken["bill_over"] = "; ".join(over) + f" ({recorded})"
    # 3. an overrun stops the call and says so. Judged on what the SDK had in hand, not on
    # time: an overrunning answer that a deadline (or another stop) cut before the SDK held
    # all of it was never reported to the SDK (it is cancelled and charged, invariants 1-2).
    # "After the overrun" is by the shared sequence (`faults.tap`): a request the SDK sent
    # after it held the first overrunning answer; the ones sent before were in flight.
    overruns = bill.overruns()
    held = [r for r in overruns if tap.read(r.trial, r.index).whole(r.size)]
    flagged = rec is not None and bool(rec.overruns or any(c.overrun for c in rec.charges))
    if overruns and (held or flagged):
        why = []
        reason = rec.stop_reason if rec is not None else None
        first = min(held or overruns, key=lambda r: r.index)
        if held and reason != "overrun":
            why.append(f"stop_reason={reason!r} though the SDK read the whole answer")
        elif not held and reason != "overrun":
            why.append(f"stop_reason={reason!r} though the SDK flagged an overrun")
        closes = [c for r in (held or overruns) if (c := tap.read(r.trial, r.index).closed) is not None]
        if closes:
            seen = min(closes)
            later = [r for r in bill.requests if r.sent > seen]
            if later:
                why.append(f"{len(later)} request(s) sent after the SDK held it (first: #{later[0].index})")
        if why:
            out.broken["no_overrun"] = f"request #{first.index} ({first.fault}) overran: " + ", ".join(why)
    untapped = [r.index for r in bill.requests if not r.sent]
    if untapped:  # the harness itself: every request must carry the tap's stamp
        out.broken["untyped"] = f"request(s) {untapped} reached the server without the tap's stamp"


# -- the suite ------------------------------------------------------------------------------
def _seeds() -> list[int]:
    if SEEDS:
        return [int(s) for s in SEEDS.split(",") if s.strip()]
    return list(range(FIRST_SEED, FIRST_SEED + TRIALS))


async def _settle_connections(servers: list[FaultServer], ids: set[str]) -> dict[str, int]:
    """Connections the servers still hold for `ids` once closes have had time to arrive."""
    deadline = anyio.current_time() + 1.0
    while True:
        held: dict[str, int] = collections.Counter(
            trial for s in servers for _, trial in s.open_connections() if trial in ids
        )
        if not held or anyio.current_time() > deadline:
            return held
        await anyio.sleep(0.02)


def _other_tasks() -> list[asyncio.Task[Any]]:
    me = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not me and not t.done()]


def _finalizer(task: asyncio.Task[Any]) -> bool:
    return type(task.get_coro()).__name__ == "async_generator_athrow"


async def _leftover_tasks() -> list[asyncio.Task[Any]]:
    """Tasks still alive once asyncio's async-generator finalizers have had time to finish.

    A stream closed mid-way leaves httpx's inner byte iterators (async generators) to the
    garbage collector; asyncio closes each collected one in a task of its own
    (`aclose()`, an `async_generator_athrow`), created whenever the collector runs and done a
    loop iteration or two later. Those are not tasks the SDK left running; any other task, or
    a finalizer still alive after 50 iterations, is a leak.
    """
    left = _other_tasks()
    for _ in range(50):
        if not left or not all(_finalizer(t) for t in left):
            break
        await anyio.lowlevel.checkpoint()
        left = _other_tasks()
    return left


async def run_suite(seeds: list[int], tap: Tap) -> tuple[list[Outcome], list[str], dict[str, int]]:
    outcomes: list[Outcome] = []
    task_leaks: list[str] = []
    with fault_servers(len(ENDPOINTS)) as servers:
        by_kind = dict(zip(ENDPOINTS, servers, strict=True))
        for start in range(0, len(seeds), BATCH):
            trials = [make_trial(seed) for seed in seeds[start : start + BATCH]]
            batch: list[Outcome] = []

            async def one(trial: Trial) -> None:
                batch.append(await run_trial(trial, by_kind[trial.endpoint]))  # noqa: B023

            async with anyio.create_task_group() as tg:
                for trial in trials:
                    tg.start_soon(one, trial)
            held = await _settle_connections(servers, {t.id for t in trials})
            for out in batch:
                judge(out, by_kind[out.trial.endpoint].bill(out.trial.id), tap)
                if held.get(out.trial.id):
                    out.broken["leaks"] = f"{held[out.trial.id]} connection(s) still open on the server"
            await anyio.lowlevel.checkpoint()
            leftover = await _leftover_tasks()
            if leftover:
                task_leaks.append(f"after seeds {trials[0].seed}..{trials[-1].seed}: {leftover[:3]!r}")
            outcomes.extend(batch)
            # The suite keeps every trial's result (traces, charges) to judge and report; a
            # full collection walks all of it, and under load that stops the loop for a second
            # or more mid-trial (a deadline "overrun" that is the harness's heap, not the SDK).
            # Between batches, what survived is collected once and frozen out of later passes.
            gc.collect()
            gc.freeze()
        gc.unfreeze()
        final = {s.url: len(s.open_connections()) for s in servers}
        handled = sum(s.requests_handled() for s in servers)
    final["requests"] = handled
    return outcomes, task_leaks, final


def table(outcomes: list[Outcome]) -> str:
    """Failures per fault family x endpoint."""
    cells: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for out in outcomes:
        for key in ((out.trial.family, out.trial.endpoint), ("all", "all")):
            cells[key]["trials"] += 1
            for name in out.broken:
                cells[key][name] += 1
            if isinstance(out.error, adaptive.ConfigError):
                cells[key]["config_err"] += 1
            cells[key]["warnings"] += len(out.warnings)
    rows = [(fam, ep) for fam in FAMILIES for ep in ENDPOINTS if (fam, ep) in cells] + [("all", "all")]
    width = 20
    lines = [f"{'family':<7} {'endpoint':<{width}}" + "".join(f"{c:>11}" for c in COLUMNS + INFO)]
    for fam, ep in rows:
        counts = cells[(fam, ep)]
        lines.append(f"{fam:<7} {ep:<{width}}" + "".join(f"{counts[c]:>11}" for c in COLUMNS + INFO))
    return "\n".join(lines)


def by_fault(outcomes: list[Outcome]) -> str:
    """Which faults the broken trials had: invariant -> the faults present, most common first."""
    seen: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for out in outcomes:
        faults = {r.fault for r in out.bill.requests}
        for name in out.broken:
            for fault in faults:
                seen[name][fault] += 1
    return "\n".join(
        f"  {name}: " + ", ".join(f"{f} {n}" for f, n in counts.most_common(8))
        for name, counts in seen.items()
    )


@pytest.fixture
def shared_ssl_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Every trial makes its own endpoint (own pool, closed by the SDK), and each pool loads the
    # CA bundle (~50 ms of CPU); the servers are plain http on 127.0.0.1, so one context serves all.
    context = httpx.create_ssl_context()
    monkeypatch.setattr(httpx, "create_ssl_context", lambda *a, **k: context)
    yield


@pytest.fixture
def tap(monkeypatch: pytest.MonkeyPatch) -> Tap:
    tapped = Tap()
    tapped.install(monkeypatch)
    return tapped


def _keep_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    out = _TRIAL.get()
    if out is None:  # not from a trial: nothing may warn silently
        raise AssertionError(f"{category.__name__} outside a trial: {message}")
    out.warnings.append(str(message))


def test_fault_injection(shared_ssl_context: None, tap: Tap) -> None:
    seeds = _seeds()
    t0 = time.perf_counter()
    # A fallback warning is information, not a failure: for this run only (one filter for the
    # whole event loop; `catch_warnings` is not task-safe), `AdaptiveWarning` is shown to
    # `_keep_warning`, which files it under the trial whose task raised it. Every other
    # warning is still an error (pytest's `filterwarnings = ["error"]`).
    with warnings.catch_warnings():
        warnings.simplefilter("always", adaptive.Final.Warning)
        warnings.showwarning = _keep_warning
        outcomes, task_leaks, final = anyio.run(run_suite, seeds, tap)
    elapsed = time.perf_counter() - t0
    failing = [o for o in outcomes if o.broken]
    report = [
        f"{len(outcomes)} fault trials in {elapsed:.1f}s ({final.pop('requests')} requests), "
        f"{len(failing)} broke an invariant",
        table(outcomes),
        "faults seen in the broken trials:",
        by_fault(outcomes),
    ]
    open_left = {url: n for url, n in final.items() if n}
    if open_left:
        report.append(f"connections still open on the servers after the suite: {open_left}")
    if task_leaks:
        report.append("tasks left alive: " + "; ".join(task_leaks[:3]))
    report.append("first failing trials (rerun with ADAPTIVE_FAULT_SEEDS=...):")
    for out in failing[:12]:
        report.append(f"  {out.trial.describe()}")
        for name, what in out.broken.items():
            report.append(f"      {name}: {what}")
    text = "\n".join(report)
    print(text)
    assert len(outcomes) == len(seeds)
    if failing or open_left or task_leaks:
        pytest.fail(text, pytrace=False)
