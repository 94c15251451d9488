"""What a call returns: the answer and its receipt (samples, usage, dollars, stop reason, trace)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._models import Usage

__all__ = ["ChargeRecord", "Result", "SampleRecord", "TraceEvent"]


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
    """One request's cost on the receipt."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    status: Literal["ok", "cancelled", "failed"]
    usd: float
    usage: Usage
    samples: int
    estimated: bool = False
    overrun: bool = False
    round: int = 0


class TraceEvent(BaseModel):
    """One decision or event, with the numbers behind it.

    Kinds: "decide" (continue, with the plan's note and the calls sent, or stop; with the
    confidence, marginal gain, spend and what remains), "done", "cancel", "error", "refuse"
    (a request the budget could not fit), "stop". `adaptive._events` lists each kind's data.
    """

    model_config = ConfigDict(frozen=True)

    t: float
    kind: str
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
        stop_reason: Why the call stopped: a stop rule's name, "strategy_done",
            "budget" (nothing more fitted), "deadline", or "error".
        samples: Every completion, verifier calls included.
        votes: Votes per answer, leader first.
        usage: Tokens of every request, cancelled ones included.
        cost_usd: Dollars of every request, cancelled and failed ones included.
        elapsed_s: Wall-clock seconds.
        rounds: Batches / rounds run.
        charges: One line per request: what it cost and how it ended.
        trace: Every decision with the numbers behind it.
        details: Strategy-specific figures.
    """

    model_config = ConfigDict(frozen=True)

    answer: str | None
    text: str | None = None
    confidence: float | None = None
    strategy: str = ""
    stop_reason: str = ""
    samples: list[SampleRecord] = Field(default_factory=list)
    votes: dict[str, int] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    rounds: int = 0
    charges: list[ChargeRecord] = Field(default_factory=list)
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
        lines = [
            f"answer      {self.answer!r}  (confidence {conf})",
            f"strategy    {self.strategy}, stopped by {self.stop_reason} after {self.rounds} round(s)",
            f"samples     {self.generated} generated, {len(self.samples) - self.generated} verifier calls, "
            f"{self.cancelled} request(s) cancelled",
            f"tokens      {self.usage.prompt_tokens} prompt + {self.usage.completion_tokens} completion",
            f"cost        ${self.cost_usd:.6f} in {self.elapsed_s:.2f}s",
        ]
        if self.votes:
            top = ", ".join(f"{a!r}: {v}" for a, v in list(self.votes.items())[:5])
            lines.append(f"votes       {top}")
        return "\n".join(lines)
