"""Self-consistency: sample several reasoning paths and vote on their final answers.

`SelfConsistency(n=16)` always draws n samples. `AdaptiveConsistency()` lets the controller
decide after every batch whether another batch pays: by default it stops when it is 99% sure
the leader is the answer unlimited voting would give (under the client's calibrated prior),
when one more sample is expected to change that by less than 0.1 point, or when the budget
cannot fit another sample.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from adaptive import (
    AnswerSpec,
    Completion,
    ConfigError,
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
        strategy: str = "self-consistency",
    ) -> None:
        self.task = task
        self.strategy = strategy
        self.unweighted = 0  # samples that came without what the weighting reads
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
        # A sample without what the weighting reads weighs 0, and is counted: finish says so.
        if self.weighting == "logprob":
            weight = c.logprob_weight()
            if weight is None:
                self.unweighted += 1
                return 0.0
            return weight
        if self.weighting == "score":
            if c.score is None:
                self.unweighted += 1
                return 0.0
            return max(0.0, c.score)
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

    def _fallen_back(self) -> bool:
        """Whether the weighted vote has nothing to weigh by and is the plain majority instead."""
        return self.weighting != "none" and bool(self.answers) and self.unweighted == len(self.answers)

    def _vote(self) -> tuple[str | None, dict[str, int]]:
        weighted = self.weighting != "none" and not self._fallen_back()
        vote = weighted_vote(self.answers, self.weights) if weighted else majority_vote(self.answers)
        t = vote.tally
        return vote.winner, {a: t.counts[a] for a in t.answers}

    def _weighting_report(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """`details` entries and warnings about samples the weighting could not read."""
        if self.weighting == "none":
            return {}, ()
        what = "logprobs" if self.weighting == "logprob" else "a score (Completion.score)"
        details: dict[str, Any] = {"weighting": self.weighting, "unweighted": self.unweighted}
        details["fallback"] = None
        if not self.unweighted:
            return details, ()
        endpoint = self.task.endpoint.name
        if self._fallen_back():
            details["fallback"] = f"majority: no sample came with {what}"
            message = (
                f"{self.strategy}: weighting={self.weighting!r} needs samples with {what}, but none of "
                f"the {len(self.answers)} from {endpoint} had any, so the vote fell back on plain "
                "majority: use an endpoint that returns them, or weighting='none'"
            )
        else:
            message = (
                f"{self.strategy}: {self.unweighted} of {len(self.answers)} samples from {endpoint} "
                f"came without {what} and weighed 0 in the weighting={self.weighting!r} vote"
            )
        return details, (message,)

    def evidence(self) -> Evidence:
        """Votes (first-seen order), abstentions and arrival history."""
        weighted = self.weighting != "none" and not self._fallen_back()
        return Evidence.tally(self.answers, self.weights if weighted else None)

    def finish(self, state: State) -> Final:
        """The vote's winner and the first sample that gave it."""
        winner, _ = self._vote()
        text = next((t for a, t in zip(self.answers, self.texts, strict=True) if a == winner), None)
        details, warnings = self._weighting_report()
        details.update(samples=len(self.answers), abstentions=sum(a is None for a in self.answers))
        return Final(answer=winner, text=text, details=details, warnings=warnings)


class _Voting(ValidatedModel):
    """Settings shared by the voting strategies (each adds how many samples it draws)."""

    answer: AnswerSpecField = Field(default_factory=AnswerSpec)
    weighting: Literal["none", "logprob", "score"] = "none"
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7))

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
            strategy=self.name,
        )

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        raise NotImplementedError


class SelfConsistency(_Voting):
    """Draw exactly `n` samples and vote (no early stopping: a stop rule is a `ConfigError`).

    Args:
        n: Samples per call.
        answer: How to read an answer from a sample (extractor + normalizer).
        weighting: "none" (majority), "logprob" (weight by exp(mean token logprob); asks the
            endpoint for logprobs) or "score" (weight by `Completion.score`). Samples that
            come without what the weighting reads weigh 0; when none has it, the vote is the
            plain majority, said by `details["fallback"]` and a warning on the result.
        sampling: Sampling parameters (temperature 0.7 by default: voting needs diversity).
    """

    n: int = Field(default=16, ge=1, le=1024)

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        return "self-consistency"

    def start(self, task: Task) -> VoteRun:
        """Begin one call: `n` samples that stop rules do not cut short (a budget still caps them)."""
        return self._run(task, self.n, stoppable=False)

    def default_stop(self) -> StopRule | None:
        """None: all n samples are drawn (a budget still caps them)."""
        return None

    def check_stop_rule(self, rule: StopRule) -> None:
        """Refuse every stop rule: a fixed count never stops early, the rule would be ignored.

        Raises:
            ConfigError: Always; the message names `AdaptiveConsistency`, which honours it.
        """
        raise ConfigError(
            f"SelfConsistency(n={self.n}) always draws n samples, so the stop rule {rule!r} could "
            f"never end it early and would be ignored: use AdaptiveConsistency(max_samples={self.n}) "
            "with that stop rule to stop early, or drop the stop rule (a budget still caps "
            "SelfConsistency)"
        )


class AdaptiveConsistency(_Voting):
    """Sample in batches and let the controller decide when to stop.

    Args:
        max_samples: Most samples one call may draw.
        confidence: Stop once the controller is this sure the leader is the answer
            unlimited voting would give.
        min_gain: Stop once another sample is expected to raise that probability by less.
        value_usd: Optional worth of a correct answer: stop when the next batch's expected
            value is below its worst-case cost.
        (other arguments as `SelfConsistency`; there is no `n`: passing it is a
        `ConfigError` that points to `max_samples`)
    """

    max_samples: int = Field(default=40, ge=1, le=1024)
    confidence: float = Field(default=0.99, gt=0, lt=1)
    min_gain: float = Field(default=0.001, ge=0, le=1)
    value_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    def __init__(self, /, **data: Any) -> None:
        # `n` would otherwise be refused as an unknown field; say what to use instead.
        if "n" in data:
            n = data["n"]
            raise ConfigError(
                f"AdaptiveConsistency does not take n (got n={n!r}): it draws up to max_samples "
                f"samples and stops when its stop rule says so; use max_samples={n!r} for at most "
                f"that many, or SelfConsistency(n={n!r}) for exactly that many"
            )
        super().__init__(**data)

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        return "adaptive"

    def check_stop_rule(self, rule: StopRule) -> None:
        """Accept any rule, unless settings that only shape the default rule were also given.

        Raises:
            ConfigError: `confidence`, `min_gain` or `value_usd` was set: they configure the
                default stop rule, which the given rule replaces, so they would be ignored.
        """
        dead = sorted(self.model_fields_set & {"confidence", "min_gain", "value_usd"})
        if dead:
            raise ConfigError(
                f"AdaptiveConsistency's {', '.join(dead)} only shape its default stop rule, which "
                f"the stop rule {rule!r} replaces, so they would be ignored: drop them, or put "
                "them in the rule (e.g. stop=confident(0.9) | vote_margin(3))"
            )

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
