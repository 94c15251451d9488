"""Self-consistency: sample several reasoning paths and vote on their final answers.

`SelfConsistency(n=16)` always draws n samples. `AdaptiveConsistency()` lets the controller
decide after every batch whether another batch pays: by default it stops when it is 99% sure
the leader is the answer unlimited voting would give (under the client's calibrated prior),
when one more sample is expected to change that by less than 0.1 point, or when the budget
cannot fit another sample.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adaptive import (
    AnswerSpec,
    Completion,
    Evidence,
    Final,
    Outcome,
    Plan,
    Sampling,
    State,
    StopRule,
    Task,
    ValidatedModel,
    budget_exhausted,
    confident,
    logprob_weight,
    low_marginal_gain,
    majority_vote,
    weighted_vote,
)

from ._fields import AnswerSpecField

__all__ = ["AdaptiveConsistency", "SelfConsistency", "VoteRun"]


class VoteRun:
    """One call of a voting strategy: collects answers, reports votes, picks the winner."""

    def __init__(
        self,
        task: Task,
        *,
        target: int,
        sampling: Sampling,
        answer: AnswerSpec,
        weighting: str,
        stoppable: bool,
    ) -> None:
        self.task = task
        self.target = target
        self.sampling = sampling
        self.spec = answer
        self.weighting = weighting
        self.stoppable = stoppable
        self.answers: list[str | None] = []
        self.weights: list[float] = []
        self.texts: list[str] = []

    def answer_of(self, c: Completion) -> str | None:
        """The normalized answer this run counts for `c` (pre-extracted ones normalized)."""
        return self.spec.read(c.text, c.answer)

    def _weight(self, c: Completion) -> float:
        if self.weighting == "logprob":
            mean = c.mean_logprob()
            return logprob_weight(mean) if mean is not None else 0.0
        if self.weighting == "score":
            return max(0.0, c.score) if c.score is not None else 0.0
        return 1.0

    def plan(self, state: State) -> Plan | None:
        """More samples until the target (the controller sizes and may stop early)."""
        left = self.target - len(self.answers)
        if left <= 0:
            return None
        return Plan(sample=self.task.request(self.sampling), max_batch=left, stoppable=self.stoppable)

    def observe(self, outcome: Outcome) -> None:
        """Record the answers of a generation response."""
        if outcome.response is None or outcome.call.purpose != "generate":
            return
        for c in outcome.response.completions:
            self.answers.append(self.answer_of(c))
            self.weights.append(self._weight(c))
            self.texts.append(c.text)

    def _vote(self) -> tuple[str | None, dict[str, int]]:
        vote = (
            majority_vote(self.answers)
            if self.weighting == "none"
            else weighted_vote(self.answers, self.weights)
        )
        t = vote.tally
        return vote.winner, {a: t.counts[a] for a in t.answers}

    def evidence(self) -> Evidence:
        """Votes (first-seen order), abstentions and arrival history."""
        return Evidence.tally(self.answers, self.weights if self.weighting != "none" else None)

    def finish(self, state: State) -> Final:
        """The vote's winner and the first sample that gave it."""
        winner, _ = self._vote()
        text = next((t for a, t in zip(self.answers, self.texts, strict=True) if a == winner), None)
        return Final(
            answer=winner,
            text=text,
            details={"samples": len(self.answers), "abstentions": sum(a is None for a in self.answers)},
        )


class SelfConsistency(ValidatedModel):
    """Draw exactly `n` samples and vote (no early stopping).

    Args:
        n: Samples per call.
        answer: How to read an answer from a sample (extractor + normalizer).
        weighting: "none" (majority), "logprob" (weight by exp(mean token logprob); asks the
            endpoint for logprobs) or "score" (weight by `Completion.score`).
        sampling: Sampling parameters (temperature 0.7 by default: voting needs diversity).
    """

    n: int = Field(default=16, ge=1, le=1024)
    answer: AnswerSpecField = Field(default_factory=AnswerSpec)
    weighting: Literal["none", "logprob", "score"] = "none"
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7))

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        return "self-consistency"

    def _sampling(self) -> Sampling:
        if self.weighting == "logprob" and not self.sampling.logprobs:
            return self.sampling.model_copy(update={"logprobs": True})
        return self.sampling

    def _run(self, task: Task, target: int, *, stoppable: bool) -> VoteRun:
        return VoteRun(
            task,
            target=target,
            sampling=self._sampling(),
            answer=self.answer,
            weighting=self.weighting,
            stoppable=stoppable,
        )

    def start(self, task: Task) -> VoteRun:
        """Begin one call: `n` samples that stop rules do not cut short (a budget still caps them)."""
        return self._run(task, self.n, stoppable=False)

    def default_stop(self) -> StopRule | None:
        """None: all n samples are drawn (a budget still caps them)."""
        return None


class AdaptiveConsistency(SelfConsistency):
    """Sample in batches and let the controller decide when to stop.

    Args:
        max_samples: Most samples one call may draw.
        confidence: Stop once the controller is this sure the leader is the answer
            unlimited voting would give.
        min_gain: Stop once another sample is expected to raise that probability by less.
        value_usd: Optional worth of a correct answer: stop when the next batch's expected
            value is below its worst-case cost.
        (other arguments as `SelfConsistency`)
    """

    max_samples: int = Field(default=40, ge=1, le=1024)
    confidence: float = Field(default=0.99, gt=0, lt=1)
    min_gain: float = Field(default=0.001, ge=0, le=1)
    value_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        return "adaptive"

    def start(self, task: Task) -> VoteRun:
        """Begin one call: up to `max_samples` samples, the controller may stop between batches."""
        return self._run(task, self.max_samples, stoppable=True)

    def default_stop(self) -> StopRule | None:
        """confident(confidence) | low_marginal_gain(min_gain, value_usd) | budget_exhausted()."""
        return (
            confident(self.confidence)
            | low_marginal_gain(self.min_gain, value_usd=self.value_usd)
            | budget_exhausted()
        )
