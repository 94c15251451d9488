"""Dispatch: sending calls under ledger reservations.

Before a call is sent its worst case is reserved in the ledger (a refusal is recorded and the
call is never sent); samples of a batch are seeded from the task's seed and their index; a
round of calls runs in one anyio task group. Every call ends with one charge: settled to the
reported usage, failed (what the error says was billed; the reserved worst case when the
server may have generated and nothing says what), or cancelled (stopped by us: what was
counted, else the worst case); each booked at most at its reservation (see `_ledger`). Each
outcome goes to the controller as it arrives, and the controller may then cancel the rest of
the round; a charge that overran its reservation cancels the rest at once.

What leaves `run_round` is one exception, never an `ExceptionGroup`: the first failure of
the round's tasks (an exception inside the ledger becomes a `LedgerError`).

Shared accounts (`adaptive.ledger.Account`): a call that belongs to any has each reserved
call's worst case held in all of them at once (one atomic backend step) just before it is
sent; a refusal releases the call's own reservation and is recorded, and the call is not
sent. While it is in flight a lease backend's hold is renewed by a task of the call's own;
when it ends, the accounts book exactly the charge the call's ledger booked. An attempt the
server may have billed is not retried under shared accounts (its retry would need a second
shared hold, which the synchronous retry hook cannot take): the error ends that request.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ._events import Recorder
from ._exceptions import (
    AdaptiveError,
    BudgetExceededError,
    EndpointError,
    LedgerError,
    ResponseError,
    StreamError,
)
from ._ledger import Charge, Ledger, Reservation
from ._models import Completion, Request, Response, TokenLogprob, Usage
from ._prices import Price, pico_to_usd
from ._result import EventKind
from ._strategy import Call, Outcome, Plan, Task
from .endpoints._base import Endpoint, PartialResponseError, UsageMeter, prompt_copies, set_meter
from .ledger._accounts import Account, Amount

logger = logging.getLogger("adaptive")

# The controller's own machinery: nothing here is public API (see `Controller`).
__all__: list[str] = []

Send = tuple[Call, Reservation]
Observe = Callable[[Outcome], None]
StopNow = Callable[[], bool]
OnOverrun = Callable[[Charge, int], None]
AnswerOf = Callable[[Completion], str | None]
# The reserved follow-up calls of an outcome (e.g. scoring the candidate it brought), sent
# in the same round as soon as the outcome is in.
FollowUp = Callable[[Outcome], Sequence["Send"]]
Ask = Callable[[], None]


@dataclasses.dataclass(slots=True)
class _Round:
    """A round in flight: where follow-ups start, and which requests a stop cancels."""

    tg: anyio.abc.TaskGroup
    observe: Observe
    ask: Ask | None
    follow: FollowUp | None
    planned: list[anyio.CancelScope] = dataclasses.field(default_factory=list)
    stopped: bool = False
    live: int = 0  # calls of the round still in flight (follow-ups too)
    idle: anyio.Event = dataclasses.field(default_factory=anyio.Event)  # set when `live` falls to 0


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A request the ledger refused, kept for the error that says what budget would fit it."""

    request: Request
    endpoint: str
    prompt_copies: int
    error: BudgetExceededError


@dataclasses.dataclass(frozen=True, slots=True)
class Billed:
    """What a failed request is known to have been billed.

    Attributes:
        usage: Usage known to be billed (None: nothing is known, book the worst case).
        samples: Completions billed with `usage`.
        unknown: Fanned-out single requests whose usage is unknown on top of `usage`: each is
            booked at its share of the worst case.
    """

    usage: Usage | None
    samples: int = 0
    unknown: int = 0


