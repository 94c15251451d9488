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
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anyio
from pydantic import Field

from ._accuracy_gain import accuracy_gain_per_sample
from ._batching import Assessment, Batching, assess, hypothetical, next_batch, ordered, split_hypothetical
from ._budget import Budget
from ._budget_gain import budget_gain_per_sample
from ._dispatch import Dispatcher, Send
from ._events import Recorder, Subscriber, numbers
from ._exceptions import AdaptiveError, BudgetTooSmallError, ConfigError
from ._latency import FAST_WAIT_QUANTILE, RoundClock
from ._ledger import Charge, Ledger, ReservationBounds
from ._live import log_event, log_result
from ._models import ValidatedModel
from ._multiway import Posterior
from ._posterior import ConsistencyPrior
from ._prices import Price
from ._result import OverrunRecord, Result, StopReason, StopRecord
from ._sequential_gain import sequential_gain_per_sample
from ._state import State
from ._stop import AllOf, AnyOf, Check, LowMarginalGain, StopRule
from ._strategy import Call, Final, Outcome, Plan, Strategy, StrategyRun, Task
from ._tracing import start_call
from .ledger._accounts import Account, check_accounts

__all__ = ["Controller", "ControllerConfig", "uses_gain"]


#: What the marginal gain is measured against (`ControllerConfig.gain_target`).
GainTarget = Literal["unlimited", "budget", "sequential", "accuracy"]
GAIN_TARGETS: tuple[GainTarget, ...] = ("unlimited", "budget", "sequential", "accuracy")


class ControllerConfig(ValidatedModel):
    """How the controller sizes batches and spends.

    Args:
        first_batch: Samples in the first batch; None sizes it like every other batch (the
            fewest samples that could let the stop rules stop).
        max_batch: Largest batch of samples in one round. The default, 40, is
            `AdaptiveConsistency`'s `max_samples`: a call whose first batch split can draw
            in its second round all the rule expects to need (16 before: 7-9% of the demo
            mix's calls took 3-4 rounds against 4-6% now, at 8-13% fewer samples).
        max_samples: Cap on generated samples per call, whatever the rules say (None: none,
            the budget and the strategy decide): batches and a strategy's own generating
            calls (e.g. beam expansions) count against it. When it binds the call stops with
            reason "max_samples" and `Result.stop` names `ControllerConfig.max_samples`.
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
        gain_target: What the marginal gain is measured against. "budget" (the default): the
            majority once every sample the call may still draw is in (`State.draws_left`:
            the strategy's `max_samples`, this config's, the samples budget), what full
            self-consistency gives, over every continuation up to that bound
            (`gain_horizon` is not used); a call with no such bound uses "unlimited".
            "unlimited": the answer unlimited voting gives, over batches of up to
            `gain_horizon` (the default before; it stops near-even splits that AC's rule
            samples on to a right majority). See adaptive/_budget_gain.py for the figures.
            "accuracy": expected accuracy, reading an answer's vote share against the
            runner-up as its chance of being right, over continuations up to the call's bound
            (`gain_horizon` without one): a split that stays even is worth little, since
            both picks are about as good, so hard questions stop sooner; in accuracy units,
            so `value_usd` weighs like with like. Its gains are smaller: use it with a lower
            `min_gain` (0.0002 measured; at the strategy's default 0.001 it loses 1.6
            points against the budget target on the hardest last-letters questions). See
            adaptive/_accuracy_gain.py for the figures.
            "sequential": the budget's majority, as "budget", valued over every stopping rule
            that reads the votes as they come rather than over fixed-size continuations, so
            that `low_marginal_gain(min_gain=c)` stops where the Bayes-optimal rule at a cost
            of c per sample does. Its gains are several times the budget target's: use it
            with a higher `min_gain`. See adaptive/_sequential_gain.py for the figures.
        posterior: How the confidence and the marginal gain read the votes: "multiway" (the
            default: the leader against every rival, abstentions spending samples without a
            vote; see `adaptive._multiway`) or "two-answer" (the leader against the
            runner-up only, the default before).
    """

    first_batch: int | None = Field(default=None, ge=1)
    max_batch: int = Field(default=40, ge=1, le=128)
    max_samples: int | None = Field(default=None, ge=1)
    batch_as_n: bool = True
    early_cancel: bool = True
    shrink_max_tokens: bool = False
    min_max_tokens: int = Field(default=16, ge=1)
    gain_horizon: int = Field(default=8, ge=1, le=64)
    calibrate: bool = True
    posterior: Posterior = "multiway"
    gain_target: GainTarget = "budget"


