"""The controller: decides whether more compute pays, and runs what the strategy asks for.

For every round it (1) builds the `State` (votes, confidence, marginal gain, spend, what is
left), (2) asks the strategy for a plan and the stop rules whether to go on, (3) sizes the next
batch (`_batching`), (4) reserves and sends the requests (`_dispatch`), handing each outcome
to the strategy as it arrives and, when the rules say stop part-way, cancelling what is still
in flight (and still charging it), and (5) records every decision with the numbers behind it
(`_events`: the trace, the charges and the samples of the receipt all come from there).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import anyio
from pydantic import Field

from ._batching import Assessment, Batching, assess, hypothetical, next_batch, ordered
from ._budget import Budget
from ._dispatch import Dispatcher, Send
from ._events import Recorder, numbers
from ._exceptions import AdaptiveError, ConfigError
from ._ledger import Ledger
from ._models import ValidatedModel
from ._posterior import ConsistencyPrior
from ._prices import Price
from ._result import Result
from ._state import State
from ._stop import AllOf, AnyOf, Check, LowMarginalGain, StopRule
from ._strategy import Final, Outcome, Plan, Strategy, StrategyRun, Task

__all__ = ["Controller", "ControllerConfig", "uses_gain"]


class ControllerConfig(ValidatedModel):
    """How the controller sizes batches and spends.

    Args:
        first_batch: Samples in the first batch; None sizes it like every other batch (the
            fewest samples that could let the stop rules stop).
        max_batch: Largest batch of samples in one round.
        max_samples: Hard cap on generated samples per call, whatever the rules say: batches
            and a strategy's own generating calls (e.g. beam expansions) count against it.
        batch_as_n: Send a batch as one request with `n` (prompt billed once) where the
            endpoint supports it; False sends parallel single requests, which lets a stop
            part-way through a batch cancel the rest.
        early_cancel: Consult the stop rules as each response arrives and cancel the rest of
            the round when they say stop.
        shrink_max_tokens: Lower a request's `max_tokens` to fit the budget instead of
            refusing it.
        min_max_tokens: With `shrink_max_tokens`, the smallest `max_tokens` worth sending.
        gain_horizon: Batches up to this size are considered for the marginal gain.
        calibrate: Learn the consistency prior from this client's finished calls (pass a
            prior fitted on your own logs to the client to start from it).
    """

    first_batch: int | None = Field(default=None, ge=1)
    max_batch: int = Field(default=16, ge=1, le=128)
    max_samples: int = Field(default=64, ge=1)
    batch_as_n: bool = True
    early_cancel: bool = True
    shrink_max_tokens: bool = False
    min_max_tokens: int = Field(default=16, ge=1)
    gain_horizon: int = Field(default=8, ge=1, le=64)
    calibrate: bool = True


def uses_gain(rule: StopRule) -> bool:
    """Whether a rule reads `State.marginal_gain` (it is only computed when one does)."""
    if isinstance(rule, AnyOf | AllOf):
        return any(uses_gain(r) for r in rule.rules)
    return isinstance(rule, LowMarginalGain)


class Controller:
    """Runs strategies under a budget and decides when to stop.

    Args:
        config: Batch sizing and spending behaviour.
        prior: The consistency prior behind `State.confidence`; uniform (AC's Beta rule)
            when None.
    """

    def __init__(self, config: ControllerConfig | None = None, prior: ConsistencyPrior | None = None) -> None:
        self.config = config or ControllerConfig()
        self.prior = prior or ConsistencyPrior()

    def assess(self, votes: Mapping[str, int]) -> Assessment:
        """(confidence, marginal gain per sample) for votes ordered leader first.

        The gain is the best expected rise in confidence per extra sample over batches of up
        to `gain_horizon` (one extra vote alone often cannot change the leader). It is
        returned as a function: it costs more than the confidence and most rules never read
        it.
        """
        return assess(self.prior, votes, horizon=self.config.gain_horizon)

    def hypothetical(self, state: State, k: int) -> State:
        """The state if the next k samples all went to the leader."""
        return hypothetical(state, k, self.assess)

    def next_batch(
        self, state: State, rule: StopRule | None, *, cap: int, min_batch: int = 1, first: bool = False
    ) -> int:
        """How many samples to ask for next: a pure function of the state.

        The fewest samples that could let `rule` stop (if they all agreed with the leader);
        when no batch up to `cap` could, `cap` (larger while far from stopping).
        """
        first_batch = self.config.first_batch if first else None
        return next_batch(
            state, rule, self.hypothetical, cap=cap, min_batch=min_batch, first_batch=first_batch
        )

    async def run(
        self,
        strategy: Strategy,
        task: Task,
        *,
        budget: Budget | None = None,
        stop: StopRule | None = None,
        price: Price | None = None,
    ) -> Result:
        """Run `strategy` on `task` until it finishes, a stop rule fires or the budget ends."""
        call = _CallRun(self, strategy, task, Ledger(budget), stop, price)
        result = await call.run()
        if self.config.calibrate and result.votes:
            v = list(result.votes.values())
            self.prior.observe(v[0], v[1] if len(v) > 1 else 0)
            self.prior.refit(iterations=10)
        return result


class _CallRun:
    """One controller run (one `client.run`): the loop, composed of its parts.

    The recorder keeps the trace and the outcomes, `Batching` sizes batches, the dispatcher
    reserves and sends; this class holds the call's counters and makes the decisions.
    """

    def __init__(
        self,
        controller: Controller,
        strategy: Strategy,
        task: Task,
        ledger: Ledger,
        stop: StopRule | None,
        price: Price | None,
    ) -> None:
        self.c = controller
        self.cfg = cfg = controller.config
        self.strategy = strategy
        self.task = task
        self.ledger = ledger
        self.rule = stop
        self.recorder = Recorder()
        self.dispatch = Dispatcher(
            task,
            ledger,
            self.recorder,
            price=price,
            as_n=cfg.batch_as_n and task.endpoint.supports_n,
            shrink=cfg.shrink_max_tokens,
            min_max_tokens=cfg.min_max_tokens,
        )
        self.batching = Batching(
            cfg,
            controller.next_batch,
            ledger,
            supports_n=task.endpoint.supports_n,
            price=self.dispatch.price(task.endpoint),
        )
        self.generated = 0
        self.stop_reason = ""
        self.stop_check: Check | None = None
        self.run_state: StrategyRun | None = None
        # The gain is worth computing for the trace only when a rule reads it.
        self.reads_gain = stop is not None and uses_gain(stop)

    @property
    def round(self) -> int:
        """Rounds run so far (the recorder stamps it on every event)."""
        return self.recorder.round

    # -- what the decisions read -------------------------------------------------------
    def state(self) -> State:
        """The call's state now, for the stop rules and the strategy."""
        assert self.run_state is not None
        ev = self.run_state.evidence()
        votes = ordered(ev.votes)
        conf, gain = self.c.assess(votes)
        budget = self.ledger.budget
        elapsed = self.recorder.now()
        return State(
            round=self.round,
            samples=ev.samples or self.generated,
            votes=votes,
            abstentions=ev.abstentions,
            history=ev.history,
            weights=dict(ev.weights),
            scores=ev.scores,
            best_score=max(ev.scores) if ev.scores else None,
            spent_usd=self.ledger.spent_usd,
            spent_tokens=self.ledger.spent_tokens,
            elapsed=elapsed,
            remaining_usd=self.ledger.remaining_usd(),
            remaining_tokens=self.ledger.remaining_tokens(),
            remaining_samples=self.ledger.remaining_samples(),
            remaining_seconds=None if budget.seconds is None else max(0.0, budget.seconds - elapsed),
            next_batch=1,
            next_cost_usd=None,
            next_tokens=0,
            confidence=conf,
            marginal_gain=gain,
        )

    def numbers(self, state: State | None = None) -> dict[str, Any]:
        return numbers(state if state is not None else self.state(), reads_gain=self.reads_gain)

    def stop(self, reason: str, state: State | None = None) -> None:
        """End the call for `reason` (the strategy is done, nothing fits, the deadline)."""
        self.stop_reason = reason
        self.recorder.emit("stop", reason=reason, **self.numbers(state))

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> Result:
        self.ledger.check_price(self.batching.price, self.task.endpoint.name)
        self.run_state = run = self.strategy.start(self.task)
        if not isinstance(run, StrategyRun):  # before anything is spent
            raise ConfigError(
                f"{self.strategy.name}: start(task) must return a StrategyRun "
                f"(plan, observe, evidence, finish, answer_of); got {type(run).__name__}"
            )
        seconds = self.ledger.budget.seconds
        try:
            with anyio.move_on_after(seconds if seconds is not None else math.inf) as deadline:
                await self.loop(run)
            if deadline.cancelled_caught:
                self.stop("deadline")
        except AdaptiveError as exc:
            raise exc.with_receipt(self.result(Final(answer=None), "error")) from None
        final = run.finish(self.state())
        return self.result(final, self.stop_reason)

    async def loop(self, run: StrategyRun) -> None:
        """State, plan, batch size, stop rules, reserve, dispatch: until something says stop."""
        while True:
            state = self.state()
            plan = run.plan(state)
            if plan is None:
                self.stop("strategy_done")
                return
            k, state = self.size(plan, state)
            if self.rules_stop(plan, state):
                return
            sends, capped = self.reserve(plan, k)
            if not sends:
                capped = capped or (plan.sample is not None and self.generated >= self.cfg.max_samples)
                self.stop("max_samples" if capped else "budget")
                return
            await self.send(plan, state, sends)
            if self.stop_check is not None:  # the rules said stop part-way through the round
                self.stop_reason = self.stop_check.reason()
                return

    # -- the steps of a round ------------------------------------------------------------
    def size(self, plan: Plan, state: State) -> tuple[int, State]:
        """The samples to ask for under `plan`, and the state with their worst case filled in."""
        if plan.sample is None:
            return 0, state
        first = self.round == 0
        k = self.batching.size(plan, state, self.rule, generated=self.generated, first=first)
        return k, self.batching.with_next(state, plan.sample, k)

    def rules_stop(self, plan: Plan, state: State) -> bool:
        """Whether the stop rules end the call before this plan (never before the first round)."""
        if not plan.stoppable or self.rule is None or self.round == 0:
            return False
        check = self.rule.check(state)
        if not check.stop:
            return False
        self.stop_reason = check.reason()
        self.recorder.emit("decide", action="stop", reason=self.stop_reason, **self.numbers(state))
        return True

    def reserve(self, plan: Plan, k: int) -> tuple[list[Send], bool]:
        """Reserve the plan's batch of k samples and its calls: (what to send, capped by max_samples)."""
        sends: list[Send] = []
        if plan.sample is not None and k > 0:
            sends.extend(self.dispatch.reserve_samples(plan, k, first_index=self.generated))
        # Generating calls of the strategy's own count against max_samples like batches do.
        room = self.cfg.max_samples - self.generated - sum(r.request.n for _, r in sends)
        capped = False
        for call in plan.calls:
            if call.purpose == "generate":
                if call.request.n > room:
                    capped = True
                    self.recorder.emit(
                        "refuse",
                        endpoint=self.dispatch.endpoint(call).name,
                        purpose=call.purpose,
                        limit="max_samples",
                        why=f"max_samples={self.cfg.max_samples} reached",
                    )
                    continue
                room -= call.request.n
            send = self.dispatch.reserve(call)
            if send is not None:
                sends.append(send)
        return sends, capped

    async def send(self, plan: Plan, state: State, sends: list[Send]) -> None:
        """Record the decision to go on, then run the round (cancelled part-way if the rules say so)."""
        self.recorder.emit(
            "decide",
            action="continue",
            calls=len(sends),
            reserved_usd=round(sum(r.pico for _, r in sends) / 1e12, 9),
            note=plan.note,
            **self.numbers(state),
        )
        before = len(self.recorder.outcomes)
        early = plan.stoppable and self.cfg.early_cancel and self.rule is not None
        await self.dispatch.run_round(sends, self.observe, self.stop_now if early else None)
        self.recorder.round += 1
        self.raise_if_all_failed(self.recorder.outcomes[before:])

    def observe(self, outcome: Outcome) -> None:
        """Count what a call generated and hand its outcome to the strategy."""
        if outcome.response is not None and outcome.call.purpose == "generate":
            self.generated += len(outcome.response.completions)
        assert self.run_state is not None
        self.run_state.observe(outcome)

    def stop_now(self) -> bool:
        """Whether the rules say stop part-way through a round (the rest is then cancelled)."""
        assert self.rule is not None
        now = self.state()
        check = self.rule.check(now)
        if not check.stop:
            return False
        self.stop_check = check
        self.recorder.emit(
            "decide", action="stop", during="round", reason=check.reason(), **self.numbers(now)
        )
        return True

    def raise_if_all_failed(self, outcomes: list[Outcome]) -> None:
        """A round whose every call failed ends the call with the first error (receipt attached)."""
        if not outcomes or any(o.error is None for o in outcomes):
            return
        first = outcomes[0].error
        assert first is not None
        self.stop_reason = "error"
        receipt = self.result(Final(answer=None), "error")
        if isinstance(first, AdaptiveError):
            raise first.with_receipt(receipt)
        with contextlib.suppress(AttributeError):  # exotic exception types
            first.receipt = receipt  # type: ignore[attr-defined]
        raise first

    # -- the receipt ---------------------------------------------------------------------
    def result(self, final: Final, stop_reason: str) -> Result:
        assert self.run_state is not None
        state = self.state()
        confidence = final.confidence
        if confidence is None and final.answer == state.leader:
            # The vote confidence is about the count leader; a weighted vote may pick another.
            confidence = state.confidence
        return Result(
            answer=final.answer,
            text=final.text,
            confidence=confidence,
            strategy=self.strategy.name,
            stop_reason=stop_reason,
            samples=self.recorder.samples(self.run_state),
            votes=dict(state.votes),
            usage=self.ledger.usage,
            cost_usd=self.ledger.spent_usd,
            elapsed_s=self.recorder.now(),
            rounds=self.round,
            charges=self.recorder.charges(),
            trace=self.recorder.trace(),
            details=dict(final.details),
        )
