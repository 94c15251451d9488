"""The event recorder: the one source of a call's trace, its charges and its samples.

Everything the controller decides or sees goes through `Recorder.emit`; every finished request's
`Outcome` is also kept (`Recorder.keep`) for the charges and samples of the receipt. The recorder stamps
each event with the seconds since the call began and the current round, keeps it for
`Result.trace`, and hands it to every subscriber as it happens: a subscriber is any sync
callable taking a `TraceEvent` (live callbacks, logging and tracing attach here).

Event kinds (`TraceEvent.kind`, an `EventKind`) and their `data`: one TypedDict per kind in
`adaptive._result` (`DecideData`, `SendData`, `DoneData`, `CancelData`, `ErrorData`, `RefuseData`,
`OverrunData`, `StopData`; `EVENT_DATA` maps each kind to its type, and a test checks every
emitted event against it). `numbers` gives the figures shared by "decide" and "stop".

A plan shows as one "decide" event with action="continue" (its note and the number of
calls); then each request sent as a "send" event (what was reserved for it) and its end as
"done" (with the answers received), "cancel" or "error". Every event about one request carries
its `request_id` (1, 2, ... within the call), so a consumer can pair them: "send" comes first,
then any "error" with retried=True for an attempt the endpoint retried, then exactly one
"done", "cancel" or "error". A "refuse" names the request it refused: a retry of a request
sent (its id), or a request never sent (an id of its own, with no "send").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from ._ledger import Charge
from ._result import ChargeRecord, EventKind, SampleRecord, TraceEvent
from ._state import State
from ._strategy import Outcome, StrategyRun

# The controller's own machinery: nothing here is public API (see `Controller`).
__all__: list[str] = []

Subscriber = Callable[[TraceEvent], None]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def numbers(state: State, *, reads_gain: bool) -> dict[str, Any]:
    """The figures a decision is made on, as they go into a "decide" or "stop" event.

    Args:
        state: The state the decision read.
        reads_gain: Whether a stop rule reads the marginal gain (it is only computed then: it
            costs more than everything else here).
    """
    return {
        "samples": state.samples,
        "votes": dict(list(state.votes.items())[:4]),
        "confidence": None if state.confidence is None else round(state.confidence, 6),
        "marginal_gain": _round(state.gain()) if reads_gain else None,
        "spent_usd": round(state.spent_usd, 9),
        "remaining_usd": state.remaining_usd,
        "remaining_tokens": state.remaining_tokens,
        "remaining_samples": state.remaining_samples,
        # the bound the marginal gain's budget target reads (None: none, the unlimited target)
        "draws_left": state.draws_left,
        "elapsed": round(state.elapsed, 4),
        "next_batch": state.next_batch,
        "next_cost_usd": state.next_cost_usd,
    }


class Recorder:
    """Records one call's events and outcomes, and passes each event on to its subscribers.

    Args:
        subscribers: Sync callables that receive every event as it is emitted. They run
            inside the controller's loop: keep them quick, and an exception they raise
            ends the call.

    Attributes:
        round: The round stamped on the events emitted now.
        events: Every event so far, in order (the trace).
        outcomes: Every finished request so far, in arrival order (the charges and samples).
    """

    def __init__(self, subscribers: list[Subscriber] | None = None) -> None:
        self.subscribers: list[Subscriber] = list(subscribers or [])
        self.round = 0
        self.events: list[TraceEvent] = []
        self.outcomes: list[Outcome] = []
        self._answers: list[list[str | None] | None] = []
        self._requests = 0
        self._t0 = anyio.current_time()
        # Wall-clock nanoseconds at the call's start: event times as timestamps (tracing).
        self.started_ns = time.time_ns()

    def now(self) -> float:
        """Seconds since the call began."""
        return anyio.current_time() - self._t0

    def subscribe(self, subscriber: Subscriber) -> None:
        """Pass every event emitted from now on to `subscriber`."""
        self.subscribers.append(subscriber)

    def emit(self, kind: EventKind, **data: Any) -> TraceEvent:
        """Record an event of `kind` with `data` and hand it to every subscriber."""
        event = TraceEvent(t=round(self.now(), 6), kind=kind, round=self.round, data=data)
        self.events.append(event)
        for subscriber in self.subscribers:
            subscriber(event)
        return event

    def request_id(self) -> int:
        """A new request id (1, 2, ... within the call), shared by a request's events."""
        self._requests += 1
        return self._requests

    def keep(self, outcome: Outcome, answers: list[str | None] | None = None) -> None:
        """Keep a finished request's outcome for the receipt (its charge and completions).

        Args:
            outcome: The finished request.
            answers: The answer counted for each completion, when already read (the
                receipt's samples reuse them instead of reading every completion again).
        """
        self.outcomes.append(outcome)
        self._answers.append(answers)

    # -- the receipt -------------------------------------------------------------------
    def charges(self) -> list[ChargeRecord]:
        """One line per request: what it cost and how it ended."""
        return [_charge_record(o.charge, o.round) for o in self.outcomes]

    def samples(self, run: StrategyRun) -> list[SampleRecord]:
        """Every completion received; a generated one with the answer `run` counted for it."""
        out: list[SampleRecord] = []
        for o, answers in zip(self.outcomes, self._answers, strict=True):
            if o.response is None:
                continue
            generated = o.call.purpose == "generate"
            for i, comp in enumerate(o.response.completions):
                if answers is not None:
                    answer = answers[i]
                else:
                    answer = run.answer_of(comp) if generated else comp.answer
                out.append(
                    SampleRecord(
                        text=comp.text,
                        answer=answer,
                        purpose=o.call.purpose,
                        round=o.round,
                        finish_reason=comp.finish_reason,
                        completion_tokens=comp.completion_tokens,
                        mean_logprob=comp.mean_logprob(),
                        score=comp.score,
                        # The ledger names the charge after the endpoint the call went to.
                        endpoint=o.charge.endpoint,
                    )
                )
        return out

    def trace(self) -> list[TraceEvent]:
        """Every event so far (a copy)."""
        return list(self.events)


def _charge_record(c: Charge, round: int) -> ChargeRecord:
    return ChargeRecord(
        endpoint=c.endpoint,
        status=c.status,
        usd=c.usd,
        usage=c.usage,
        samples=c.samples,
        estimated=c.estimated,
        overrun=c.overrun is not None,
        reported=c.overrun.reported if c.overrun is not None else None,
        round=round,
    )
