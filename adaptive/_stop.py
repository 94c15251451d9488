"""Stop rules: tiny pure predicates over `State`, composable with `|` and `&`.

Written the tenacity way::

    rule = confident(0.99) | low_marginal_gain(0.002) | budget_exhausted()

Every rule is a validated pydantic model, so it can also be built from a name and parameters
(`stop_rule_from_config({"any": [{"name": "ac-beta", "threshold": 0.95}, "budget-exhausted"]})`)
and it explains itself: `rule.check(state)` returns whether to stop and the numbers behind it.
Any plain callable `State -> bool` is a stop rule too (as in tenacity): it is wrapped so it
composes with `|` and `&` and shows on the trace under its function's name.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from ._exceptions import ConfigError
from ._models import ValidatedModel
from ._posterior import beta_confidence
from ._registry import Registry
from ._result import StopReason
from ._state import State

__all__ = [
    "STOP_RULES",
    "ACBeta",
    "AllOf",
    "AnyOf",
    "BudgetExhausted",
    "Check",
    "Confident",
    "Deadline",
    "Dirichlet",
    "ESCWindow",
    "FunctionRule",
    "LowMarginalGain",
    "MaxSamples",
    "ScoreThreshold",
    "StopRule",
    "VoteMargin",
    "ac_beta",
    "as_stop_rule",
    "budget_exhausted",
    "confident",
    "deadline",
    "dirichlet",
    "esc_window",
    "low_marginal_gain",
    "max_samples",
    "score_threshold",
    "stop_rule_from_config",
    "vote_margin",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One rule's verdict on one state, with the figure it compared."""

    stop: bool
    rule: str
    value: float | None = None
    threshold: float | None = None
    parts: tuple[Check, ...] = ()

    def reason(self) -> str:
        """The name of the (first) rule that said stop, for the receipt."""
        if not self.stop:
            return ""
        for p in self.parts:
            if p.stop:
                return p.reason()
        return self.rule


#: Stop rules by name (`ac-beta`, `budget-exhausted`, ...): the built-in ones register
#: themselves below; installed distributions may declare more under the
#: `adaptive.stop_rules` entry-point group.
STOP_RULES: Registry[StopRule] = Registry("stop rule", group="adaptive.stop_rules")


class StopRule(ValidatedModel, abc.ABC):
    """Base of every stop rule: `rule(state) -> bool`, explained by `rule.check(state)`.

    A subclass that sets `kind` (its registry name, lower-case words joined by hyphens) can be
    built by name with `stop_rule_from_config`.
    """

    kind: ClassVar[str] = ""
    #: What this rule's firing means, as `Result.stop_reason` (custom rules: "rule").
    stop_reason: ClassVar[StopReason] = "rule"

    def reason_for(self, check: Check) -> StopReason:
        """The stop reason of `check`, this rule's own verdict."""
        return self.stop_reason

    def fired(self, check: Check) -> tuple[StopRule, Check]:
        """The rule (and its check) that made `check`, this rule's verdict, say stop."""
        return self, check

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind and cls.kind not in ("any", "all"):
            STOP_RULES.register(cls.kind, cls)

    @property
    def label(self) -> str:
        """The rule's name on the trace and as a stop reason (`budget_exhausted`)."""
        return self.kind.replace("-", "_")

    @abc.abstractmethod
    def check(self, state: State) -> Check:
        """Whether to stop in `state`, and why."""

    def __call__(self, state: State) -> bool:
        return self.check(state).stop

    def __or__(self, other: StopRule | RuleFn) -> AnyOf:
        return AnyOf(rules=(*_flat(self, AnyOf), *_flat(as_stop_rule(other), AnyOf)))

    def __ror__(self, other: RuleFn) -> AnyOf:
        return AnyOf(rules=(*_flat(as_stop_rule(other), AnyOf), *_flat(self, AnyOf)))

    def __and__(self, other: StopRule | RuleFn) -> AllOf:
        return AllOf(rules=(*_flat(self, AllOf), *_flat(as_stop_rule(other), AllOf)))

    def __rand__(self, other: RuleFn) -> AllOf:
        return AllOf(rules=(*_flat(as_stop_rule(other), AllOf), *_flat(self, AllOf)))

    def config(self) -> dict[str, Any]:
        """The rule as a name and parameters (inverse of `stop_rule_from_config`)."""
        return {"name": self.kind, **self.model_dump()}


