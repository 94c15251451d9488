"""The controller: decides whether more compute pays, and runs what the strategy asks for.

For every round it (1) builds the `State` (votes, confidence, marginal gain, spend, what is
left), (2) asks the stop rules, (3) sizes the next batch: the fewest samples that could let the
rules stop, larger while that is far off, capped by the plan, the budget and concurrency,
(4) reserves each request's worst-case cost in the ledger, (5) sends the requests in an anyio
task group, hands each outcome to the strategy as it arrives and, when the rules say stop
part-way, cancels what is still in flight (and still charges it). Every decision goes into the
trace with the numbers behind it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import anyio
from pydantic import Field

from ._budget import Budget
from ._exceptions import AdaptiveError, BudgetExceededError, StreamError
from ._ledger import Charge, Ledger, Reservation
from ._models import Request, Response, ValidatedModel
from ._posterior import ConsistencyPrior
from ._prices import Price
from ._result import ChargeRecord, Result, SampleRecord, TraceEvent
from ._state import State
from ._stop import AllOf, AnyOf, Check, LowMarginalGain, StopRule
from ._strategy import Call, Final, Outcome, Plan, Strategy, StrategyRun, Task
from .endpoints._base import Endpoint, UsageMeter, prompt_copies, set_meter

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


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _ordered(votes: dict[str, int] | Any) -> dict[str, int]:
    # Leader first; ties keep first-seen order (dicts keep insertion order, sort is stable).
    return dict(sorted(votes.items(), key=lambda kv: -kv[1]))


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

    def assess(self, votes: dict[str, int]) -> tuple[float | None, Callable[[], float | None] | None]:
        """(confidence, marginal gain per sample) for votes ordered leader first.

        The gain is the best expected rise in confidence per extra sample over batches of up
        to `gain_horizon` (one extra vote alone often cannot change the leader). It is
        returned as a function: it costs more than the confidence and most rules never read
        it.
        """
        it = iter(votes.values())
        v1, v2 = next(it, 0), next(it, 0)
        if v1 == 0:
            return None, None
        prior, horizon = self.prior, self.config.gain_horizon

        def gain() -> float:
            return max(prior.expected_gain(v1, v2, k) / k for k in range(1, horizon + 1))

        return prior.confidence(v1, v2), gain

    def hypothetical(self, state: State, k: int) -> State:
        """The state if the next k samples all went to the leader."""
        leader = state.leader if state.leader is not None else "\x00next"
        votes = dict(state.votes)
        votes[leader] = votes.get(leader, 0) + k
        votes = _ordered(votes)
        conf, g = self.assess(votes)
        return state.replace(
            votes=votes,
            samples=state.samples + k,
            history=(*state.history, *([leader] * k)),
            confidence=conf,
            marginal_gain=g,
        )

    def next_batch(
        self, state: State, rule: StopRule | None, *, cap: int, min_batch: int = 1, first: bool = False
    ) -> int:
        """How many samples to ask for next: a pure function of the state.

        The fewest samples that could let `rule` stop (if they all agreed with the leader);
        when no batch up to `cap` could, `cap` (larger while far from stopping).
        """
        if cap < 1:
            return 0
        if first and self.config.first_batch is not None:
            return max(min_batch, min(self.config.first_batch, cap))
        if rule is None:
            return max(min_batch, cap)
        for k in range(max(1, min_batch), cap + 1):
            if rule(self.hypothetical(state, k)):
                return k
        return max(min_batch, cap)

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
    """The state of one controller run (one `client.run`)."""

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
        self.cfg = controller.config
        self.strategy = strategy
        self.task = task
        self.ledger = ledger
        self.rule = stop
        self.price_override = price
        self.trace: list[TraceEvent] = []
        self.outcomes: list[Outcome] = []
        self.round = 0
        self.generated = 0
        self.t0 = 0.0
        self.stop_reason = ""
        self.stop_check: Check | None = None
        self.run_state: StrategyRun | None = None
        # The gain is worth computing for the trace only when a rule reads it.
        self.reads_gain = stop is not None and uses_gain(stop)

    # -- helpers -----------------------------------------------------------------------
    def now(self) -> float:
        return anyio.current_time() - self.t0

    def event(self, kind: str, **data: Any) -> None:
        self.trace.append(TraceEvent(t=round(self.now(), 6), kind=kind, round=self.round, data=data))

    def endpoint(self, call: Call) -> Endpoint:
        return call.endpoint if call.endpoint is not None else self.task.endpoint

    def price(self, endpoint: Endpoint) -> Price | None:
        if endpoint is self.task.endpoint and self.price_override is not None:
            return self.price_override
        return endpoint.price

    def state(self, next_batch: int = 1, next_cost: float | None = None, next_tokens: int = 0) -> State:
        assert self.run_state is not None
        ev = self.run_state.evidence()
        votes = _ordered(dict(ev.votes))
        conf, gain = self.c.assess(votes)
        budget = self.ledger.budget
        elapsed = self.now()
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
            next_batch=next_batch,
            next_cost_usd=next_cost,
            next_tokens=next_tokens,
            confidence=conf,
            marginal_gain=gain,
        )

    def batch_size(self, plan: Plan, state: State) -> int:
        cap = min(self.cfg.max_batch, self.cfg.max_samples - self.generated)
        if plan.max_batch is not None:
            cap = min(cap, plan.max_batch)
        if state.remaining_samples is not None:
            cap = min(cap, state.remaining_samples)
        rule = self.rule if plan.stoppable else None
        return self.c.next_batch(state, rule, cap=cap, min_batch=plan.min_batch, first=self.round == 0)

    def sample_shape(self, sample: Request, k: int) -> tuple[Request, int]:
        """A batch of k samples as the request whose worst case bounds it, and its prompt copies."""
        ep = self.task.endpoint
        request = sample.model_copy(update={"n": k})
        if self.cfg.batch_as_n and ep.supports_n:
            return request, 1
        return request, k  # k single requests: the prompt is billed k times

    def affordable(self, plan: Plan, k: int) -> int:
        """The largest batch up to k whose worst case fits in the budget (0: none fits)."""
        assert plan.sample is not None
        if self.cfg.shrink_max_tokens:
            return k  # reserving lowers max_tokens to fit instead
        price = self.price(self.task.endpoint)
        while k >= max(1, plan.min_batch):
            request, copies = self.sample_shape(plan.sample, k)
            if self.ledger.fits(request, price, prompt_copies=copies):
                return k
            k -= 1
        return 0

    def with_next(self, state: State, sample: Request, k: int) -> State:
        """`state` with the next batch's size and worst-case cost filled in."""
        if k < 1:
            return state.replace(next_batch=0, next_cost_usd=None, next_tokens=0)
        request, copies = self.sample_shape(sample, k)
        price = self.price(self.task.endpoint)
        pico, tokens = self.ledger.worst_case(request, price, prompt_copies=copies)
        return state.replace(
            next_batch=k, next_cost_usd=pico / 1e12 if price is not None else None, next_tokens=tokens
        )

    def reserve(self, call: Call) -> Reservation | None:
        ep = self.endpoint(call)
        try:
            return self.ledger.reserve(
                call.request,
                self.price(ep),
                endpoint=ep.name,
                prompt_copies=prompt_copies(ep, call.request),
                shrink=self.cfg.shrink_max_tokens,
                min_max_tokens=self.cfg.min_max_tokens,
            )
        except BudgetExceededError as exc:
            self.event("refuse", endpoint=ep.name, purpose=call.purpose, limit=exc.dimension, why=str(exc))
            return None

    def sample_calls(self, plan: Plan, k: int) -> list[tuple[Call, Reservation]]:
        """Reserve a batch of k samples of plan.sample, shrinking k until it fits."""
        assert plan.sample is not None
        ep = self.task.endpoint
        base_seed = self.task.seed

        def seeded(req: Request, index: int, n: int) -> Request:
            changes: dict[str, Any] = {"n": n}
            if base_seed is not None and req.seed is None:
                changes["seed"] = base_seed + index
            return req.model_copy(update=changes)

        if self.cfg.batch_as_n and ep.supports_n:
            while k >= plan.min_batch and k >= 1:
                call = Call(seeded(plan.sample, self.generated, k))
                r = self.reserve(call)
                if r is not None:
                    return [(dataclasses.replace(call, request=r.request), r)]
                k -= 1
            return []
        out: list[tuple[Call, Reservation]] = []
        for i in range(k):
            call = Call(seeded(plan.sample, self.generated + i, 1))
            r = self.reserve(call)
            if r is None:
                break
            out.append((dataclasses.replace(call, request=r.request), r))
        if len(out) < plan.min_batch:
            for _, r in out:
                self.ledger.release(r)
            return []
        return out

    # -- sending -------------------------------------------------------------------------
    async def send(self, call: Call, r: Reservation, scope: anyio.CancelScope, stoppable: bool) -> None:
        ep = self.endpoint(call)
        meter = UsageMeter()
        token = set_meter(meter)
        response: Response | None = None
        error: BaseException | None = None
        try:
            response = await ep.request(r.request)
        except anyio.get_cancelled_exc_class():
            charge = self.ledger.cancel(r, meter.usage, samples=meter.samples)
            self.record(call, None, charge, None)
            self.event(
                "cancel", endpoint=ep.name, purpose=call.purpose, usd=charge.usd, estimated=charge.estimated
            )
            raise
        except Exception as exc:  # an endpoint or a user callable failed: record, charge, go on
            error = exc
        finally:
            token.var.reset(token)
        if error is not None:
            partial = getattr(error, "partial", None)
            usage = partial.usage if isinstance(error, StreamError) and partial is not None else None
            charge = self.ledger.fail(r, usage)
            self.record(call, None, charge, error)
            self.event(
                "error",
                endpoint=ep.name,
                purpose=call.purpose,
                error=type(error).__name__,
                message=str(error)[:300],
            )
            return
        assert response is not None
        charge = self.ledger.settle(r, response, prompt_copies=prompt_copies(ep, r.request))
        if call.purpose == "generate":
            self.generated += len(response.completions)
        self.record(call, response, charge, None)
        self.event(
            "done",
            endpoint=ep.name,
            purpose=call.purpose,
            completions=len(response.completions),
            tokens=response.usage.total_tokens,
            usd=charge.usd,
        )
        if stoppable and self.cfg.early_cancel and self.rule is not None and not scope.cancel_called:
            now = self.state()
            check = self.rule.check(now)
            if check.stop:
                self.stop_check = check
                reason = check.reason()
                self.event("decide", action="stop", during="round", reason=reason, **self.numbers(now))
                scope.cancel()

    def record(
        self, call: Call, response: Response | None, charge: Charge, error: BaseException | None
    ) -> None:
        outcome = Outcome(call=call, response=response, charge=charge, error=error, round=self.round)
        self.outcomes.append(outcome)
        assert self.run_state is not None
        self.run_state.observe(outcome)

    def numbers(self, state: State | None = None) -> dict[str, Any]:
        s = state if state is not None else self.state()
        return {
            "samples": s.samples,
            "votes": dict(list(s.votes.items())[:4]),
            "confidence": None if s.confidence is None else round(s.confidence, 6),
            "marginal_gain": _round(s.gain()) if self.reads_gain else None,
            "spent_usd": round(s.spent_usd, 9),
            "remaining_usd": s.remaining_usd,
            "remaining_tokens": s.remaining_tokens,
            "remaining_samples": s.remaining_samples,
            "elapsed": round(s.elapsed, 4),
            "next_batch": s.next_batch,
            "next_cost_usd": s.next_cost_usd,
        }

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> Result:
        self.t0 = anyio.current_time()
        self.ledger.check_price(self.price(self.task.endpoint), self.task.endpoint.name)
        self.run_state = self.strategy.start(self.task)
        seconds = self.ledger.budget.seconds
        try:
            with anyio.move_on_after(seconds if seconds is not None else math.inf) as deadline:
                await self.loop()
            if deadline.cancelled_caught:
                self.stop_reason = "deadline"
                self.event("stop", reason="deadline", **self.numbers())
        except AdaptiveError as exc:
            raise exc.with_receipt(self.result(Final(answer=None), "error")) from None
        final = self.run_state.finish(self.state())
        return self.result(final, self.stop_reason)

    async def loop(self) -> None:
        assert self.run_state is not None
        while True:
            state = self.state()
            plan = self.run_state.plan(state)
            if plan is None:
                self.stop_reason = "strategy_done"
                self.event("stop", reason="strategy_done", **self.numbers())
                return
            k = 0
            if plan.sample is not None:
                k = self.affordable(plan, self.batch_size(plan, state))
                state = self.with_next(state, plan.sample, k)
            if plan.stoppable and self.rule is not None and self.round > 0:
                check = self.rule.check(state)
                if check.stop:
                    self.stop_reason = check.reason()
                    self.event("decide", action="stop", reason=self.stop_reason, **self.numbers(state))
                    return
            sends: list[tuple[Call, Reservation]] = []
            if plan.sample is not None and k > 0:
                sends.extend(self.sample_calls(plan, k))
            # Generating calls of the strategy's own count against max_samples like batches do.
            room = self.cfg.max_samples - self.generated - sum(r.request.n for _, r in sends)
            capped = False
            for call in plan.calls:
                if call.purpose == "generate":
                    if call.request.n > room:
                        capped = True
                        self.event(
                            "refuse",
                            endpoint=self.endpoint(call).name,
                            purpose=call.purpose,
                            limit="max_samples",
                            why=f"max_samples={self.cfg.max_samples} reached",
                        )
                        continue
                    room -= call.request.n
                r = self.reserve(call)
                if r is not None:
                    sends.append((dataclasses.replace(call, request=r.request), r))
            if not sends:
                capped = capped or (plan.sample is not None and self.generated >= self.cfg.max_samples)
                self.stop_reason = "max_samples" if capped else "budget"
                self.event("stop", reason=self.stop_reason, **self.numbers())
                return
            self.event(
                "decide",
                action="continue",
                calls=len(sends),
                reserved_usd=round(sum(r.pico for _, r in sends) / 1e12, 9),
                note=plan.note,
                **self.numbers(state),
            )
            before = len(self.outcomes)
            async with anyio.create_task_group() as tg:
                for call, r in sends:
                    tg.start_soon(self.send, call, r, tg.cancel_scope, plan.stoppable)
            self.round += 1
            round_outcomes = self.outcomes[before:]
            if round_outcomes and all(o.error is not None for o in round_outcomes):
                first = round_outcomes[0].error
                assert first is not None
                self.stop_reason = "error"
                receipt = self.result(Final(answer=None), "error")
                if isinstance(first, AdaptiveError):
                    raise first.with_receipt(receipt)
                with contextlib.suppress(AttributeError):  # exotic exception types
                    first.receipt = receipt  # type: ignore[attr-defined]
                raise first
            if self.stop_check is not None:
                self.stop_reason = self.stop_check.reason()
                return

    # -- the receipt ---------------------------------------------------------------------
    def result(self, final: Final, stop_reason: str) -> Result:
        assert self.run_state is not None
        # Optional hooks of a voting run: the answer it counted for a completion.
        answer_of = getattr(self.run_state, "answer_of", None)
        parse = getattr(self.run_state, "parse", None)
        samples: list[SampleRecord] = []
        charges: list[ChargeRecord] = []
        for o in self.outcomes:
            ep = self.endpoint(o.call)
            c = o.charge
            charges.append(
                ChargeRecord(
                    endpoint=c.endpoint,
                    status=c.status,
                    usd=c.usd,
                    usage=c.usage,
                    samples=c.samples,
                    estimated=c.estimated,
                    overrun=c.overrun,
                    round=o.round,
                )
            )
            if o.response is None:
                continue
            for comp in o.response.completions:
                answer = comp.answer
                if o.call.purpose == "generate":
                    if callable(answer_of):
                        answer = answer_of(comp)
                    elif answer is None and callable(parse):
                        answer = parse(comp.text)
                samples.append(
                    SampleRecord(
                        text=comp.text,
                        answer=answer,
                        purpose=o.call.purpose,
                        round=o.round,
                        finish_reason=comp.finish_reason,
                        completion_tokens=comp.completion_tokens,
                        mean_logprob=comp.mean_logprob(),
                        score=comp.score,
                        endpoint=ep.name,
                    )
                )
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
            samples=samples,
            votes=dict(state.votes),
            usage=self.ledger.usage,
            cost_usd=self.ledger.spent_usd,
            elapsed_s=self.now(),
            rounds=self.round,
            charges=charges,
            trace=list(self.trace),
            details=dict(final.details),
        )
