"""Self-consistency: sample several reasoning paths and vote on their final answers.

`SelfConsistency(n=16)` always draws n samples. `AdaptiveConsistency()` lets the controller
decide after every batch whether another batch pays: by default it stops when it is 99% sure
the leader is the answer unlimited voting would give (under the client's calibrated prior),
when one more sample is expected to change that by less than 0.1 point, or when the budget
cannot fit another sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from adaptive import (
    AnswerSpec,
    Completion,
    ConfigError,
    Evidence,
    Final,
    Outcome,
    Plan,
    Request,
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
from adaptive.confidence import ConfidenceMonitor, TokenLogprob, TraceConfidence, threshold_from, top_share

from ._fields import AnswerSpecField

__all__ = ["AdaptiveConsistency", "EarlyStop", "SelfConsistency", "VoteRun"]

Latency = Literal["fast", "balanced", "cheap"]


class EarlyStop(ValidatedModel):
    """Cut streamed traces whose confidence falls too low (DeepConf online).

    The first `warmup` samples of a call run to the end; the threshold is the `1 - keep`
    quantile of their lowest group confidence (mean token logprob over `window` tokens).
    Every later sample is cut as soon as a full window of its tokens falls below it: it is
    charged what was streamed until then and does not vote. Needs an endpoint that streams
    logprobs (`OpenAIChat(..., stream=True)`) and requests of one sample each
    (`ControllerConfig(batch_as_n=False)`, or an endpoint without `n`); otherwise nothing
    can be cut, and a warning on the result says why.

    Args:
        warmup: Samples that run in full and set the threshold.
        keep: Share of warmup-like traces expected to pass (0.9: DeepConf-high; 0.1: -low).
        window: Group size in tokens (DeepConf: 2048; smaller for short traces).
    """

    warmup: int = Field(default=4, ge=1, le=1024)
    keep: float = Field(default=0.9, gt=0, le=1, allow_inf_nan=False)
    window: int = Field(default=2048, ge=1, le=1_000_000)


class _Cut:
    """The watch of one streamed sample (see `EarlyStop`)."""

    def __init__(self, threshold: float, window: int, n: int) -> None:
        self.n = n
        self.monitors: dict[int, ConfidenceMonitor] = {}
        self.threshold, self.window = threshold, window
        self.streamed = False

    def tokens(self, index: int, logprobs: Sequence[TokenLogprob]) -> bool:
        self.streamed = True
        m = self.monitors.get(index)
        if m is None:
            m = self.monitors[index] = ConfidenceMonitor(threshold=self.threshold, window=self.window)
        m.push(logprobs)
        # One request is cut only when every trace in it is (the others would be lost too).
        return len(self.monitors) >= self.n and all(x.cut_at is not None for x in self.monitors.values())

    @property
    def cut(self) -> bool:
        return bool(self.monitors) and all(x.cut_at is not None for x in self.monitors.values())


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
        trace_confidence: TraceConfidence | None = None,
        keep_top: float | None = None,
        request_changes: dict[str, Any] | None = None,
        early_stop: EarlyStop | None = None,
        latency: Latency | None = None,
    ) -> None:
        self.task = task
        self.latency = latency
        self.strategy = strategy
        self.unweighted = 0  # samples that came without what the weighting reads
        self.target = target
        self.sampling = sampling
        self.spec = answer
        self.weighting = weighting
        self.stoppable = stoppable
        self.measure = trace_confidence or TraceConfidence()
        self.keep_top = keep_top
        self.changes = dict(request_changes or {})
        self.early_stop = early_stop
        self.threshold: float | None = None
        self.warm: list[float | None] = []  # the warmup samples' lowest group confidences
        self.watches: list[_Cut] = []
        self.unwatched = 0  # requests sent after the warmup that could not be watched (n > 1)
        self.answers: list[str | None] = []
        self.weights: list[float] = []
        self.confidences: list[float | None] = []  # per sample, when logprobs came
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
        if self.weighting == "confidence":
            conf = self.confidences[-1]
            if conf is None:
                self.unweighted += 1
                return 0.0
            return self.measure.weight(conf)
        if self.weighting in ("shorter", "longer"):
            # A weighted vote ranks by summed weight, so the scale of 1/length does not matter.
            tokens = c.completion_tokens or (len(c.logprobs) if c.logprobs else None)
            if not tokens:
                self.unweighted += 1
                return 0.0
            return 1.0 / tokens if self.weighting == "shorter" else float(tokens)
        return 1.0

    def plan(self, state: State) -> Plan | None:
        """More samples until the target (the controller sizes and may stop early)."""
        left = self.target - len(self.answers) - self._cut_count()
        if left <= 0:
            return None
        remaining = left
        es = self.early_stop
        if es is not None and self.threshold is None and len(self.warm) < es.warmup:
            # The warmup first, on its own: later samples are watched against its threshold.
            left = min(left, es.warmup - len(self.warm))
        return Plan(
            sample=self.task.request(self.sampling, **self.changes),
            max_batch=left,
            remaining=remaining,
            stoppable=self.stoppable,
            watch=self._watch if self.early_stop is not None else None,
            latency=self.latency,
        )

    def _cut_count(self) -> int:
        return sum(w.cut for w in self.watches)

    def _watch(self, request: Request) -> _Cut | None:
        """A watch for a request sent once the warmup has set the threshold (else None)."""
        if self.threshold is None or self.early_stop is None:
            return None  # a warmup sample: it runs to the end
        if request.n > 1:
            self.unwatched += 1
        watch = _Cut(self.threshold, self.early_stop.window, request.n)
        self.watches.append(watch)
        return watch

    def _warm_up(self, c: Completion) -> None:
        """Set the threshold from the first `warmup` samples (their lowest group confidence)."""
        es = self.early_stop
        if es is None or self.threshold is not None:
            return
        lowest = TraceConfidence(measure="lowest", window=es.window)
        self.warm.append(lowest.of(c))
        known = [x for x in self.warm if x is not None]
        if len(self.warm) >= es.warmup and known:
            self.threshold = threshold_from(known, es.keep)

    def observe(self, outcome: Outcome) -> None:
        """Record the answers of a generation response."""
        if outcome.response is None or outcome.call.purpose != "generate":
            return
        for c in outcome.response.completions:
            # Read first, so a completion the measure refuses leaves the lists in step.
            answer = self.answer_of(c)
            self.confidences.append(self.measure.of(c) if self._reads_confidence() else None)
            self.answers.append(answer)
            self.weights.append(self._weight(c))
            self.texts.append(c.text)
            self._warm_up(c)

    def _reads_confidence(self) -> bool:
        return self.weighting == "confidence" or self.keep_top is not None

    def _kept(self) -> list[bool]:
        """Which samples vote: all, or with `keep_top` the most confident share of them.

        When no sample came with logprobs there is nothing to rank by and all vote (the
        result says so: see `_filter_report`).
        """
        if self.keep_top is None or all(c is None for c in self.confidences):
            return [True] * len(self.answers)
        return top_share(self.confidences, self.keep_top)

    def _voters(self) -> tuple[list[str | None], list[float]]:
        kept = self._kept()
        answers = [a for a, k in zip(self.answers, kept, strict=True) if k]
        weights = [w for w, k in zip(self.weights, kept, strict=True) if k]
        return answers, weights

    def _fallen_back(self) -> bool:
        """Whether the weighted vote has nothing to weigh by and is the plain majority instead."""
        return self.weighting != "none" and bool(self.answers) and self.unweighted == len(self.answers)

    def _vote(self) -> tuple[str | None, dict[str, int]]:
        weighted = self.weighting != "none" and not self._fallen_back()
        answers, weights = self._voters()
        vote = weighted_vote(answers, weights) if weighted else majority_vote(answers)
        t = vote.tally
        return vote.winner, {a: t.counts[a] for a in t.answers}

    def _weighting_report(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """`details` entries and warnings about samples the weighting could not read."""
        if self.weighting == "none":
            return {}, ()
        what = {
            "logprob": "logprobs",
            "confidence": "logprobs",
            "shorter": "a token count (Completion.completion_tokens)",
            "longer": "a token count (Completion.completion_tokens)",
        }.get(self.weighting, "a score (Completion.score)")
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

    def _filter_report(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """`details` entries and warnings about the `keep_top` filter."""
        if self.keep_top is None:
            return {}, ()
        kept = self._kept()
        missing = sum(c is None for c in self.confidences)
        details: dict[str, Any] = {
            "keep_top": self.keep_top,
            "kept": sum(kept),
            "dropped": [i for i, k in enumerate(kept) if not k],
            "confidences": list(self.confidences),
            "filter_fallback": None,
        }
        if not missing:
            return details, ()
        endpoint = self.task.endpoint.name
        if missing == len(self.confidences):
            details["filter_fallback"] = "all voted: no sample came with logprobs"
            message = (
                f"{self.strategy}: keep_top={self.keep_top} needs samples with logprobs, but none of "
                f"the {missing} from {endpoint} had any, so every sample voted (no filter): use an "
                "endpoint that returns logprobs (OpenAI's reasoning models refuse them), or drop keep_top"
            )
        else:
            message = (
                f"{self.strategy}: {missing} of {len(self.confidences)} samples from {endpoint} came "
                f"without logprobs and were left out of the keep_top={self.keep_top} vote"
            )
        return details, (message,)

    def _early_stop_report(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """`details["early_stop"]` and warnings when traces could not be watched or cut."""
        es = self.early_stop
        if es is None:
            return {}, ()
        cut = [w for w in self.watches if w.cut]
        details: dict[str, Any] = {
            "early_stop": {
                "threshold": self.threshold,
                "warmup": len(self.warm),
                "watched": len(self.watches),
                "cut": len(cut),
                "cut_traces": [
                    {"tokens": m.cut_at, "lowest": m.lowest} for w in cut for m in w.monitors.values()
                ],
            }
        }
        endpoint = self.task.endpoint.name
        warnings: list[str] = []
        if self.warm and self.threshold is None and len(self.warm) >= es.warmup:
            warnings.append(
                f"{self.strategy}: early_stop needs logprobs to set its threshold, but none of the "
                f"{len(self.warm)} warmup samples from {endpoint} had any, so no trace was cut: use an "
                "endpoint that returns logprobs (OpenAI's reasoning models refuse them), or drop early_stop"
            )
        if self.watches and not any(w.streamed for w in self.watches):
            warnings.append(
                f"{self.strategy}: early_stop watched {len(self.watches)} samples but {endpoint} streamed "
                "no logprobs for any, so no trace could be cut: use a streaming endpoint "
                "(e.g. OpenAIChat(..., stream=True)) that returns logprobs, or drop early_stop"
            )
        if self.unwatched:
            warnings.append(
                f"{self.strategy}: {self.unwatched} requests were sent with n > 1, where early_stop can "
                "cut a trace only once every trace of the request falls below the threshold: use "
                "ControllerConfig(batch_as_n=False) to watch each sample on its own"
            )
        return details, tuple(warnings)

    def evidence(self) -> Evidence:
        """Votes (first-seen order), abstentions and arrival history of the samples that vote."""
        weighted = self.weighting != "none" and not self._fallen_back()
        answers, weights = self._voters()
        return Evidence.tally(answers, weights if weighted else None, samples=len(self.answers))

    def finish(self, state: State) -> Final:
        """The vote's winner and the first sample that gave it."""
        winner, _ = self._vote()
        text = next((t for a, t in zip(self.answers, self.texts, strict=True) if a == winner), None)
        details, warnings = self._weighting_report()
        filtered, more = self._filter_report()
        details.update(filtered)
        stopped, early = self._early_stop_report()
        details.update(stopped)
        details.update(samples=len(self.answers), abstentions=sum(a is None for a in self.answers))
        return Final(answer=winner, text=text, details=details, warnings=warnings + more + early)