RuleFn = Callable[[State], bool]


class FunctionRule(StopRule):
    """A plain callable `State -> bool` as a stop rule (what `as_stop_rule` wraps).

    Args:
        fn: Returns True to stop. It must return a bool (a numpy bool is fine); anything
            else is a `ConfigError`, never read as truthy.
    """

    fn: Callable[[State], Any]

    @property
    def label(self) -> str:
        """The function's name (`<lambda>` for a lambda)."""
        return str(getattr(self.fn, "__name__", type(self.fn).__name__))

    def check(self, state: State) -> Check:
        verdict = self.fn(state)
        if not isinstance(verdict, bool | np.bool_):
            raise ConfigError(
                f"stop rule {self.label!r} returned {type(verdict).__name__} {verdict!r}; "
                "a stop rule returns True (stop) or False (go on)"
            )
        return Check(bool(verdict), self.label)

    def config(self) -> dict[str, Any]:
        raise ConfigError(
            f"stop rule {self.label!r} is a Python function, which has no config form; "
            "give it as an object (or register a StopRule subclass with a `kind`)"
        )


def as_stop_rule(rule: StopRule | RuleFn) -> StopRule:
    """`rule` itself if it is a `StopRule`, else the callable wrapped as a `FunctionRule`.

    Raises:
        ConfigError: `rule` is neither a stop rule nor callable.
    """
    if isinstance(rule, StopRule):
        return rule
    if isinstance(rule, type):
        raise ConfigError(f"stop rule must be an instance, not the class {rule.__name__}")
    if callable(rule):
        return FunctionRule(fn=rule)
    raise ConfigError(f"a stop rule is a StopRule or a callable State -> bool, not {type(rule).__name__}")


def _flat(rule: StopRule, kind: type[AnyOf] | type[AllOf]) -> tuple[StopRule, ...]:
    return tuple(rule.rules) if isinstance(rule, kind) else (rule,)


class AnyOf(StopRule):
    """Stop when any of the rules says stop (`a | b`)."""

    kind: ClassVar[str] = "any"
    rules: tuple[StopRule, ...] = Field(min_length=1)

    def check(self, state: State) -> Check:
        parts = tuple(r.check(state) for r in self.rules)
        return Check(any(p.stop for p in parts), "any", parts=parts)

    def fired(self, check: Check) -> tuple[StopRule, Check]:
        """The first part that said stop (itself when none did)."""
        for rule, part in zip(self.rules, check.parts, strict=False):
            if part.stop:
                return as_stop_rule(rule).fired(part)
        return self, check

    def config(self) -> dict[str, Any]:
        return {"any": [r.config() for r in self.rules]}


class AllOf(StopRule):
    """Stop when all of the rules say stop (`a & b`)."""

    kind: ClassVar[str] = "all"
    rules: tuple[StopRule, ...] = Field(min_length=1)

    def check(self, state: State) -> Check:
        parts = tuple(r.check(state) for r in self.rules)
        stop = all(p.stop for p in parts)
        return Check(stop, "all", parts=parts)

    def fired(self, check: Check) -> tuple[StopRule, Check]:
        """The first part (all said stop; the first is named)."""
        if check.stop and self.rules:
            return as_stop_rule(self.rules[0]).fired(check.parts[0])
        return self, check

    def config(self) -> dict[str, Any]:
        return {"all": [r.config() for r in self.rules]}


class Confident(StopRule):
    """Stop when the controller is `threshold` sure of the leader.

    The confidence is P(the leader is the answer unlimited voting would give) under the
    client's consistency prior (uniform, i.e. AC's Beta rule, until it is calibrated).
    """

    kind: ClassVar[str] = "confident"
    stop_reason: ClassVar[StopReason] = "confident"
    threshold: float = Field(default=0.95, gt=0, lt=1)
    min_votes: int = Field(default=2, ge=1)

    def check(self, state: State) -> Check:
        c = state.confidence
        stop = c is not None and state.top_two_counts[0] >= self.min_votes and c >= self.threshold
        return Check(stop, self.label, c, self.threshold)


class ACBeta(StopRule):
    """Adaptive-Consistency's Beta rule.

    Stop when P(Binomial(v1+v2+1, 1/2) <= v1) >= threshold, v1 and v2 the top two vote
    counts (a uniform prior; no calibration).
    """

    kind: ClassVar[str] = "ac-beta"
    stop_reason: ClassVar[StopReason] = "confident"
    threshold: float = Field(default=0.95, gt=0, lt=1)

    def check(self, state: State) -> Check:
        v1, v2 = state.top_two_counts
        value = beta_confidence(v1, v2) if v1 else 0.0
        return Check(v1 > 0 and value >= self.threshold, self.label, value, self.threshold)