def billed(error: BaseException) -> Billed:
    """What a failed request is known to have been billed.

    A `PartialResponseError` (a fanned-out `n` that partly failed) says it per request: the
    parts that answered, plus each failure's `usage` (a failure without one is unknown) and
    the choices of a part refused for its choice count. A
    cut stream bills what it counted. Any other `EndpointError` says it in `usage` (None:
    unknown, e.g. a malformed 200 body or a connection lost mid-answer, which may have been
    generated in full), and a `ResponseError` refused for its choice count books that many
    samples (`choices`), so more choices than `n` is an overrun. An exception group is
    unknown. An exception that is not an `EndpointError` comes from user code (a function
    endpoint), not from a server: nothing is billed for it.
    """
    if isinstance(error, PartialResponseError):
        known, unknown = error.partial.usage, 0
        samples = len(error.partial.completions)
        for e in error.errors:
            used = getattr(e, "usage", None)  # a part's error may come from user code
            if isinstance(used, Usage):
                known = known + used
            else:
                unknown += 1
            # A part refused for its choice count (two choices for its n=1) was billed for
            # them: counted, so more than the fan-out's n shows as an overrun.
            if isinstance(e, ResponseError) and e.choices is not None and e.choices > 0:
                samples += e.choices
        return Billed(known, samples, unknown)
    if isinstance(error, StreamError) and isinstance(error.partial, Response):
        return Billed(error.partial.usage, len(error.partial.completions))
    if isinstance(error, BaseExceptionGroup):
        return Billed(None)
    if not isinstance(error, EndpointError):
        return Billed(Usage())
    choices = error.choices if isinstance(error, ResponseError) else None
    return Billed(error.usage, choices if choices is not None and choices > 0 else 0)


class AttemptMeter(UsageMeter):
    """The meter a call is sent with: counts a stream's usage, and books retried attempts.

    An endpoint that retries after an attempt the server may have billed (a connection lost
    mid-answer, a malformed 200 body) calls `before_retry(error)` first: that attempt is
    booked under a reservation of its own (its known usage, else its worst case, marked
    estimated), so the call's own reservation still covers the next attempt; when the budget
    cannot hold another attempt the retry is refused (False) and the endpoint raises `error`.
    """

    def __init__(
        self, dispatcher: Dispatcher, call: Call, r: Reservation, observe: Observe, request_id: int
    ) -> None:
        super().__init__()
        self.dispatcher = dispatcher
        self.call = call
        self.reservation = r
        self.observe = observe
        self.request_id = request_id
        self.cut: anyio.CancelScope | None = None  # cancelled when the call's watch says cut

    def tokens(self, index: int, logprobs: Sequence[TokenLogprob]) -> None:
        """Hand streamed tokens to the call's watch; cut the request when it says so."""
        watch = self.call.watch
        if watch is None or self.cut is None or self.cut.cancel_called:
            return
        if watch.tokens(index, logprobs):
            self.cut.cancel()

    def retrying(self, error: BaseException) -> None:
        """Record an attempt that failed with nothing billed and is retried (on the trace, $0)."""
        d = self.dispatcher
        d.recorder.emit(
            "error",
            endpoint=d.endpoint(self.call).name,
            purpose=self.call.purpose,
            request_id=self.request_id,
            error=type(error).__name__,
            message=str(error)[:300],
            usd=0.0,
            estimated=False,
            input_tokens=0,
            output_tokens=0,
            retried=True,
        )

    def before_retry(self, error: BaseException) -> bool:
        """Book the failed attempt before the endpoint retries; False: no budget for a retry."""
        bill = billed(error)
        if bill.usage is not None and bill.unknown == 0 and bill.usage.total_tokens == 0:
            self.retrying(error)  # nothing was billed (an HTTP error status, no connection)
            return True
        d, r = self.dispatcher, self.reservation
        ep = d.endpoint(self.call)
        if d.accounts:
            d.recorder.emit(
                "refuse",
                endpoint=ep.name,
                purpose=self.call.purpose,
                request_id=self.request_id,
                limit="account",
                why=f"retry: not retried under shared accounts (a billed attempt needs its own "
                f"shared hold): {type(error).__name__}",
            )
            return False
        try:
            attempt = d.ledger.reserve(
                r.request, r.price, endpoint=r.endpoint, prompt_copies=prompt_copies(ep, r.request)
            )
        except BudgetExceededError as exc:
            d.refusals.append(Refusal(r.request, r.endpoint, prompt_copies(ep, r.request), exc))
            d.recorder.emit(
                "refuse",
                endpoint=ep.name,
                purpose=self.call.purpose,
                request_id=self.request_id,
                limit=exc.dimension,
                why=f"retry: {exc}",
            )
            return False
        charge = d._book(
            lambda: d.ledger.fail(attempt, bill.usage, samples=bill.samples, unknown=bill.unknown)
        )
        # On the receipt, not handed to the strategy: the call itself has not ended yet.
        d.recorder.keep(
            Outcome(call=self.call, response=None, charge=charge, error=None, round=d.recorder.round)
        )
        d.recorder.emit(
            "error",
            endpoint=ep.name,
            purpose=self.call.purpose,
            request_id=self.request_id,
            error=type(error).__name__,
            message=str(error)[:300],
            usd=charge.usd,
            estimated=charge.estimated,
            input_tokens=charge.usage.prompt_tokens,
            output_tokens=charge.usage.completion_tokens,
            retried=True,
        )
        return True