class _Voting(ValidatedModel):
    """Settings shared by the voting strategies (each adds how many samples it draws)."""

    answer: AnswerSpecField = Field(default_factory=AnswerSpec)
    weighting: Literal["none", "logprob", "score", "confidence", "shorter", "longer"] = "none"
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7))
    trace_confidence: TraceConfidence = Field(default_factory=TraceConfidence)
    keep_top: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    early_stop: EarlyStop | None = None

    @model_validator(mode="after")
    def _confidence_is_used(self) -> _Voting:
        # A confidence measure that nothing reads would be a setting silently ignored.
        if "trace_confidence" in self.model_fields_set and not self._reads_confidence():
            raise ValueError(
                "trace_confidence only applies with weighting='confidence' or keep_top=...: "
                "set one of them, or drop trace_confidence"
            )
        return self

    def _reads_confidence(self) -> bool:
        return self.weighting == "confidence" or self.keep_top is not None

    def _sampling(self) -> Sampling:
        wants = self.weighting == "logprob" or self._reads_confidence() or self.early_stop is not None
        if wants and not self.sampling.logprobs:
            return self.sampling.model_copy(update={"logprobs": True})
        return self.sampling

    def _changes(self) -> dict[str, Any]:
        # DeepConf's own token confidence reads the alternatives: ask for them.
        if self._reads_confidence() and self.trace_confidence.source == "top":
            return {"top_logprobs": 5}
        return {}

    def _run(self, task: Task, target: int, *, stoppable: bool, latency: Latency | None = None) -> VoteRun:
        return VoteRun(
            task,
            target=target,
            sampling=self._sampling(),
            answer=self.answer,
            weighting=self.weighting,
            stoppable=stoppable,
            strategy=self.name,
            trace_confidence=self.trace_confidence,
            keep_top=self.keep_top,
            request_changes=self._changes(),
            early_stop=self.early_stop,
            latency=latency,
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
            endpoint for logprobs), "confidence" (weight by exp of the trace's DeepConf-style
            confidence, see `trace_confidence`; asks for logprobs), "shorter" / "longer"
            (weight by 1 / completion tokens, or by completion tokens: sample length as
            evidence, either way round) or "score" (weight by `Completion.score`). Samples
            that come without what the weighting reads weigh 0; when none has it, the vote
            is the plain majority, said by `details["fallback"]` and a warning on the result.
        trace_confidence: How a trace's confidence is computed from its token logprobs
            (`adaptive.confidence.TraceConfidence`: lowest / bottom-10% / tail group
            confidence over a sliding window). Only with weighting="confidence" or keep_top.
        keep_top: Only the most confident share of the samples votes (DeepConf's filter:
            0.1 keeps the top 10%, at least one sample); asks for logprobs. Samples without
            logprobs never vote while any has them; when none has them all vote. Either way
            a warning on the result says so; `details` lists the confidences and the
            dropped samples.
        early_stop: Cut streamed samples whose running confidence falls below a threshold
            set by the call's first samples (`EarlyStop`; DeepConf online); asks for logprobs.
            Cut samples are charged what was streamed and do not vote; `details["early_stop"]`
            lists them.
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
        min_gain: Stop once another sample is expected to raise that probability by less
            (`ControllerConfig.gain_target` says which; with "accuracy", whose gains are
            smaller, about 0.0002 was measured to keep the same accuracy floors).
        value_usd: Optional worth of a correct answer: stop when the next batch's expected
            value is below its expected cost (this call's mean sample length at the price;
            the worst case before the first sample).
        latency: Rounds versus dollars. "cheap": every batch is the fewest samples that could
            let the rule stop (fewest samples; a split vote takes several rounds);
            "balanced" (default): later batches are sized for the votes splitting as so far,
            with a margin (97% of calls stop within two rounds, see the README's
            "Latency versus dollars"); "fast": the first batch is twice the
            cheap one, as single requests, topped up while the round runs (to the cap at
            once when no sample is back by the median of this endpoint's recent waits for
            a first one: slow samples are a hard question's) and cancelled as soon as the
            rule stops (one round; cancelled samples are charged what they
            used: on a parallel batch most of a sample, and the worst case on an endpoint
            that does not stream: use `OpenAIChat(..., stream=True)`). With a `seconds`
            budget a batch that is the last to fit the deadline asks for all the rule may need.
        (other arguments as `SelfConsistency`; there is no `n`: passing it is a
        `ConfigError` that points to `max_samples`)
    """

    max_samples: int = Field(default=40, ge=1, le=1024)
    confidence: float = Field(default=0.99, gt=0, lt=1)
    min_gain: float = Field(default=0.001, ge=0, le=1)
    value_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    latency: Latency = "balanced"

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
        return self._run(task, self.max_samples, stoppable=True, latency=self.latency)

    def default_stop(self) -> StopRule | None:
        """confident(confidence) | low_marginal_gain(min_gain, value_usd) | budget_exhausted()."""
        return (
            confident(self.confidence)
            | low_marginal_gain(self.min_gain, value_usd=self.value_usd)
            | budget_exhausted()
        )
