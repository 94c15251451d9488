"""The strategy contract: strategies decide WHAT to ask next and never send anything.

A strategy is an immutable, validated config (`Strategy`) whose `start(task)` returns a
`StrategyRun` holding one call's state. The controller asks the run for a `Plan`, sends what
the plan asks for (under the budget), hands every `Outcome` back with `observe`, and finally
asks `finish` for the answer::

    run = strategy.start(task)
    while (plan := run.plan(state)) is not None:    # stop rules are consulted here
        ... the controller sends plan.calls / plan.sample and calls run.observe(outcome) ...
    final = run.finish(state)

`Plan.sample` asks for "more samples of this request" and lets the controller size the batch;
`Plan.calls` asks for exactly these calls (beam expansions, verifier calls).

A run also says, with `answer_of(completion)`, which answer it counted for a generated sample:
the receipt shows it beside every generated sample. A run that reads no answers returns
`completion.answer` (what the endpoint extracted, if anything).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import Field

from ._answer_spec import AnswerSpec
from ._exceptions import AdaptiveWarning, ConfigError
from ._latency import Latency
from ._ledger import Charge
from ._models import Completion, Message, Request, Response, TokenLogprob, ValidatedModel
from ._prices import Price
from ._registry import Registry
from ._state import State
from ._stop import StopRule
from .endpoints._base import Endpoint

__all__ = [
    "STRATEGIES",
    "Call",
    "Evidence",
    "Final",
    "Outcome",
    "Plan",
    "Sampling",
    "SingleSample",
    "Strategy",
    "StrategyRun",
    "Task",
    "TraceWatch",
    "register_strategy",
    "strategy_from_config",
    "strategy_names",
]


class Sampling(ValidatedModel):
    """Sampling parameters a strategy uses for its generation requests."""

    max_tokens: int = Field(default=1024, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    stop: tuple[str, ...] | None = None
    logprobs: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """What one `client.run` call is about.

    Attributes:
        messages: The conversation to answer.
        question: The text of the last user message (for verifiers and judges).
        endpoint: The client's generation endpoint.
        seed: Base seed for reproducible sampling (None: unseeded).
        sampling: Call-level overrides of sampling parameters (None fields: strategy's own).
        price: The price the call is charged at for `endpoint` (the call's override, else the
            endpoint's own), for strategies that plan around worst-case costs.
    """

    messages: tuple[Message, ...]
    question: str
    endpoint: Endpoint
    seed: int | None = None
    sampling: Sampling | None = None
    price: Price | None = None

    def worst_case(self, calls: Iterable[Call]) -> tuple[int, int, int]:
        """(picodollars, tokens, samples) that `calls` may cost at most, by the ledger's bound.

        A call without an endpoint goes to this task's endpoint at this call's price.
        """
        from ._costing import calls_worst_case

        return calls_worst_case(calls, self.endpoint, default_price=self.price)

    @staticmethod
    def candidate_bytes(max_tokens: int, prefix: str = "") -> int:
        """The size, in UTF-8 bytes, assumed for a candidate not yet generated.

        `prefix` plus up to `max_tokens` tokens: what a placeholder is given to bound the cost
        of scoring a candidate before it exists (see `affordable`).
        """
        from ._costing import candidate_bytes

        return candidate_bytes(max_tokens, prefix)

    def affordable(self, state: State, work: Iterable[tuple[Call, Sequence[Call]]]) -> int | None:
        """How many times `work` fits in what `state` says is left of the budget.

        Args:
            state: The call's state (what remains of each limit).
            work: Pairs of a call and the follow-up calls each of its completions will need
                (e.g. the verifier calls that score one candidate), bounded as the ledger
                bounds them; plan with this to hold budget back for scoring what you generate.

        Returns:
            The count that fits (0: not even once), or None when no limit binds.
        """
        from ._costing import affordable, work_worst_case

        return affordable(state, *work_worst_case(work, self.endpoint, default_price=self.price))

    def request(self, sampling: Sampling, **changes: Any) -> Request:
        """A chat request for this task with the strategy's sampling, call overrides applied."""
        params = sampling.model_dump()
        if self.sampling is not None:
            params.update(self.sampling.model_dump(exclude_unset=True))
        params.update(changes)
        if "messages" not in params and "prompt" not in params:
            params["messages"] = self.messages
        return Request(**params)


@runtime_checkable
class TraceWatch(Protocol):
    """Watches one streamed request's tokens as they arrive and says when to cut it.

    Given by a strategy through `Plan.watch`. The controller cancels the request once
    `tokens` returns True; it is charged what was streamed until then (its outcome is
    `cancelled`, with no response). Only a streaming endpoint that returns logprobs ever
    calls it (`OpenAIChat(..., stream=True)` with `logprobs`).
    """

    def tokens(self, index: int, logprobs: Sequence[TokenLogprob]) -> bool:
        """Take in tokens that arrived for choice `index`; True: cut the request now."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One request a plan asks for.

    Attributes:
        request: The request to send.
        endpoint: Where to send it; None means the client's endpoint.
        purpose: "generate" (a sample) or "verify" (a verifier / judge call).
        tag: The strategy's own bookkeeping (beam id, candidate index...).
        watch: Watches the request's streamed tokens and may cut it (see `TraceWatch`).
    """

    request: Request
    endpoint: Endpoint | None = None
    purpose: Literal["generate", "verify"] = "generate"
    tag: Any = None
    watch: TraceWatch | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What a strategy wants next.

    Exact `calls`, or more samples of `sample` (batch sized by the controller between
    `min_batch` and `max_batch`), or both.

    Attributes:
        stoppable: Whether stop rules may end the call before / during this plan. Steps that
            must complete (scoring the candidates already paid for) set it False.
        note: A word for the trace.
        watch: For `sample`: called with each request sent for it, returns a `TraceWatch`
            for that request (or None: not watched), so a trace can be cut while streamed.
        latency: For `sample` in a stoppable plan: how the controller trades rounds for
            samples. "cheap" (or None): each batch is the fewest samples that could let the
            rules stop; "balanced": later batches are sized for the votes splitting as so
            far (1.5x the expected case); "fast": twice the cheap batch first, then
            the cap, as single requests topped up in the round (to the cap when no sample
            is back by this endpoint's usual wait for a first one) and cancelled as soon as
            the rules stop (see `adaptive._latency`).
        singles: For `sample`: send the batch as single requests even where the endpoint
            does `n`, so that each sample is acted on (followed up, stopped at) as it arrives
            (each request bills its own prompt).
        remaining: For `sample`: the most samples this run may still ask for in all rounds
            (None: the strategy sets no bound). The controller's marginal gain is measured
            against the majority once these are in (`ControllerConfig.gain_target`).
    """

    calls: tuple[Call, ...] = ()
    sample: Request | None = None
    min_batch: int = 1
    max_batch: int | None = None
    stoppable: bool = True
    note: str = ""
    watch: Callable[[Request], TraceWatch | None] | None = None
    latency: Latency | None = None
    singles: bool = False
    remaining: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What came back for one call: a response, or an error; and what it cost."""

    call: Call
    response: Response | None
    charge: Charge
    error: BaseException | None = None
    round: int = 0

    @property
    def cancelled(self) -> bool:
        """Whether the controller stopped this call before it finished."""
        return self.charge.status == "cancelled"


@dataclasses.dataclass(frozen=True, slots=True)
class Evidence:
    """What a run has learned so far, in the form stop rules read (see `State`)."""

    votes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    abstentions: int = 0
    history: tuple[str | None, ...] = ()
    weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    scores: tuple[float, ...] = ()
    samples: int = 0

    @classmethod
    def tally(
        cls,
        answers: Sequence[str | None],
        weights: Sequence[float | None] | None = None,
        *,
        scores: Sequence[float] = (),
        samples: int | None = None,
    ) -> Evidence:
        """Evidence from answers in arrival order (None abstains).

        Args:
            answers: One answer per sample or candidate.
            weights: Optional weight per answer (None: that answer adds no weight).
            scores: Verifier scores so far.
            samples: Completions generated (default: one per answer).
        """
        votes: dict[str, int] = {}
        summed: dict[str, float] = {}
        for i, a in enumerate(answers):
            if a is None:
                continue
            votes[a] = votes.get(a, 0) + 1
            w = weights[i] if weights is not None else None
            if w is not None:
                summed[a] = summed.get(a, 0.0) + w
        return cls(
            votes=votes,
            abstentions=sum(a is None for a in answers),
            history=tuple(answers),
            weights=summed,
            scores=tuple(scores),
            samples=len(answers) if samples is None else samples,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Final:
    """A run's answer.

    Attributes:
        answer: The normalized answer (None when every sample abstained).
        text: The full text of the chosen completion.
        confidence: The strategy's own confidence, when it has one.
        details: Strategy-specific figures for the receipt.
        warnings: What the run did other than as configured while still answering (a
            fallback taken, an input it could not use), one self-contained sentence each,
            naming the strategy and what to change. Creating a `Final` with warnings emits
            each one as an `AdaptiveWarning` (`Final.Warning`); the controller copies the
            tuple onto the result (`Result.warnings`), so a receipt shows them too.
        Warning: The warning category emitted (`AdaptiveWarning`, a `UserWarning`), for
            `warnings.filterwarnings` and `pytest.warns`.
    """

    Warning: ClassVar[type[AdaptiveWarning]] = AdaptiveWarning

    answer: str | None
    text: str | None = None
    confidence: float | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Emitted where the Final is made, so that a strategy cannot put a warning on the
        # receipt without the user also hearing of it (and `filterwarnings` can escalate it).
        for message in self.warnings:
            warnings.warn(message, AdaptiveWarning, stacklevel=3)


@runtime_checkable
class StrategyRun(Protocol):
    """One call's worth of strategy state."""

    def plan(self, state: State) -> Plan | None:
        """What to ask next, or None when there is nothing more worth asking."""
        ...

    def observe(self, outcome: Outcome) -> None:
        """Take in one call's outcome (called once per call, in arrival order)."""
        ...

    def evidence(self) -> Evidence:
        """Votes and scores so far, for the stop rules."""
        ...

    def finish(self, state: State) -> Final:
        """The answer from what was observed."""
        ...

    def answer_of(self, completion: Completion) -> str | None:
        """The answer this run counted for a generated `completion` (None: it abstains).

        Shown on the receipt beside every generated sample. A run that reads no answers
        returns `completion.answer`.
        """
        ...

    # A run may also define `follow_up(outcome: Outcome) -> Sequence[Call]`, called right
    # after `observe(outcome)` while the round is still running: the calls it returns are
    # reserved and sent at once, in the same round (e.g. scoring a candidate as soon as it
    # arrives instead of after the whole batch). Optional, like `check_stop_rule`: a run
    # without it waits for the next `plan`.


@runtime_checkable
class Strategy(Protocol):
    """The one small protocol a user implements to write a strategy.

    A strategy may also define `check_stop_rule(rule: StopRule) -> None`, raising
    `ConfigError` when a stop rule the caller gave cannot apply to it (its plans are never
    stoppable, or the rule would make some of its settings dead). It is optional (not part of
    the protocol's required members, so strategies without it keep working and accept every
    rule) and is called before anything is sent, with the rule given to `run(stop=...)` or
    `Client(stop=...)`; the strategy's own `default_stop()` is never checked.
    """

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        ...

    def start(self, task: Task) -> StrategyRun:
        """Begin one call."""
        ...

    def default_stop(self) -> StopRule | None:
        """Stop rules this strategy wants when the caller gives none (None: run to the end)."""
        ...


#: Strategies by name: `single` here, the rest declared by installed distributions under the
#: `adaptive.strategies` entry-point group (the built-in ones by this distribution's
#: pyproject.toml), so a name works without importing the package that defines it.
STRATEGIES: Registry[Strategy] = Registry("strategy", group="adaptive.strategies")


def register_strategy(name: str, factory: Callable[..., Strategy]) -> None:
    """Make a strategy buildable by name in this process (`client.run(q, strategy=name)`).

    A package that ships strategies declares them as entry points instead (see the README's
    "Writing your own strategy"); this is for an application's own, unpackaged ones.

    Raises:
        ConfigError: The name is not lower-case words joined by hyphens, or is taken.
    """
    STRATEGIES.register(name, factory)


def strategy_names() -> tuple[str, ...]:
    """Every strategy name that `strategy_from_config` can build, sorted."""
    return STRATEGIES.names()


def strategy_from_config(
    config: str | Mapping[str, Any], params: Mapping[str, Any] | None = None
) -> Strategy:
    """Build a strategy from a name and parameters, or `{"name": ..., **params}`.

    Example: `strategy_from_config({"name": "adaptive", "max_samples": 16})`.

    Raises:
        ConfigError: Unknown strategy name (the message lists the known ones) or bad parameters.
    """
    return STRATEGIES.build(config, params)


def check_stop_rule(strategy: Strategy, rule: StopRule | None, *, given: str = "stop=...") -> None:
    """Ask `strategy` whether a stop rule the caller gave can apply to it, before anything is sent.

    Args:
        strategy: The call's strategy; one without `check_stop_rule` accepts every rule.
        rule: The rule the caller gave (None: nothing to check).
        given: Where the rule came from, for the message ("stop=..." or "Client(stop=...)").

    Raises:
        ConfigError: The strategy says the rule cannot apply; the message says what to change.
    """
    check = getattr(strategy, "check_stop_rule", None)
    if rule is None or check is None:
        return
    try:
        check(rule)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (the rule was given as {given})") from None


class _SingleRun:
    def __init__(self, task: Task, sampling: Sampling, answer: AnswerSpec) -> None:
        self.task = task
        self.sampling = sampling
        self.spec = answer
        self.response: Response | None = None
        self.asked = False

    def answer_of(self, completion: Completion) -> str | None:
        # An answer the endpoint extracted stands as it is; else the text is parsed.
        if completion.answer is not None:
            return completion.answer
        return self.spec.read(completion.text)

    def plan(self, state: State) -> Plan | None:
        if self.asked:
            return None
        self.asked = True
        return Plan(
            calls=(Call(self.task.request(self.sampling, n=1, seed=self.task.seed)),), stoppable=False
        )

    def observe(self, outcome: Outcome) -> None:
        if outcome.response is not None:
            self.response = outcome.response

    def evidence(self) -> Evidence:
        return Evidence(samples=len(self.response.completions) if self.response else 0)

    def finish(self, state: State) -> Final:
        if self.response is None or not self.response.completions:
            return Final(answer=None)
        text = self.response.completions[0].text
        return Final(answer=self.spec.read(text), text=text)


class SingleSample(ValidatedModel):
    r"""One sample: the baseline every strategy is compared with.

    Args:
        sampling: Sampling parameters.
        answer: How the answer is read from the text (default: `\boxed{}`, `####`,
            "the answer is", then the last number).
    """

    kind: ClassVar[str] = "single"
    sampling: Sampling = Field(default_factory=Sampling)
    answer: AnswerSpec = Field(default_factory=AnswerSpec)

    @property
    def name(self) -> str:
        """Short name shown on receipts."""
        return "single"

    def start(self, task: Task) -> StrategyRun:
        """Begin one call."""
        return _SingleRun(task, self.sampling, self.answer)

    def default_stop(self) -> StopRule | None:
        """No stop rule: one sample is the whole plan."""
        return None

    def check_stop_rule(self, rule: StopRule) -> None:
        """Refuse every stop rule: one sample cannot be cut short, the rule would be ignored.

        Raises:
            ConfigError: Always; drop the rule or use a strategy that samples adaptively.
        """
        raise ConfigError(
            f"strategy 'single' draws exactly one sample, so the stop rule {rule!r} could never "
            "end it early and would be ignored: drop the stop rule, or use a strategy that can "
            "stop early (e.g. AdaptiveConsistency(max_samples=...))"
        )


STRATEGIES.register("single", SingleSample)