class Dispatcher:
    """Reserves, seeds and sends the calls of one controller run.

    Args:
        task: The call's task (its endpoint is where calls without one go; its seed).
        ledger: The call's ledger.
        recorder: Where refusals and each call's end are recorded.
        price: A price override for the task's endpoint (None: the endpoint's own).
        as_n: Send a batch as one request with `n` (the endpoint supports it and it is wanted).
        shrink: Lower `max_tokens` to fit the budget instead of refusing.
        min_max_tokens: With `shrink`, the smallest `max_tokens` worth sending.
    """

    def __init__(
        self,
        task: Task,
        ledger: Ledger,
        recorder: Recorder,
        *,
        price: Price | None,
        as_n: bool,
        shrink: bool,
        min_max_tokens: int,
    ) -> None:
        self.task = task
        self.ledger = ledger
        self.recorder = recorder
        self.price_override = price
        self.as_n = as_n
        self.shrink = shrink
        self.min_max_tokens = min_max_tokens
        self.refusals: list[Refusal] = []
        self.on_overrun: OnOverrun | None = None
        # The strategy's reading of a generated sample, for the answers of a "done" event.
        self.answer_of: AnswerOf | None = None
        self.accounts: tuple[Account, ...] = ()
        self.shared_refusals: list[BudgetExceededError] = []
        # What the shared ledger could not do as asked (on the result's warnings, and logged).
        self.shared_warnings: list[str] = []
        self._round: _Round | None = None

    def endpoint(self, call: Call) -> Endpoint:
        """Where `call` goes."""
        return call.endpoint if call.endpoint is not None else self.task.endpoint

    def price(self, endpoint: Endpoint) -> Price | None:
        """The price `endpoint` is charged at in this call."""
        if endpoint is self.task.endpoint and self.price_override is not None:
            return self.price_override
        return endpoint.price

    # -- reserving -----------------------------------------------------------------------
    def reserve(self, call: Call) -> Send | None:
        """Hold the worst case of `call`; None (and a "refuse" event) when it does not fit."""
        ep = self.endpoint(call)
        copies = prompt_copies(ep, call.request)
        try:
            r = self.ledger.reserve(
                call.request,
                self.price(ep),
                endpoint=ep.name,
                prompt_copies=copies,
                shrink=self.shrink,
                min_max_tokens=self.min_max_tokens,
            )
        except BudgetExceededError as exc:
            self.refusals.append(Refusal(call.request, ep.name, copies, exc))
            self.recorder.emit(
                "refuse",
                endpoint=ep.name,
                purpose=call.purpose,
                request_id=self.recorder.request_id(),  # an id of its own: it never has a "send"
                limit=exc.dimension,
                why=str(exc),
            )
            return None
        # With `shrink` the reservation's request may be the lowered one: send that.
        return dataclasses.replace(call, request=r.request), r

    def reserve_samples(self, plan: Plan, k: int, *, first_index: int, singles: bool = False) -> list[Send]:
        """Reserve a batch of k samples of `plan.sample`, shrinking k until it fits.

        Samples are seeded `task.seed + index` (indices from `first_index`), unless the
        request carries its own seed. `singles` sends k single requests even where the
        endpoint does `n` (each can then be cancelled on its own).
        """
        assert plan.sample is not None
        sample = plan.sample
        if self.as_n and not singles:
            while k >= plan.min_batch and k >= 1:
                send = self.reserve(Call(self._seeded(sample, first_index, k)))
                if send is not None:
                    return [self._watched(plan, send)]
                k -= 1
            return []
        out: list[Send] = []
        for i in range(k):
            send = self.reserve(Call(self._seeded(sample, first_index + i, 1)))
            if send is None:
                break
            out.append(self._watched(plan, send))
        if len(out) < plan.min_batch:
            for _, r in out:
                self.ledger.release(r)
            return []
        return out

    @staticmethod
    def _watched(plan: Plan, send: Send) -> Send:
        """The send with the plan's watch for its request (asked once it is reserved)."""
        if plan.watch is None:
            return send
        call, r = send
        return dataclasses.replace(call, watch=plan.watch(call.request)), r

    def _seeded(self, request: Request, index: int, n: int) -> Request:
        changes: dict[str, Any] = {"n": n}
        if self.task.seed is not None and request.seed is None:
            changes["seed"] = self.task.seed + index
        return request.model_copy(update=changes)

    # -- sending -------------------------------------------------------------------------
    async def run_round(
        self,
        sends: Sequence[Send],
        observe: Observe,
        stop: StopNow | None,
        follow: FollowUp | None = None,
        timer: tuple[float, Callable[[], list[Send]]] | None = None,
    ) -> None:
        """Send every call at once, each outcome to `observe` as it arrives.

        Args:
            sends: The reserved calls.
            observe: Takes each call's outcome before its event is recorded.
            stop: Asked after each answer (None: never); True cancels the calls of `sends`
                and the generating follow-ups still in flight (they are still charged).
                Verifying follow-ups run on: they score what was already paid for.
            follow: Given each outcome once `observe` has it; the reserved calls it returns
                start at once, in this round (their outcomes go to `observe` and `follow` too).
            timer: (seconds, tick): `tick` is asked once, that long into the round if a
                call of the round is still in flight and no stop came; the reserved calls it
                returns start at once, like a generating follow-up's. The round never waits
                on the timer: it ends when its calls do.
        """
        try:
            async with anyio.create_task_group() as tg:
                rnd = _Round(tg, observe, None, follow)
                if stop is not None:
                    rnd.ask = lambda: self._ask(rnd, stop)
                self._round = rnd
                for call, r in sends:
                    self._start_planned(rnd, call, r)
                if timer is not None and rnd.live:
                    tg.start_soon(self._tick, rnd, *timer)
        except BaseExceptionGroup as group:
            # One exception out, never a group: the first that is not a cancellation.
            raise _first(group) from None
        finally:
            self._round = None

    def _start_planned(self, rnd: _Round, call: Call, r: Reservation) -> None:
        scope = anyio.CancelScope()
        rnd.planned.append(scope)
        rnd.live += 1
        rnd.tg.start_soon(self._planned, scope, call, r, rnd)

    async def _planned(self, scope: anyio.CancelScope, call: Call, r: Reservation, rnd: _Round) -> None:
        try:
            with scope:  # a stop cancels this scope; an overrun the whole round's
                await self._send(call, r, rnd.tg.cancel_scope, rnd.observe, rnd.ask)
        finally:
            rnd.live -= 1
            if rnd.live == 0:
                rnd.idle.set()

    async def _tick(self, rnd: _Round, seconds: float, tick: Callable[[], list[Send]]) -> None:
        """Ask `tick` once, `seconds` into the round, unless every planned call ended first."""
        with anyio.move_on_after(seconds):
            await rnd.idle.wait()
            return
        if rnd.stopped or rnd.tg.cancel_scope.cancel_called:
            return
        for call, r in tick():
            self._start_planned(rnd, call, r)

    @staticmethod
    def _ask(rnd: _Round, stop: StopNow) -> None:
        """Ask the rules after an answer; on stop cancel the planned calls still in flight."""
        if rnd.stopped or not stop():
            return
        rnd.stopped = True
        for scope in rnd.planned:
            scope.cancel()

    def _follow(self, outcome: Outcome) -> None:
        """Start the follow-ups of `outcome` in its round (none once the round is cancelled).

        A generating follow-up is stopped with the round's planned calls (more samples are
        what a stop ends); a verifying one runs on (it scores what was already paid for).
        """
        rnd = self._round
        if rnd is None or rnd.follow is None or rnd.tg.cancel_scope.cancel_called:
            return
        for call, r in rnd.follow(outcome):
            if call.purpose != "generate":
                rnd.tg.start_soon(self._send, call, r, rnd.tg.cancel_scope, rnd.observe, rnd.ask)
                continue
            if rnd.stopped:  # stopped while it was reserved: never sent, nothing held
                self.ledger.release(r)
                continue
            self._start_planned(rnd, call, r)

    async def _send(
        self, call: Call, r: Reservation, scope: anyio.CancelScope, observe: Observe, stop: Ask | None
    ) -> None:
        if not self.accounts:
            await self._send_one(call, r, scope, observe, stop)
            return
        rid = await self._hold(call, r)
        if rid is None:
            return
        backend = self.accounts[0].backend
        try:
            try:
                await anyio.lowlevel.checkpoint()  # cancelled while the hold was taken: not sent
            except anyio.get_cancelled_exc_class():
                self.ledger.release(r)
                raise
            if backend.lease_seconds is None:
                await self._send_one(call, r, scope, observe, stop)
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._renew, rid, backend.lease_seconds)
                    await self._send_one(call, r, scope, observe, stop)
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._settle_shared(rid, r)

    async def _hold(self, call: Call, r: Reservation) -> str | None:
        """Hold `r`'s worst case in every shared account; None (recorded) when one refuses.

        Raises:
            LedgerUnavailableError: The backend cannot be reached (nothing is sent).
        """
        ep = self.endpoint(call)
        rid = uuid.uuid4().hex
        amount = Amount(r.pico, r.tokens, r.samples)
        try:
            # Shielded: a hold taken must be known here, or it would wait for its lease to expire.
            with anyio.CancelScope(shield=True):
                refusal = await self.accounts[0].backend.reserve(rid, self.accounts, amount)
        except BaseException:
            self.ledger.release(r)
            raise
        if refusal is None:
            return rid
        self.ledger.release(r)
        unit = {"usd": "$", "tokens": "tokens ", "samples": "samples "}[refusal.dimension]
        need = pico_to_usd(r.pico) if refusal.dimension == "usd" else None
        left = pico_to_usd(refusal.left) if refusal.dimension == "usd" else refusal.left
        asked = (
            f"${need:.6f}" if need is not None else (r.tokens if refusal.dimension == "tokens" else r.samples)
        )
        exc = BudgetExceededError(
            f"request to {ep.name!r} needs up to {asked} ({refusal.dimension}) but shared account "
            f"{refusal.account!r} has only {unit}{left} left: raise that account's limit",
            dimension=refusal.dimension,
            account=refusal.account,
        )
        self.shared_refusals.append(exc)
        self.recorder.emit(
            "refuse",
            endpoint=ep.name,
            purpose=call.purpose,
            request_id=self.recorder.request_id(),
            limit=refusal.dimension,
            why=str(exc),
        )
        return None

    async def _renew(self, rid: str, lease_seconds: float) -> None:
        """Keep the lease `rid` alive while its request is in flight."""
        backend = self.accounts[0].backend
        while True:
            await anyio.sleep(lease_seconds / 3)
            try:
                alive = await backend.renew(rid)
            except AdaptiveError as exc:
                # The request is already sent; its lease will be booked at its worst case.
                logger.warning("shared ledger: lease %s not renewed: %s", rid, exc)
                continue
            if not alive:
                self._shared_warning(
                    f"shared ledger: lease {rid} expired while in flight; booked at its worst case"
                )
                return

    async def _settle_shared(self, rid: str, r: Reservation) -> None:
        """Book in the shared accounts what the call's ledger booked for `r` (nothing if unsent)."""
        charge = r.booked
        if charge is None:
            # Not booked: never sent (released), or the ledger failed (then the worst case).
            booked, status = (
                (Amount(), "released") if not r.open else (Amount(r.pico, r.tokens, r.samples), "failed")
            )
        else:
            booked = Amount(charge.pico, charge.usage.total_tokens, charge.samples)
            status = charge.status
        with anyio.move_on_after(30):
            try:
                result = await self.accounts[0].backend.settle(rid, booked, status)
            except AdaptiveError as exc:
                self._shared_warning(
                    f"shared ledger: reservation {rid} not settled ({exc}); its lease is booked at "
                    "its worst case when it expires"
                )
                return
            if result == "expired":
                self._shared_warning(
                    f"shared ledger: reservation {rid} had expired before it was settled; its worst "
                    "case was booked in the shared accounts instead of the reported cost"
                )

    def _shared_warning(self, message: str) -> None:
        logger.warning("%s", message)
        self.shared_warnings.append(message)

    async def _send_one(
        self, call: Call, r: Reservation, scope: anyio.CancelScope, observe: Observe, stop: Ask | None
    ) -> None:
        ep = self.endpoint(call)
        rid = self.recorder.request_id()
        self._sent(ep, call, r, rid)
        # A stream counts its usage here (for the charge if it is cancelled); retries book here.
        meter = AttemptMeter(self, call, r, observe, rid)
        token = set_meter(meter)
        response: Response | None = None
        error: Exception | None = None
        # The call's own scope: its watch cuts this request alone (the round goes on).
        watched = meter.cut = anyio.CancelScope() if call.watch is not None else None
        try:
            if watched is None:
                response = await ep.request(r.request)
            else:
                with watched:
                    response = await ep.request(r.request)
        except anyio.get_cancelled_exc_class():
            self._cancelled(observe, call, ep, r, meter, rid)
            raise
        except Exception as exc:  # an endpoint or a user callable failed: record, charge, go on
            error = exc
        finally:
            token.var.reset(token)
        if watched is not None and watched.cancelled_caught and response is None and error is None:
            self._cancelled(observe, call, ep, r, meter, rid, why="cut by its watch")
            return
        if error is not None:
            bill = billed(error)
            if isinstance(error, ExceptionGroup):
                error = _first(error)  # type: ignore[assignment]  # one typed error, never a group
            assert error is not None
            charge = self._book(
                lambda: self.ledger.fail(r, bill.usage, samples=bill.samples, unknown=bill.unknown)
            )
            name, message = type(error).__name__, str(error)[:300]
            self._ended(
                observe,
                call,
                ep,
                charge,
                "error",
                failure=error,
                request_id=rid,
                error=name,
                message=message,
                usd=charge.usd,
                estimated=charge.estimated,
                input_tokens=charge.usage.prompt_tokens,
                output_tokens=charge.usage.completion_tokens,
            )
            self._overran(charge, scope, rid)
            return
        assert response is not None
        copies = prompt_copies(ep, r.request)
        charge = self._book(lambda: self.ledger.settle(r, response, prompt_copies=copies))
        # The server's own figures when it reported usage (an overrun shows what it said);
        # else the upper bound that was booked (estimated).
        used = response.usage if response.usage_reported and not charge.estimated else charge.usage
        self._ended(
            observe,
            call,
            ep,
            charge,
            "done",
            response=response,
            request_id=rid,
            model=response.model,
            completions=len(response.completions),
            tokens=charge.usage.total_tokens,
            usd=charge.usd,
            estimated=charge.estimated,
            input_tokens=used.prompt_tokens,
            output_tokens=used.completion_tokens,
            finish_reasons=[c.finish_reason or "unknown" for c in response.completions],
        )
        if self._overran(charge, scope, rid):
            return
        if stop is not None and not scope.cancel_called:
            stop()

    def _cancelled(
        self,
        observe: Observe,
        call: Call,
        ep: Endpoint,
        r: Reservation,
        meter: UsageMeter,
        rid: int,
        **data: Any,
    ) -> None:
        """Charge a cancelled call what it used (what a stream counted), and record it."""
        done = meter.finished

        def cut() -> Charge:
            return self.ledger.cancel(
                r,
                meter.usage,
                samples=meter.samples,
                finished=None if done is None else done.usage,
                finished_samples=0 if done is None else len(done.completions),
                prompt_reported=meter.prompt_reported,
            )

        charge = self._book(cut)
        self._ended(
            observe,
            call,
            ep,
            charge,
            "cancel",
            request_id=rid,
            usd=charge.usd,
            estimated=charge.estimated,
            input_tokens=charge.usage.prompt_tokens,
            output_tokens=charge.usage.completion_tokens,
            **data,
        )
        if charge.overrun is not None and self.on_overrun is not None:
            self.on_overrun(charge, rid)  # a stream that ran past its reservation before the cut

    def _book(self, book: Callable[[], Charge]) -> Charge:
        """Run one ledger booking; anything it raises becomes a `LedgerError`."""
        try:
            return book()
        except AdaptiveError:
            raise
        except Exception as exc:
            raise LedgerError(f"the ledger could not book a charge: {type(exc).__name__}: {exc}") from exc

    def _sent(self, ep: Endpoint, call: Call, r: Reservation, rid: int) -> None:
        """Record the "send" event of a reserved request about to go out."""
        req = r.request
        model = getattr(ep, "model", None)
        provider = getattr(ep, "_provider", None) or getattr(ep, "provider", None)
        self.recorder.emit(
            "send",
            endpoint=ep.name,
            purpose=call.purpose,
            request_id=rid,
            model=model if isinstance(model, str) else None,
            provider=provider if isinstance(provider, str) else None,
            operation="chat" if req.messages is not None else "text_completion",
            n=req.n,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            seed=req.seed,
            usd=round(r.pico / 1e12, 12),
            tokens=r.tokens,
            samples=r.samples,
        )

    def _overran(self, charge: Charge, scope: anyio.CancelScope, rid: int) -> bool:
        """Stop the round at once when `charge` overran its reservation (the controller is told)."""
        if charge.overrun is None:
            return False
        if self.on_overrun is not None:
            self.on_overrun(charge, rid)
        scope.cancel()
        return True

    def _ended(
        self,
        observe: Observe,
        call: Call,
        ep: Endpoint,
        charge: Charge,
        kind: EventKind,
        *,
        response: Response | None = None,
        failure: Exception | None = None,
        **data: Any,
    ) -> None:
        """Keep a finished call's outcome, hand it to the controller, then record its event."""
        outcome = Outcome(
            call=call, response=response, charge=charge, error=failure, round=self.recorder.round
        )
        answers: list[str | None] | None = None
        if response is not None:
            # Read once: the receipt's samples reuse these answers.
            read = self.answer_of if call.purpose == "generate" else None
            answers = [read(c) if read is not None else c.answer for c in response.completions]
            data["answers"] = answers
        self.recorder.keep(outcome, answers)  # on the receipt even if the strategy fails to take it in
        observe(outcome)
        self.recorder.emit(kind, endpoint=ep.name, purpose=call.purpose, **data)
        self._follow(outcome)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception of a (nested) group that is not a cancellation."""
    cancelled = anyio.get_cancelled_exc_class()
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, cancelled):
            return exc
    return group.exceptions[0]
