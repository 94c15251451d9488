"""What a call returns: the answer and its receipt (samples, usage, dollars, stop reason, trace)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from ._models import Usage

__all__ = [
    "STOP_REASONS",
    "ChargeRecord",
    "EventKind",
    "OverrunRecord",
    "Result",
    "SampleRecord",
    "StopReason",
    "StopRecord",
    "TraceEvent",
]

#: Why a call stopped (`Result.stop_reason`); one meaning per value (`STOP_REASONS`).
StopReason = Literal[
    "confident",
    "low_gain",
    "not_worth_cost",
    "budget",
    "deadline",
    "max_samples",
    "strategy_done",
    "overrun",
    "error",
    "rule",
]

#: The meaning of every stop reason (the README's table is this one).
STOP_REASONS: dict[str, str] = {
    "confident": "a confidence rule fired: the answer is settled (confident, ac-beta, dirichlet, "
    "esc-window, vote-margin, score-threshold)",
    "low_gain": "low-marginal-gain: one more sample would raise the confidence by less than min_gain",
    "not_worth_cost": "low-marginal-gain with value_usd: the next batch's expected value is below its "
    "worst-case cost",
    "budget": "the budget could not fit the next request (Result.stop.dimension says which limit), "
    "or the budget-exhausted rule fired",
    "deadline": "Budget.seconds (or the deadline rule) ran out; work in flight was cancelled and charged",
    "max_samples": "ControllerConfig.max_samples (or the max-samples rule) was reached",
    "strategy_done": "the strategy had nothing more to ask for",
    "overrun": "a server reported more than was reserved (Result.overruns); nothing more was sent",
    "error": "the call raised; this is the reason on the error's receipt",
    "rule": "a custom stop rule (a function or a user StopRule subclass) fired",
}


class StopRecord(BaseModel):
    """What ended the call, with the figure that fired.

    Attributes:
        reason: The stop reason (`Result.stop_reason`).
        rule: What fired: a stop rule's name (`ac_beta`), a limit (`Budget.usd`,
            `ControllerConfig.max_samples`), the strategy's name, the overrunning endpoint or
            the error's type.
        value: The figure compared (confidence, samples, seconds, dollars spent), if any.
        threshold: What it was compared with, if any.
        dimension: For "budget" and "deadline": the limit that bound ("usd", "tokens",
            "samples", "seconds").
        detail: One line for people.
    """

    model_config = ConfigDict(frozen=True)

    reason: StopReason
    rule: str = ""
    value: float | None = None
    threshold: float | None = None
    dimension: Literal["usd", "tokens", "samples", "seconds"] | None = None
    detail: str = ""


class OverrunRecord(BaseModel):
    """A server that reported more than was reserved for one request (it stopped the call).

    Attributes:
        endpoint: The endpoint.
        reserved: The reserved worst case (prompt and completion tokens).
        reported: What the server reported.
        reserved_usd / reported_usd: The same in dollars (the booked cost is `reserved_usd`
            at most).
        reserved_samples / reported_samples: Completions asked for and returned.
        round: The round it happened in.
    """

    model_config = ConfigDict(frozen=True)

    endpoint: str
    reserved: Usage
    reported: Usage
    reserved_usd: float
    reported_usd: float
    reserved_samples: int
    reported_samples: int
    round: int = 0


class SampleRecord(BaseModel):
    """One completion as it appears on the receipt."""

    model_config = ConfigDict(frozen=True)

    text: str
    answer: str | None = None
    purpose: Literal["generate", "verify"] = "generate"
    round: int = 0
    finish_reason: str | None = None
    completion_tokens: int | None = None
    mean_logprob: float | None = None
    score: float | None = None
    endpoint: str = ""


class ChargeRecord(BaseModel):
    """One request's cost on the receipt.

    Attributes:
        usd / usage / samples: What was booked against the budget (at most the reservation).
        estimated: The server reported no usage (or failed after it may have generated): an
            upper bound was booked.
        overrun: The server reported more than was reserved; `reported` has what it said.
    """

    model_config = ConfigDict(frozen=True)

    endpoint: str
    status: Literal["ok", "cancelled", "failed"]
    usd: float
    usage: Usage
    samples: int
    estimated: bool = False
    overrun: bool = False
    reported: Usage | None = None
    round: int = 0


#: The kinds of trace events; each kind's `data` is the TypedDict of the same name below.
EventKind = Literal["decide", "send", "done", "cancel", "error", "refuse", "overrun", "stop"]


class Numbers(TypedDict):
    """The figures a decision read (in "decide" and "stop" events)."""

    samples: int
    votes: dict[str, int]
    confidence: float | None
    marginal_gain: float | None
    spent_usd: float
    remaining_usd: float | None
    remaining_tokens: int | None
    remaining_samples: int | None
    draws_left: int | None
    elapsed: float
    next_batch: int
    next_cost_usd: float | None


class DecideData(Numbers, total=False):
    """Kind "decide": a decision, with the figures it read.

    Action "continue" has calls, reserved_usd and note; action "stop" has reason and rule,
    and during="round" when the rule fired part-way through a round.
    """

    action: Literal["continue", "stop"]
    calls: int
    reserved_usd: float
    note: str
    reason: StopReason
    rule: str
    during: Literal["round"]


class SendData(TypedDict):
    """Kind "send": a request reserved and sent; its end has the same `request_id`.

    Attributes:
        request_id: The request's id within the call (1, 2, ...).
        model: The model the endpoint names (None: the endpoint names none, e.g. a function).
        provider: The provider id ("openai", "anthropic", ...; None when the endpoint has none).
        operation: "chat" (messages) or "text_completion" (a raw prompt).
        n / max_tokens / temperature / seed: As sent (temperature None: the server's default;
            seed None: none sent).
        usd / tokens / samples: What was reserved for it (its worst case).
    """

    endpoint: str
    purpose: str
    request_id: int
    model: str | None
    provider: str | None
    operation: Literal["chat", "text_completion"]
    n: int
    max_tokens: int
    temperature: float | None
    seed: int | None
    usd: float
    tokens: int
    samples: int


class DoneData(TypedDict):
    """Kind "done": a request answered.

    Attributes:
        model: The model the server said answered (None: it said none).
        tokens / usd: As booked; estimated when the usage was not reported (an upper bound).
        input_tokens / output_tokens: The server's reported usage (more than booked on an
            overrun); without reported usage, the booked upper bound (estimated).
        finish_reasons: Per completion, as the server said ("unknown" when it said none).
        answers: Per completion, the answer counted for it (None: no answer read).
    """

    endpoint: str
    purpose: str
    request_id: int
    model: str | None
    completions: int
    tokens: int
    usd: float
    estimated: bool
    input_tokens: int
    output_tokens: int
    finish_reasons: list[str]
    answers: list[str | None]


class _CancelData(TypedDict):
    endpoint: str
    purpose: str
    request_id: int
    usd: float
    estimated: bool
    input_tokens: int
    output_tokens: int


class CancelData(_CancelData, total=False):
    """Kind "cancel": a request the controller stopped (still charged; estimated: worst case).

    input_tokens / output_tokens are what was booked for it; why="cut by its watch" when a
    strategy's trace watch (e.g. `EarlyStop`) cut the stream, not the controller.
    """

    why: str


class _ErrorData(TypedDict):
    """Kind "error": a failed request or attempt; usd and tokens booked (estimated: its worst case)."""

    endpoint: str
    purpose: str
    request_id: int
    error: str
    message: str
    usd: float
    estimated: bool
    input_tokens: int
    output_tokens: int


class ErrorData(_ErrorData, total=False):
    """Kind "error": as `_ErrorData`, and retried=True for an attempt the endpoint then retried.

    A retried attempt nothing was billed for (an HTTP error status) books usd 0.
    """

    retried: bool


class RefuseData(TypedDict):
    """Kind "refuse": a request never sent, and the limit that refused it.

    limit: "usd", "tokens", "samples", "max_samples", or "account" (a retry not taken under
    shared accounts). request_id: the id of the request whose retry was refused, else an id of its own (that
    request has no "send").
    """

    endpoint: str
    purpose: str
    request_id: int
    limit: str
    why: str


class OverrunData(TypedDict):
    """Kind "overrun": a server reported more than was reserved (for request_id); the call stops."""

    endpoint: str
    request_id: int
    reserved_tokens: int
    reported_tokens: int
    reserved_usd: float
    reported_usd: float
    reserved_samples: int
    reported_samples: int


class StopData(Numbers):
    """Kind "stop": the call ends: its reason and what fired."""

    reason: StopReason
    rule: str


#: The `data` of each event kind.
EVENT_DATA: dict[str, type] = {
    "decide": DecideData,
    "send": SendData,
    "done": DoneData,
    "cancel": CancelData,
    "error": ErrorData,
    "refuse": RefuseData,
    "overrun": OverrunData,
    "stop": StopData,
}


class TraceEvent(BaseModel):
    """One decision or event, with the numbers behind it.

    `kind` is one of `EventKind`; `data` has the keys of that kind's TypedDict
    (`DecideData`, `SendData`, `DoneData`, `CancelData`, `ErrorData`, `RefuseData`, `OverrunData`,
    `StopData`; `EVENT_DATA` maps kind to type).
    """

    model_config = ConfigDict(frozen=True)

    t: float
    kind: EventKind
    round: int
    data: dict[str, Any] = Field(default_factory=dict)


class Result(BaseModel):
    """The answer to one `client.run` call and its receipt.

    Attributes:
        answer: The chosen, normalized answer (None if nothing usable came back).
        text: The full text of the chosen completion.
        confidence: The controller's confidence that the answer is what unlimited voting
            would give (voting strategies), or the strategy's own.
        strategy: Name of the strategy that ran.
        stop_reason: Why the call stopped: one `StopReason` (see `STOP_REASONS`).
        stop: What fired: the rule or limit, its value and threshold, the budget dimension.
        samples: Every completion, verifier calls included.
        votes: Votes per answer, leader first.
        usage: Tokens of every request, cancelled ones included.
        cost_usd: Dollars of every request, cancelled and failed ones included.
        elapsed_s: Wall-clock seconds.
        rounds: Batches / rounds run.
        charges: One line per request: what it cost and how it ended.
        overruns: Requests whose server reported more than was reserved.
        warnings: What the strategy did instead of what was asked, while still answering (a
            fallback taken: a weighted vote without weights, candidates no verifier could
            score); each is also emitted as an `AdaptiveWarning` and shown by `receipt()`.
        trace: Every decision with the numbers behind it.
        details: Strategy-specific figures.
    """

    model_config = ConfigDict(frozen=True)

    answer: str | None
    text: str | None = None
    confidence: float | None = None
    strategy: str = ""
    stop_reason: StopReason = "strategy_done"
    stop: StopRecord | None = None
    samples: list[SampleRecord] = Field(default_factory=list)
    votes: dict[str, int] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    rounds: int = 0
    charges: list[ChargeRecord] = Field(default_factory=list)
    overruns: list[OverrunRecord] = Field(default_factory=list)
    warnings: tuple[str, ...] = ()
    trace: list[TraceEvent] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def generated(self) -> int:
        """Completions generated (verifier calls excluded)."""
        return sum(1 for s in self.samples if s.purpose == "generate")

    @property
    def cancelled(self) -> int:
        """Requests the controller cancelled."""
        return sum(1 for c in self.charges if c.status == "cancelled")

    def receipt(self) -> str:
        """A short human-readable receipt."""
        conf = f"{self.confidence:.3f}" if self.confidence is not None else "-"
        fired = ""
        if self.stop is not None and self.stop.rule:
            fired = f" ({self.stop.rule}"
            if self.stop.value is not None and self.stop.threshold is not None:
                fired += f" {self.stop.value:.6g} vs {self.stop.threshold:.6g}"
            fired += ")"
        lines = [
            f"answer      {self.answer!r}  (confidence {conf})",
            f"strategy    {self.strategy}, stopped by {self.stop_reason}{fired} after {self.rounds} round(s)",
            f"samples     {self.generated} generated, {len(self.samples) - self.generated} verifier calls, "
            f"{self.cancelled} request(s) cancelled",
            f"tokens      {self.usage.prompt_tokens} prompt + {self.usage.completion_tokens} completion",
            f"cost        ${self.cost_usd:.6f} in {self.elapsed_s:.2f}s",
        ]
        if self.votes:
            top = ", ".join(f"{a!r}: {v}" for a, v in list(self.votes.items())[:5])
            lines.append(f"votes       {top}")
        refused = [e for e in self.trace if e.kind == "refuse"]
        if refused:
            lines.append(f"refused     {len(refused)} request(s): {refused[-1].data.get('why', '')}")
        estimated = [c for c in self.charges if c.estimated]
        if estimated:
            usd = sum(c.usd for c in estimated)
            lines.append(
                f"estimated   {len(estimated)} charge(s), ${usd:.6f}: usage not reported, upper bound booked"
            )
        for o in self.overruns:
            lines.append(
                f"overrun     {o.endpoint}: reported {o.reported.total_tokens} tokens / {o.reported_samples} "
                f"sample(s) (${o.reported_usd:.6f}), reserved {o.reserved.total_tokens} / "
                f"{o.reserved_samples} (${o.reserved_usd:.6f}); booked at most the reservation"
            )
        lines.extend(f"warning     {w}" for w in self.warnings)
        return "\n".join(lines)