class Dirichlet(StopRule):
    """Adaptive-Consistency's Dirichlet rule.

    Stop when P(the leader has the largest probability) under Dirichlet(votes + 1),
    estimated by seeded Monte Carlo, reaches `threshold`.
    """

    kind: ClassVar[str] = "dirichlet"
    stop_reason: ClassVar[StopReason] = "confident"
    threshold: float = Field(default=0.95, gt=0, lt=1)
    draws: int = Field(default=2000, ge=100)
    seed: int = 0

    def check(self, state: State) -> Check:
        counts = np.array(list(state.votes.values()), dtype=np.float64)
        if counts.size == 0:
            return Check(False, self.label, 0.0, self.threshold)
        if counts.size == 1:
            counts = np.append(counts, 0.0)  # an unseen rival answer
        rng = np.random.default_rng(self.seed)
        p = rng.dirichlet(counts + 1.0, size=self.draws)
        value = float(np.mean(p.argmax(axis=1) == 0))
        return Check(value >= self.threshold, self.label, value, self.threshold)


class ESCWindow(StopRule):
    """Early-Stopping Self-Consistency's window rule.

    Stop when the last `size` answers are identical (abstentions never agree).
    """

    kind: ClassVar[str] = "esc-window"
    stop_reason: ClassVar[StopReason] = "confident"
    size: int = Field(default=5, ge=1)

    def check(self, state: State) -> Check:
        window = state.history[-self.size :]
        stop = len(window) == self.size and window[0] is not None and len(set(window)) == 1
        return Check(stop, self.label, float(len(set(window))) if window else None, 1.0)


class VoteMargin(StopRule):
    """Stop when the leader is `margin` votes ahead of the runner-up."""

    kind: ClassVar[str] = "vote-margin"
    stop_reason: ClassVar[StopReason] = "confident"
    margin: int = Field(default=3, ge=1)

    def check(self, state: State) -> Check:
        v1, v2 = state.top_two_counts
        return Check(v1 - v2 >= self.margin, self.label, float(v1 - v2), float(self.margin))


class ScoreThreshold(StopRule):
    """Stop when a verifier has scored some candidate at least `threshold`."""

    kind: ClassVar[str] = "score-threshold"
    stop_reason: ClassVar[StopReason] = "confident"
    threshold: float = Field(allow_inf_nan=False)

    def check(self, state: State) -> Check:
        best = state.best_score
        return Check(best is not None and best >= self.threshold, self.label, best, self.threshold)


class BudgetExhausted(StopRule):
    """Stop when not even one more sample fits in what is left of the budget."""

    kind: ClassVar[str] = "budget-exhausted"
    stop_reason: ClassVar[StopReason] = "budget"

    def check(self, state: State) -> Check:
        return Check(state.next_batch < 1, self.label, float(state.next_batch), 1.0)


class Deadline(StopRule):
    """Stop once `seconds` have passed (the budget's `seconds` also cancels work in flight)."""

    kind: ClassVar[str] = "deadline"
    stop_reason: ClassVar[StopReason] = "deadline"
    seconds: float = Field(gt=0, allow_inf_nan=False)

    def check(self, state: State) -> Check:
        return Check(state.elapsed >= self.seconds, self.label, state.elapsed, self.seconds)


class MaxSamples(StopRule):
    """Stop after `samples` completions."""

    kind: ClassVar[str] = "max-samples"
    stop_reason: ClassVar[StopReason] = "max_samples"
    samples: int = Field(ge=1)

    def check(self, state: State) -> Check:
        return Check(state.samples >= self.samples, self.label, float(state.samples), float(self.samples))