def _less(left: int | None, k: int) -> int | None:
    """What is left of a bound after k more samples (None: no bound)."""
    return None if left is None else max(0, left - k)


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
        # Learned from overruns, per endpoint: later calls of this controller reserve enough.
        self.bounds = ReservationBounds()
        # Learned per endpoint from the rounds run: sizes batches to fit a `seconds` budget.
        self.clock = RoundClock()

    def assess(
        self, votes: Mapping[str, int], abstentions: int = 0, draws_left: int | None = None
    ) -> Assessment:
        """(confidence, marginal gain per sample) for votes ordered leader first.

        The gain is the best expected rise in confidence per extra sample over batches of up
        to `gain_horizon` (one extra vote alone often cannot change the leader), or, with
        `gain_target="budget"` (the default) and a bound on the samples still to come, the
        rise in P(our pick is the majority once they are in) over every continuation up to
        that bound; with `gain_target="accuracy"`, the rise in expected accuracy with vote
        shares read as calibrated (`adaptive._accuracy_gain`), over continuations up to that
        bound or, with none, up to `gain_horizon`. It is returned as a function: it costs more
        than the confidence and most rules never read it. `abstentions` (samples with no
        answer) are read by the "multiway" posterior only.

        Args:
            votes: Votes per answer, leader first.
            abstentions: Samples with no answer.
            draws_left: The most samples the call may still draw (`State.draws_left`);
                None: `ControllerConfig.max_samples` less the votes, if it is set.
        """
        conf, gain = assess(
            self.prior,
            votes,
            horizon=self.config.gain_horizon,
            abstentions=abstentions,
            posterior=self.config.posterior,
        )
        remaining = draws_left
        if remaining is None and self.config.max_samples is not None:
            # Votes still to come at most: abstained samples are not in `votes`, so after
            # abstentions this overstates what is left (the call still stops at max_samples).
            remaining = self.config.max_samples - sum(votes.values())
        target = self.config.gain_target
        if conf is None or target == "unlimited" or (remaining is None and target != "accuracy"):
            # No bound on the samples to come: there is no budget majority to aim at, so the
            # gain is the unlimited-vote one (`State.draws_left` None shows why).
            return conf, gain
        it = iter(votes.values())
        v1, v2 = next(it, 0), next(it, 0)
        prior = self.prior
        if target == "accuracy":
            # Without a bound, continuations of up to `gain_horizon` samples are weighed.
            ahead = self.config.gain_horizon if remaining is None else max(0, remaining)

            def accuracy_gain() -> float:
                return accuracy_gain_per_sample(prior, v1, v2, remaining=ahead)

            return conf, accuracy_gain
        assert remaining is not None
        remaining = max(0, remaining)

        per_sample = sequential_gain_per_sample if target == "sequential" else budget_gain_per_sample

        def budget_gain() -> float:
            return per_sample(prior, v1, v2, remaining=remaining)

        return conf, budget_gain

    def hypothetical(self, state: State, k: int) -> State:
        """The state if the next k samples all went to the leader."""
        # The extra samples all vote: the abstentions so far stay as they are.
        return hypothetical(
            state, k, lambda votes: self.assess(votes, state.abstentions, _less(state.draws_left, k))
        )

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

    def expected_batch(
        self, state: State, rule: StopRule | None, *, cap: int, min_batch: int = 1, first: bool = False
    ) -> int:
        """The fewest samples that could let `rule` stop were they to split like the votes so far.

        `cap` when no batch up to it could (a pure function of the state, like `next_batch`).
        """
        return next_batch(
            state,
            rule,
            lambda s, k: split_hypothetical(
                s, k, lambda votes: self.assess(votes, s.abstentions, _less(s.draws_left, k))
            ),
            cap=cap,
            min_batch=min_batch,
        )

    async def run(
        self,
        strategy: Strategy,
        task: Task,
        *,
        budget: Budget | None = None,
        stop: StopRule | None = None,
        price: Price | None = None,
        subscribers: Sequence[Subscriber] = (),
        accounts: Sequence[Account] = (),
    ) -> Result:
        """Run `strategy` on `task` until it finishes, a stop rule fires or the budget ends.

        `subscribers` receive every event of the call as it is emitted (sync callables that
        must not block; `Client.run(on_event=...)` queues events for the caller's callback).
        `accounts` are shared budgets every request of the call is also held against.
        """
        call = _CallRun(self, strategy, task, Ledger(budget, self.bounds), stop, price, subscribers)
        call.dispatch.accounts = check_accounts(accounts)
        spans = start_call(strategy.name, budget, task.endpoint.name, call.recorder)  # None: no tracing
        try:
            result = await call.run()
        except BaseException as exc:
            if spans is not None:
                spans.fail(exc, cancelled=isinstance(exc, anyio.get_cancelled_exc_class()))
            raise
        if spans is not None:
            spans.finish(result)
        log_result(result)
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
        subscribers: Sequence[Subscriber] = (),
    ) -> None:
        self.c = controller
        self.cfg = cfg = controller.config
        self.strategy = strategy
        self.task = task
        self.ledger = ledger
        self.rule = stop
        self.recorder = Recorder([log_event, *subscribers])
        self.dispatch = Dispatcher(
            task,
            ledger,
            self.recorder,
            price=price,
            as_n=cfg.batch_as_n and task.endpoint.supports_n,
            shrink=cfg.shrink_max_tokens,
            min_max_tokens=cfg.min_max_tokens,
        )
        self.dispatch.on_overrun = self.overran
        self.batching = Batching(
            cfg,
            controller.next_batch,
            ledger,
            supports_n=task.endpoint.supports_n,
            price=self.dispatch.price(task.endpoint),
            endpoint=task.endpoint.name,
            expected=controller.expected_batch,
            clock=controller.clock,
        )
        self.generated = 0
        self.stop_reason: StopReason = "strategy_done"
        self.stop_record: StopRecord | None = None
        self.stop_check: Check | None = None
        self.overruns: list[OverrunRecord] = []
        self.account_stopped = False  # a shared account refused a whole round (shared_account_stop)
        self.run_state: StrategyRun | None = None
        self.plan: Plan | None = None
        self.plan_generated = 0  # samples generated when the current plan was made
        # Sample requests of the current round: sent (with top-ups) and back, and the next
        # sample index to seed from (a top-up continues where the round's batch ended).
        self.round_out = 0
        self.round_back = 0
        self.first_back: float | None = None
        self.next_index = 0
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
        draws_left = self.draws_left()
        conf, gain = self.c.assess(votes, ev.abstentions, draws_left)
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
            draws_left=draws_left,
            next_batch=1,
            next_cost_usd=None,
            next_tokens=0,
            confidence=conf,
            marginal_gain=gain,
        )

    def draws_left(self) -> int | None:
        """The most samples the call may still draw (None: nothing bounds it).

        The least of what the current plan says its strategy may still ask for
        (`Plan.remaining`), what `ControllerConfig.max_samples` leaves and the samples budget.
        """
        bounds = [self.ledger.remaining_samples()]
        if self.cfg.max_samples is not None:
            bounds.append(max(0, self.cfg.max_samples - self.generated))
        plan = self.plan
        if plan is not None and plan.sample is not None and plan.remaining is not None:
            # The plan counted from when it was made; samples back since then are spent.
            bounds.append(max(0, plan.remaining - (self.generated - self.plan_generated)))
        known = [b for b in bounds if b is not None]
        return min(known) if known else None

    def numbers(self, state: State | None = None) -> dict[str, Any]:
        return numbers(state if state is not None else self.state(), reads_gain=self.reads_gain)

    def stop(self, record: StopRecord, state: State | None = None) -> None:
        """End the call for `record` (the strategy is done, nothing fits, the deadline, ...)."""
        self.stop_reason = record.reason
        self.stop_record = record
        self.recorder.emit("stop", reason=record.reason, rule=record.rule, **self.numbers(state))

    def rule_record(self, check: Check) -> StopRecord:
        """The stop record of a rule's verdict: the rule that fired, its figure and threshold."""
        assert self.rule is not None
        rule, leaf = self.rule.fired(check)
        reason = rule.reason_for(leaf)
        dimension = self.binding_dimension(since=len(self.dispatch.refusals)) if reason == "budget" else None
        return StopRecord(
            reason=reason, rule=leaf.rule, value=leaf.value, threshold=leaf.threshold, dimension=dimension
        )

    def binding_dimension(self, since: int = 0) -> Any:
        """The budget limit that refused the latest request ("usd", "tokens", "samples"), or None.

        A refusal recorded after the first `since` ones names it; else the plan's smallest
        sample request is checked against what is left.
        """
        if len(self.dispatch.refusals) > since:
            dim = self.dispatch.refusals[-1].error.dimension
            return dim if dim in ("usd", "tokens", "samples") else None
        probe = self.first_request()
        if probe is None:
            return None
        request, copies, endpoint, price = probe
        pico, tokens = self.ledger.worst_case(request, price, prompt_copies=copies, endpoint=endpoint)
        return self.ledger.over(pico, tokens, request.n)

    def first_request(self) -> tuple[Any, int, str, Price | None] | None:
        """The smallest sample request of the current plan: (request, copies, endpoint, price)."""
        plan = self.plan
        if plan is None or plan.sample is None:
            return None
        k = max(1, plan.min_batch)
        request, copies = self.batching.shape(plan.sample, k)
        ep = self.task.endpoint
        return request, copies, ep.name, self.dispatch.price(ep)

    def overran(self, charge: Charge, request_id: int) -> None:
        """A server reported more than was reserved: record it; the call stops at once."""
        o = charge.overrun
        assert o is not None
        record = OverrunRecord(
            endpoint=o.endpoint,
            reserved=o.reserved,
            reported=o.reported,
            reserved_usd=o.reserved_pico / 1e12,
            reported_usd=o.reported_pico / 1e12,
            reserved_samples=o.reserved_samples,
            reported_samples=o.reported_samples,
            round=self.round,
        )
        self.overruns.append(record)
        self.recorder.emit(
            "overrun",
            endpoint=o.endpoint,
            request_id=request_id,
            reserved_tokens=o.reserved.total_tokens,
            reported_tokens=o.reported.total_tokens,
            reserved_usd=record.reserved_usd,
            reported_usd=record.reported_usd,
            reserved_samples=o.reserved_samples,
            reported_samples=o.reported_samples,
        )
        if self.stop_reason != "overrun":
            self.stop_reason = "overrun"
            self.stop_record = StopRecord(
                reason="overrun",
                rule=o.endpoint,
                value=float(o.reported.total_tokens),
                threshold=float(o.reserved.total_tokens),
                detail=(
                    f"{o.endpoint!r} reported {o.reported.prompt_tokens} prompt + "
                    f"{o.reported.completion_tokens} completion tokens and {o.reported_samples} "
                    f"sample(s) for a request reserved at {o.reserved.prompt_tokens} + "
                    f"{o.reserved.completion_tokens} tokens and {o.reserved_samples} sample(s); "
                    "booked at most the reservation, nothing more sent"
                ),
            )

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> Result:
        self.ledger.check_price(self.batching.price, self.task.endpoint.name)
        self.run_state = run = self.strategy.start(self.task)
        if not isinstance(run, StrategyRun):  # before anything is spent
            raise ConfigError(
                f"{self.strategy.name}: start(task) must return a StrategyRun "
                f"(plan, observe, evidence, finish, answer_of); got {type(run).__name__}"
            )
        self.dispatch.answer_of = run.answer_of  # the answers of "done" events
        seconds = self.ledger.budget.seconds
        try:
            with anyio.move_on_after(seconds if seconds is not None else math.inf) as deadline:
                await self.loop(run)
            if deadline.cancelled_caught and self.stop_reason != "overrun":
                elapsed = self.recorder.now()
                self.stop(
                    StopRecord(
                        reason="deadline",
                        rule="Budget.seconds",
                        value=elapsed,
                        threshold=seconds,
                        dimension="seconds",
                    )
                )
            # Inside the try: a strategy's finish may raise what its last round left (e.g. a
            # search whose every PRM call failed), and that error carries the receipt too.
            final = run.finish(self.state())
        except BudgetTooSmallError:
            raise  # nothing was sent: there is no receipt to attach
        except AdaptiveError as exc:
            raise exc.with_receipt(self.error_result(exc)) from None
        if self.stop_record is None:  # pragma: no cover - every way out of the loop records one
            self.stop_record = StopRecord(reason=self.stop_reason)
        return self.result(final, self.stop_reason)

    def error_result(self, exc: BaseException) -> Result:
        """The partial result attached to an error as its receipt.

        An overrun already seen stays the stop reason: it is what the caller must act on (the
        error came with it, e.g. from the same fanned-out request).
        """
        if self.stop_reason != "overrun":
            self.stop_reason = "error"
            self.stop_record = StopRecord(reason="error", rule=type(exc).__name__, detail=str(exc)[:300])
        return self.result(Final(answer=None), self.stop_reason)

    async def loop(self, run: StrategyRun) -> None:
        """State, plan, batch size, stop rules, reserve, dispatch: until something says stop."""
        cap = self.cfg.max_samples
        while True:
            state = self.state()
            self.plan = plan = run.plan(state)
            self.plan_generated = self.generated
            if plan is not None and state.draws_left != self.draws_left():
                state = self.state()  # the new plan bounds the samples to come: the gain reads it
            if plan is None:
                self.stop(StopRecord(reason="strategy_done", rule=self.strategy.name))
                return
            if plan.sample is not None and cap is not None and self.generated >= cap:
                self.stop(self.max_samples_record())
                return
            k, state = self.size(plan, state)
            if self.rules_stop(plan, state):
                return
            refused = len(self.dispatch.refusals)
            sends, capped = self.reserve(plan, k)
            if not sends:
                if capped:
                    self.stop(self.max_samples_record())
                    return
                if len(self.dispatch.refusals) == refused:
                    self.refuse_smallest()  # the batching found no size that fits: say which limit
                fresh = len(self.dispatch.refusals) > refused
                if self.round == 0 and not self.recorder.outcomes and (fresh or plan.sample is not None):
                    raise self.too_small()
                self.stop(self.budget_record(self.binding_dimension(since=refused)))
                return
            await self.send(plan, state, sends)
            if self.account_stopped:
                return
            if self.stop_reason == "overrun":
                self.recorder.emit(
                    "stop",
                    reason="overrun",
                    rule=self.stop_record.rule if self.stop_record else "",
                    **self.numbers(),
                )
                return
            if self.stop_check is not None:  # the rules said stop part-way through the round
                record = self.rule_record(self.stop_check)
                self.stop_reason, self.stop_record = record.reason, record
                return

    def refuse_smallest(self) -> None:
        """Try to reserve the plan's smallest sample request, so its refusal is recorded."""
        probe = self.first_request()
        if probe is None:
            return
        request = probe[0]
        if self.batching.as_n or request.n == 1:
            send = self.dispatch.reserve(Call(request))
        else:
            send = self.dispatch.reserve(Call(request.model_copy(update={"n": 1})))
        if send is not None:  # it fits after all (a minimum batch did not): hold nothing
            self.ledger.release(send[1])

    def max_samples_record(self) -> StopRecord:
        return StopRecord(
            reason="max_samples",
            rule="ControllerConfig.max_samples",
            value=float(self.generated),
            threshold=float(self.cfg.max_samples) if self.cfg.max_samples is not None else None,
            dimension="samples",
        )

    def budget_record(self, dimension: Any) -> StopRecord:
        """The stop record when nothing more fits: the limit that bound, spent vs the limit."""
        b = self.ledger.budget
        value: float | None = None
        threshold: float | None = None
        if dimension == "usd":
            value, threshold = self.ledger.spent_usd, b.usd
        elif dimension == "tokens":
            value, threshold = float(self.ledger.spent_tokens), float(b.tokens) if b.tokens else None
        elif dimension == "samples":
            value, threshold = float(self.ledger.spent_samples), float(b.samples) if b.samples else None
        rule = f"Budget.{dimension}" if dimension else "Budget"
        return StopRecord(reason="budget", rule=rule, value=value, threshold=threshold, dimension=dimension)

    def too_small(self) -> BudgetTooSmallError:
        """The error for a budget that cannot fit the call's first request (nothing was sent)."""
        if self.dispatch.refusals:
            ref = self.dispatch.refusals[0]
            request, copies, endpoint = ref.request, ref.prompt_copies, ref.endpoint
            ep = self.task.endpoint if endpoint == self.task.endpoint.name else None
            price = self.dispatch.price(ep) if ep is not None else None
            if ep is None:
                # A call to another endpoint (a verifier): the refusal message says enough.
                for call in self.plan.calls if self.plan is not None else ():
                    if call.endpoint is not None and call.endpoint.name == endpoint:
                        price = call.endpoint.price
        else:
            probe = self.first_request()
            assert probe is not None, "no request was refused and the plan has no sample"
            request, copies, endpoint, price = probe
        pico, tokens = Ledger(bounds=self.ledger.bounds).worst_case(
            request, price, prompt_copies=copies, endpoint=endpoint
        )
        dimension = self.ledger.over(pico, tokens, request.n) or "usd"
        b = self.ledger.budget
        fit = self.ledger.max_tokens_that_fit(request, price, copies, endpoint)
        if dimension == "usd":
            smallest: float = math.ceil(pico / 1e6) / 1e6  # rounded up to a micro-dollar
            have, need = f"Budget(usd={b.usd})", f"Budget(usd={smallest:.6f})"
            worst = f"${pico / 1e12:.6f}"
        elif dimension == "tokens":
            smallest = float(tokens)
            have, need, worst = f"Budget(tokens={b.tokens})", f"Budget(tokens={tokens})", f"{tokens} tokens"
        else:
            smallest = float(request.n)
            have, need, worst = (
                f"Budget(samples={b.samples})",
                f"Budget(samples={request.n})",
                f"{request.n} samples",
            )
            fit = request.max_tokens if request.n <= (b.samples or 0) else 0
        prompt = self.ledger.prompt_tokens(request, endpoint) * copies
        hint = (
            f"max_tokens={fit} fits this budget"
            if fit >= 1
            else "no max_tokens fits this budget (the prompt alone does not)"
        )
        return BudgetTooSmallError(
            f"{have} cannot fit even the first request to {endpoint!r}: its worst case is {worst} "
            f"(prompt bound {prompt} tokens + n={request.n} x max_tokens={request.max_tokens}); "
            f"the smallest budget that fits it is {need}; {hint} "
            f"(or pass ControllerConfig(shrink_max_tokens=True) to lower max_tokens automatically)",
            dimension=dimension,
            smallest=smallest,
            max_tokens=fit,
        )

    # -- the steps of a round ------------------------------------------------------------
    def size(self, plan: Plan, state: State) -> tuple[int, State]:
        """The samples to ask for under `plan`, and the state with their worst case filled in."""
        if plan.sample is None:
            return 0, state
        first = self.round == 0
        tokens = self.sample_tokens()
        # The rules size the batch knowing what one more sample is expected to cost, so a
        # value rule (low_marginal_gain(value_usd=...)) asks for fewer of dear samples.
        one = self.batching.with_next(state, plan.sample, 1, tokens)
        k = self.batching.size(plan, one, self.rule, generated=self.generated, first=first)
        return k, self.batching.with_next(state, plan.sample, k, tokens)

    def sample_tokens(self) -> float | None:
        """Mean completion tokens per sample in this call so far (None before any reported one)."""
        tokens = samples = 0
        for o in self.recorder.outcomes:
            c = o.charge
            if o.call.purpose == "generate" and c.status == "ok" and not c.estimated and c.samples:
                tokens += c.usage.completion_tokens
                samples += c.samples
        return tokens / samples if samples else None

    def rules_stop(self, plan: Plan, state: State) -> bool:
        """Whether the stop rules end the call before this plan (never before the first round)."""
        if not plan.stoppable or self.rule is None or self.round == 0:
            return False
        check = self.rule.check(state)
        if not check.stop:
            return False
        record = self.rule_record(check)
        self.stop_reason, self.stop_record = record.reason, record
        self.recorder.emit(
            "decide", action="stop", reason=record.reason, rule=record.rule, **self.numbers(state)
        )
        return True

    def reserve(self, plan: Plan, k: int) -> tuple[list[Send], bool]:
        """Reserve the plan's batch of k samples and its calls: (what to send, capped by max_samples)."""
        sends: list[Send] = []
        if plan.sample is not None and k > 0:
            singles = self.batching.singles(plan, first=self.round == 0)  # each acted on as it arrives
            sends.extend(self.dispatch.reserve_samples(plan, k, first_index=self.generated, singles=singles))
        self.round_out = sum(c.request.n for c, _ in sends if c.purpose == "generate")
        self.round_back = 0
        self.next_index = self.generated + self.round_out
        more, capped = self.reserve_calls(plan, sends)
        return sends + more, capped

    def reserve_calls(self, plan: Plan, batch: Sequence[Send] = ()) -> tuple[list[Send], bool]:
        """Reserve the plan's exact calls, after its batch: (what to send, capped by max_samples)."""
        sends: list[Send] = []
        # Generating calls of the strategy's own count against max_samples like batches do.
        cap = self.cfg.max_samples
        room = (cap if cap is not None else math.inf) - self.generated - sum(r.request.n for _, r in batch)
        capped = False
        for call in plan.calls:
            if call.purpose == "generate":
                if call.request.n > room:
                    capped = True
                    self.recorder.emit(
                        "refuse",
                        endpoint=self.dispatch.endpoint(call).name,
                        purpose=call.purpose,
                        request_id=self.recorder.request_id(),
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
        shared = len(self.dispatch.shared_refusals)
        started = self.recorder.now()
        timed = (
            early
            and plan.latency == "fast"
            and plan.sample is not None
            and self.round == 0
            and self.batching.singles(plan, first=True)
        )
        wait = self.c.clock.first_wait(self.task.endpoint.name, FAST_WAIT_QUANTILE) if timed else None
        self.first_back = None
        await self.dispatch.run_round(
            sends,
            self.observe,
            self.stop_now if early else None,
            self.follow,
            (wait, self.timed_top_up) if wait is not None else None,
        )
        if plan.sample is not None:
            self.c.clock.observe(self.task.endpoint.name, self.recorder.now() - started)
        if timed and self.first_back is not None:
            self.c.clock.observe_first(self.task.endpoint.name, self.first_back - started)
        self.recorder.round += 1
        if len(self.dispatch.shared_refusals) > shared and len(self.recorder.outcomes) == before:
            self.shared_account_stop()
            return
        self.raise_if_all_failed(self.recorder.outcomes[before:])

    def shared_account_stop(self) -> None:
        """A round whose every call a shared account refused: the call ends there.

        Before anything was sent that is the account's `BudgetExceededError` (it names the
        account); after, the call stops with reason "budget" and the account's limit as the rule.
        """
        exc = self.dispatch.shared_refusals[-1]
        if not self.recorder.outcomes:
            raise exc
        dim = exc.dimension if exc.dimension in ("usd", "tokens", "samples") else None
        record = StopRecord(
            reason="budget", rule=f"Account({exc.account!r}).{exc.dimension}", dimension=dim, detail=str(exc)
        )
        self.account_stopped = True
        self.stop(record)

    def observe(self, outcome: Outcome) -> None:
        """Count what a call generated and hand its outcome to the strategy."""
        if outcome.response is not None and outcome.call.purpose == "generate":
            self.generated += len(outcome.response.completions)
            if self.first_back is None:
                self.first_back = self.recorder.now()
        assert self.run_state is not None
        self.run_state.observe(outcome)

    def follow(self, outcome: Outcome) -> list[Send]:
        """Reserve the strategy's follow-ups of `outcome`, sent in the same round.

        Generating follow-ups count against `max_samples` like a plan's calls; what does not
        fit is refused (a "refuse" event) and never sent, as in `reserve`.
        """
        sends = self.top_up(outcome)
        follow_up = getattr(self.run_state, "follow_up", None)
        calls = tuple(follow_up(outcome)) if follow_up is not None else ()
        if calls:
            sends += self.reserve_calls(Plan(calls=calls))[0]
        return sends

    def top_up(self, outcome: Outcome) -> list[Send]:
        """More samples at once, while the round runs, when those in flight cannot be enough.

        Only for a stoppable plan whose batch went out as single requests with a latency
        setting ("fast"): when the samples still in flight
        could not let the rules stop were they to split like the votes so far, the samples
        that could are sent now rather than in a round after the stragglers. A top-up is at
        most `max_batch` samples (more may then be in flight), the plan's
        `max_batch` and `max_samples` bound the round, and only what the budget holds is sent
        (nothing is refused for it).
        """
        plan = self.plan
        if outcome.call.purpose != "generate":
            return []
        self.round_back += outcome.call.request.n
        if (
            plan is None
            or plan.sample is None
            or plan.latency != "fast"
            or self.rule is None
            or self.stop_check is not None
            or not self.batching.singles(plan, first=self.round == 0)
        ):
            return []
        inflight = self.round_out - self.round_back
        room = self.top_up_room(plan, inflight)
        if room < 1:
            return []
        tokens = self.sample_tokens()
        state = self.batching.with_next(self.state(), plan.sample, 1, tokens)
        # Sized for the expected case (new votes split like those so far): a top-up sized for
        # the best case would be followed by another, each a whole sample's time later.
        need = self.c.expected_batch(state, self.rule, cap=inflight + room)
        return self.send_top_up(
            plan, min(room, need - inflight), f"the {inflight} in flight could not let the rules stop", state
        )

    def timed_top_up(self) -> list[Send]:
        """A "fast" first round's top-up to the cap when no sample is back in the usual time.

        The dispatcher asks this once, `FAST_WAIT_QUANTILE` of the way through this
        endpoint's recent waits for a "fast" round's first sample (`RoundClock.first_wait`),
        if every sample is still out. Slow samples mean long ones, and long ones mean a hard
        question, whose votes tend to split: waiting for them to come back split and only
        then topping up puts a second sample's time on the calls that set the p95. The rules
        still cancel what is not needed as soon as they can stop.
        """
        plan = self.plan
        if plan is None or plan.sample is None or self.round_back > 0 or self.stop_check is not None:
            return []
        room = self.top_up_room(plan, self.round_out - self.round_back)
        if room < 1:
            return []
        return self.send_top_up(plan, room, "no sample back yet", self.state())

    def top_up_room(self, plan: Plan, inflight: int) -> int:
        """How many more samples a top-up may send in this round (0 when none).

        More than `max_batch` may be in flight: each top-up is at most that many. The plan's
        `max_batch` and `max_samples` bound the round.
        """
        room = min(
            self.cfg.max_batch,
            (plan.max_batch if plan.max_batch is not None else math.inf) - self.round_out,
            (self.cfg.max_samples if self.cfg.max_samples is not None else math.inf)
            - self.generated
            - inflight,
        )
        return max(0, int(room))

    def send_top_up(self, plan: Plan, size: int, why: str, state: State) -> list[Send]:
        """Reserve and return up to `size` single-sample calls (what the budget holds), traced."""
        k = self.batching.affordable(plan, size, singles=True) if size >= 1 else 0
        if k < 1:
            return []
        sends = self.dispatch.reserve_samples(
            dataclasses.replace(plan, min_batch=1), k, first_index=self.next_index, singles=True
        )
        if sends:
            self.round_out += len(sends)
            self.next_index += len(sends)
            self.recorder.emit(
                "decide",
                action="continue",
                during="round",
                calls=len(sends),
                reserved_usd=round(sum(r.pico for _, r in sends) / 1e12, 9),
                note=f"top up {len(sends)}: {why}",
                **self.numbers(state),
            )
        return sends

    def stop_now(self) -> bool:
        """Whether the rules say stop part-way through a round (the rest is then cancelled)."""
        assert self.rule is not None
        now = self.state()
        check = self.rule.check(now)
        if not check.stop:
            return False
        self.stop_check = check
        record = self.rule_record(check)
        self.recorder.emit(
            "decide",
            action="stop",
            during="round",
            reason=record.reason,
            rule=record.rule,
            **self.numbers(now),
        )
        return True

    def raise_if_all_failed(self, outcomes: list[Outcome]) -> None:
        """A round whose every call failed ends the call with the first error (receipt attached)."""
        if not outcomes or any(o.error is None for o in outcomes):
            return
        first = outcomes[0].error
        assert first is not None
        receipt = self.error_result(first)
        if isinstance(first, AdaptiveError):
            raise first.with_receipt(receipt)
        # A failing user callable (a function endpoint) keeps its type: it is the user's own.
        with contextlib.suppress(AttributeError):  # exotic exception types
            first.receipt = receipt  # type: ignore[attr-defined]
        raise first

    # -- the receipt ---------------------------------------------------------------------
    def result(self, final: Final, stop_reason: StopReason) -> Result:
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
            stop=self.stop_record,
            samples=self.recorder.samples(self.run_state),
            votes=dict(state.votes),
            usage=self.ledger.usage,
            cost_usd=self.ledger.spent_usd,
            elapsed_s=self.recorder.now(),
            rounds=self.round,
            charges=self.recorder.charges(),
            overruns=list(self.overruns),
            warnings=(*final.warnings, *dict.fromkeys(self.dispatch.shared_warnings)),
            trace=self.recorder.trace(),
            details=dict(final.details),
        )