class LowMarginalGain(StopRule):
    """Stop when one more sample is not worth it.

    The controller estimates the expected rise in P(our answer is the one unlimited voting
    gives) per extra sample (`State.marginal_gain`). Stop when it is below `min_gain`, or,
    with `value_usd` (what a correct answer is worth to you), when the expected value of the
    next batch is below its expected cost (`State.expected_cost_usd`: this call's observed
    sample lengths at the endpoint's price; the worst case before the first sample), so a
    question whose samples run long stops sooner.
    """

    kind: ClassVar[str] = "low-marginal-gain"
    stop_reason: ClassVar[StopReason] = "low_gain"
    min_gain: float = Field(default=0.0, ge=0, le=1)
    value_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    min_votes: int = Field(default=2, ge=1)

    def check(self, state: State) -> Check:
        g = state.gain()
        if g is None or state.top_two_counts[0] < self.min_votes:
            return Check(False, self.label, g, self.min_gain)
        cost = state.expected_cost_usd if state.expected_cost_usd is not None else state.next_cost_usd
        if self.value_usd is not None and cost is not None:
            worth = g * state.next_batch * self.value_usd
            return Check(worth < cost, self.label, worth, cost)
        return Check(g < self.min_gain, self.label, g, self.min_gain)

    def reason_for(self, check: Check) -> StopReason:
        """Reason "not_worth_cost" when it compared value with cost (`value_usd`), else "low_gain"."""
        # With a value and a priced next batch, the check compared worth with cost.
        compared_cost = self.value_usd is not None and check.threshold != self.min_gain
        return "not_worth_cost" if compared_cost else "low_gain"


def confident(threshold: float = 0.95, min_votes: int = 2) -> Confident:
    """Stop at `threshold` confidence that the leader is the unlimited-voting answer."""
    return Confident(threshold=threshold, min_votes=min_votes)


def ac_beta(threshold: float = 0.95) -> ACBeta:
    """Adaptive-Consistency's Beta stopping rule."""
    return ACBeta(threshold=threshold)


def dirichlet(threshold: float = 0.95, draws: int = 2000, seed: int = 0) -> Dirichlet:
    """Adaptive-Consistency's Dirichlet stopping rule (seeded Monte Carlo)."""
    return Dirichlet(threshold=threshold, draws=draws, seed=seed)


def esc_window(size: int = 5) -> ESCWindow:
    """ESC: stop when the last `size` answers agree."""
    return ESCWindow(size=size)


def vote_margin(margin: int = 3) -> VoteMargin:
    """Stop when the leader leads by `margin` votes."""
    return VoteMargin(margin=margin)


def score_threshold(threshold: float) -> ScoreThreshold:
    """Stop when a verifier score reaches `threshold`."""
    return ScoreThreshold(threshold=threshold)


def budget_exhausted() -> BudgetExhausted:
    """Stop when the next sample cannot fit in the budget."""
    return BudgetExhausted()


def deadline(seconds: float) -> Deadline:
    """Stop after `seconds`."""
    return Deadline(seconds=seconds)


def max_samples(samples: int) -> MaxSamples:
    """Stop after `samples` completions."""
    return MaxSamples(samples=samples)


def low_marginal_gain(
    min_gain: float = 0.0, *, value_usd: float | None = None, min_votes: int = 2
) -> LowMarginalGain:
    """Stop when the expected gain of another sample is below `min_gain` (or its cost)."""
    return LowMarginalGain(min_gain=min_gain, value_usd=value_usd, min_votes=min_votes)


def stop_rule_from_config(
    config: str | Mapping[str, Any] | StopRule | RuleFn, params: Mapping[str, Any] | None = None
) -> StopRule:
    """Build a stop rule from a name and parameters, a nested dict, or a plain callable.

    Examples: `stop_rule_from_config("ac-beta", {"threshold": 0.9})`,
    `stop_rule_from_config({"any": [{"name": "confident", "threshold": 0.99}, "budget-exhausted"]})`,
    `stop_rule_from_config(lambda state: state.samples >= 5)`.

    Raises:
        ConfigError: Unknown name (the message lists the known ones) or bad parameters.
    """
    if isinstance(config, str):
        return STOP_RULES.build(config, params)
    if not isinstance(config, Mapping):
        return as_stop_rule(config)
    data = dict(config)
    for key, composite in (("any", AnyOf), ("all", AllOf)):
        if key in data:
            items = data[key]
            if not isinstance(items, list | tuple) or not items:
                raise ConfigError(f"{key!r} takes a non-empty list of stop rules")
            return composite(rules=tuple(stop_rule_from_config(i) for i in items))
    if not isinstance(data.get("name"), str):
        raise ConfigError(
            f"a stop rule config needs a 'name' (one of: {', '.join(STOP_RULES.names())}) or 'any' / 'all'"
        )
    return STOP_RULES.build(data, params)
