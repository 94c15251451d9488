"""Verifiers: pluggable scorers of candidate solutions, behind one small protocol.

A verifier never sends anything itself. Given the question and a candidate solution it returns
a `Verification`: either a free local `score`, or the `calls` to send (which the controller
reserves, budgets and accounts exactly like generation calls, with purpose "verify") and a
`read` function that turns their responses into a score. Strategies such as `BestOfN` and
`BeamSearch` put those calls in their plans and read the answers back.

A score is a float (higher is better), a tuple of per-step scores (a process reward model
scoring each step of a partial solution), or None when the verifier could not score the
candidate (an unparseable judge reply, a failed call): an unscored candidate is never picked
over a scored one.

Built-in verifiers (registry name in brackets, for `verifier_from_config`):

- `FunctionVerifier` [function]: any callable `(question, solution) -> float`, sync (scored
  locally, for free) or async (awaited by the controller through a free call).
- `ExactChecker` [exact]: 1.0 / 0.0 from comparing the extracted answer with a reference, or
  from a check function.
- `LLMJudge` [llm_judge]: an LLM-as-judge on any endpoint, a 0-10 rating or yes/no.
- `RewardModel` [reward_model]: an outcome reward model endpoint that reads `Completion.score`.
- `ProcessRewardModel` [prm]: a process reward model scoring each step; step scores are
  aggregated by "last", "min", "product" or "mean".
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, cast, runtime_checkable

from pydantic import ConfigDict, Field, field_validator, model_validator

from adaptive import (
    AnswerSpec,
    Call,
    Completion,
    ConfigError,
    Endpoint,
    FunctionEndpoint,
    Message,
    Request,
    Response,
    Usage,
    ValidatedModel,
    as_answer_spec,
    normalize_answer,
)

__all__ = [
    "Aggregation",
    "ExactChecker",
    "FunctionVerifier",
    "LLMJudge",
    "ProcessRewardModel",
    "RewardModel",
    "ScoreValue",
    "Verification",
    "Verifier",
    "aggregate_steps",
    "parse_rating",
    "parse_yes_no",
    "read_score",
    "scoring_calls",
    "verifier_from_config",
    "verifier_names",
]

ScoreValue: TypeAlias = float | tuple[float, ...] | None
"""What a verifier says about one candidate: a score, per-step scores, or None (unscored)."""

Aggregation = Literal["last", "min", "product", "mean"]
"""How per-step scores become one score."""


def aggregate_steps(scores: Sequence[float], how: Aggregation = "last") -> float | None:
    """One score from per-step scores: the last, the lowest, the product or the mean.

    Returns None for an empty sequence.

    Raises:
        ConfigError: Unknown aggregation.
    """
    if not scores:
        return None
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "product":
        return float(math.prod(scores))
    if how == "mean":
        return float(math.fsum(scores) / len(scores))
    raise ConfigError(f"unknown aggregation {how!r}: use 'last', 'min', 'product' or 'mean'")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True, slots=True)
class Verification:
    """How to score one candidate.

    Either `score` is the (free, local) result and `calls` is empty, or `calls` are to be sent
    and `read` turns their responses (in the order of `calls`; None for a call that was
    refused by the budget, cancelled or failed) into the score.

    Attributes:
        score: The local score when no call is needed.
        calls: Requests to send (purpose "verify").
        read: Responses -> score; required when `calls` is not empty.
    """

    score: ScoreValue = None
    calls: tuple[Call, ...] = ()
    read: Callable[[Sequence[Response | None]], ScoreValue] | None = None

    def __post_init__(self) -> None:
        if self.calls and self.read is None:
            raise ConfigError("a Verification with calls needs a read function for their responses")

    def finish(self, responses: Sequence[Response | None]) -> ScoreValue:
        """Return the score: the local one, or `read` applied to the calls' responses."""
        if not self.calls:
            return _clean(self.score)
        assert self.read is not None
        try:
            return _clean(self.read(responses))
        except Exception:  # a reader that chokes on a reply leaves the candidate unscored
            return None


def _clean(value: Any) -> ScoreValue:
    """Make a verifier result safe: finite floats only, otherwise None."""
    if value is None:
        return None
    if isinstance(value, tuple | list):
        items = [_finite(v) for v in value]
        if not items or any(v is None for v in items):
            return None
        return tuple(v for v in items if v is not None)
    return _finite(value)


@runtime_checkable
class Verifier(Protocol):
    """The verifier contract: say how to score a candidate, never send anything.

    Args (of `verification`):
        question: The task's question (the last user message).
        solution: The candidate solution text (a partial one during step-level search).
        steps: The solution's steps when the caller already split it (step-level search).
        seed: A seed for verifier calls that sample (judges).
    """

    @property
    def name(self) -> str:
        """Short name for receipts."""
        ...

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """How to score `solution` for `question`."""
        ...


def read_score(value: ScoreValue, aggregation: Aggregation = "last") -> float | None:
    """One float from a verifier result (per-step scores aggregated with `aggregation`)."""
    if isinstance(value, tuple):
        return aggregate_steps(value, aggregation)
    return value


def _pair(question: str, solution: str) -> tuple[Message, ...]:
    return (Message(role="user", content=question), Message(role="assistant", content=solution))


def _fill(template: str, question: str, solution: str) -> str:
    # Plain replacement (not str.format): questions and solutions are full of braces.
    return template.replace("{question}", question).replace("{solution}", solution)


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"


def _number_in(text: str) -> float | None:
    """Return the float when the whole text is one number (servers that answer with the score)."""
    stripped = text.strip()
    if re.fullmatch(_NUMBER + r"(?:[eE][-+]?\d+)?", stripped):
        return _finite(float(stripped))
    return None


def _json_object(text: str) -> dict[str, Any] | None:
    """Parse the text as a JSON object, or None."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _response_score(response: Response) -> float | None:
    """Read a reward score from a response.

    From `Completion.score`, a `score` in `Response.extra`, or a completion text that is a
    number or a JSON object with a "score".
    """
    if response.completions and response.completions[0].score is not None:
        return _finite(response.completions[0].score)
    extra = response.extra.get("score")
    if extra is not None:
        return _finite(extra)
    if response.completions:
        text = response.completions[0].text
        data = _json_object(text)
        if data is not None:
            return _finite(data.get("score"))
        return _number_in(text)
    return None


# --------------------------------------------------------------------------------------------
# Verifiers
# --------------------------------------------------------------------------------------------


_REGISTRY: dict[str, type[_VerifierModel]] = {}


class _VerifierModel(ValidatedModel):
    """Base of the built-in verifiers: validated, frozen, buildable by name."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    @property
    def name(self) -> str:
        """Short name for receipts."""
        return self.kind

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """How to score `solution` for `question`."""
        raise NotImplementedError


class _EndpointVerifier(_VerifierModel):
    """A verifier that calls an endpoint, given positionally or as `endpoint=`."""

    endpoint: Endpoint

    def __init__(self, endpoint: Endpoint | None = None, /, **data: Any) -> None:
        if endpoint is not None:
            if "endpoint" in data:
                name = type(self).__name__
                raise ConfigError(f"give {name} its endpoint positionally or by name, not both")
            data["endpoint"] = endpoint
        super().__init__(**data)


SyncScoreFn = Callable[[str, str], float | bool | None]
AsyncScoreFn = Callable[[str, str], Awaitable[float | bool | None]]


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class FunctionVerifier(_VerifierModel):
    """Any callable `fn(question, solution) -> float | bool | None` as a verifier.

    A sync callable is scored locally and for free, in the event loop between rounds (keep it
    quick; make it async if it is slow). An async callable is awaited by the controller through
    a free call on a `FunctionEndpoint` (purpose "verify", $0, reported usage 0), so it runs
    concurrently with the other scoring calls and shows on the receipt. A bool counts as
    1.0 / 0.0; None, NaN or an exception leaves the candidate unscored.

    Example:
        >>> v = FunctionVerifier(lambda q, s: float("42" in s))
    """

    kind: ClassVar[str] = "function"
    fn: Callable[..., Any]
    label: str | None = None

    def __init__(self, fn: Callable[..., Any] | None = None, /, **data: Any) -> None:
        if fn is not None:
            if "fn" in data:
                raise ConfigError("give FunctionVerifier its function positionally or as fn=..., not both")
            data["fn"] = fn
        super().__init__(**data)

    @property
    def name(self) -> str:
        """The function's name."""
        if self.label:
            return self.label
        return str(getattr(self.fn, "__name__", type(self.fn).__name__))

    @functools.cached_property
    def _endpoint(self) -> Endpoint:
        fn = self.fn

        async def score(request: Request) -> Completion:
            assert request.messages is not None
            try:
                raw = await fn(request.messages[0].content, request.messages[-1].content)
            except Exception:  # a crashing check leaves the candidate unscored, not the run failed
                raw = None
            value = _finite(float(raw)) if isinstance(raw, bool) else _finite(raw)
            return Completion(text="" if value is None else repr(value), finish_reason="stop", score=value)

        endpoint = FunctionEndpoint(score, name=f"verifier:{self.name}", usage=lambda r, c: Usage())
        # BaseEndpoint.name is a read-only property, which mypy does not match to the protocol.
        return cast(Endpoint, endpoint)

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """Score locally (sync function) or with one free call (async function)."""
        if _is_async(self.fn):
            request = Request(messages=_pair(question, solution), max_tokens=1)
            call = Call(request=request, endpoint=self._endpoint, purpose="verify")
            return Verification(calls=(call,), read=lambda rs: _response_score(rs[0]) if rs[0] else None)
        try:
            value = self.fn(question, solution)
        except Exception:  # a user check that crashed says nothing about the candidate
            return Verification(score=None)
        return Verification(score=_finite(float(value)) if isinstance(value, bool) else _finite(value))


class ExactChecker(_VerifierModel):
    """1.0 when a candidate is right, 0.0 when it is not: free and local.

    Give either `expected` (a reference answer, compared after extraction and normalization
    with `answer`, so "1,000" matches "1000") or `check` (a function of the solution text
    returning a bool, e.g. one that runs unit tests). A candidate with no extractable answer
    scores 0.0.

    Example:
        >>> ExactChecker("42").verification("q", "so the answer is 42").score
        1.0
    """

    kind: ClassVar[str] = "exact"
    expected: str | None = None
    check: Callable[[str], bool] | None = None
    answer: AnswerSpec = Field(default_factory=AnswerSpec)

    def __init__(
        self, expected_or_check: str | float | Callable[[str], bool] | None = None, /, **data: Any
    ) -> None:
        if expected_or_check is not None:
            key = "check" if callable(expected_or_check) else "expected"
            if key in data:
                raise ConfigError(f"give ExactChecker's {key} positionally or by name, not both")
            data[key] = expected_or_check if callable(expected_or_check) else str(expected_or_check)
        super().__init__(**data)

    @field_validator("expected", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("answer", mode="before")
    @classmethod
    def _spec(cls, v: Any) -> AnswerSpec:
        return as_answer_spec(v)

    @model_validator(mode="after")
    def _one(self) -> ExactChecker:
        if (self.expected is None) == (self.check is None):
            raise ValueError("give exactly one of expected (a reference answer) or check (a function)")
        if self.expected is not None and not normalize_answer(self.expected, self.answer.normalizer):
            raise ValueError("expected normalizes to an empty answer; give a non-empty reference")
        return self

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """Score 1.0 or 0.0, locally."""
        if self.check is not None:
            try:
                return Verification(score=1.0 if self.check(solution) else 0.0)
            except Exception:  # a crashing test is a failing test
                return Verification(score=0.0)
        assert self.expected is not None
        got = self.answer.parse(solution)
        want = normalize_answer(self.expected, self.answer.normalizer)
        return Verification(score=1.0 if got is not None and got == want else 0.0)


_RATING_TEMPLATE = (
    "Grade the following solution to a problem.\n\n"
    "Problem:\n{question}\n\n"
    "Solution:\n{solution}\n\n"
    "How likely is the solution to be correct and its final answer right? Think briefly, then "
    "end your reply with a last line of the form 'Score: N', N an integer from 0 (surely wrong) "
    "to 10 (surely right)."
)
_YES_NO_TEMPLATE = (
    "Problem:\n{question}\n\n"
    "Proposed solution:\n{solution}\n\n"
    "Is the proposed solution correct? Answer with a single word, Yes or No."
)

_LABELLED = re.compile(
    r"(?:score|rating|grade)\s*(?:[:=]|is|of)?\s*\**\s*(" + _NUMBER + r")\s*\**\s*(?:/\s*(\d+))?",
    re.IGNORECASE,
)
_OUT_OF = re.compile(r"(" + _NUMBER + r")\s*(?:/|out\s+of)\s*(\d+)", re.IGNORECASE)
_YES = ("yes", "true", "correct")
_NO = ("no", "false", "incorrect", "wrong")


def parse_rating(text: str, scale: float = 10.0) -> float | None:
    """Read a judge's rating from its reply, scaled to [0, 1], or None.

    Tried in order: the last "Score: N" / "Rating: N" / "score of N" (also "N/10" after it);
    the last "N/10" or "N out of 10" anywhere; the whole reply being a number. A rating given
    out of another total ("7/9") is scaled by that total. A value outside [0, scale] is None.
    """
    for found in (_LABELLED.findall(text), _OUT_OF.findall(text)):
        if found:
            value, total = found[-1]
            denom = float(total) if total and float(total) > 0 else scale
            return _in_range(float(value), denom)
    whole = _number_in(text.strip().strip("*").rstrip("."))
    return None if whole is None else _in_range(whole, scale)


def _in_range(value: float, scale: float) -> float | None:
    if not math.isfinite(value) or value < 0 or value > scale:
        return None
    return value / scale


def _word(token: str) -> str:
    return token.strip().strip("*.,!:\"'").lower()


def parse_yes_no(completion: Completion) -> float | None:
    """Read P(yes) from a yes/no reply, or None.

    From the first token's top log-probabilities when given (P(yes) / (P(yes) + P(no))), else
    1.0 / 0.0 from the reply's first word.
    """
    if completion.logprobs:
        first = completion.logprobs[0]
        alternatives = first.top or ((first.token, first.logprob),)
        yes = math.fsum(math.exp(lp) for tok, lp in alternatives if _word(tok) in _YES)
        no = math.fsum(math.exp(lp) for tok, lp in alternatives if _word(tok) in _NO)
        if yes + no > 0:
            return yes / (yes + no)
    words = completion.text.split()
    if not words:
        return None
    first_word = _word(words[0])
    if first_word in _YES:
        return 1.0
    if first_word in _NO:
        return 0.0
    return None


class LLMJudge(_EndpointVerifier):
    """An LLM as judge, on any chat endpoint (it may be the generation model itself).

    `score_parser`:

    - "rating" (default): asks for a 0-`scale` rating ("Score: N") and reads it with
      `parse_rating`; the score is the rating divided by `scale`, in [0, 1].
    - "yes_no": asks for Yes/No with log-probabilities and scores P(yes) (or 1/0 from the
      word when the endpoint returns no log-probabilities).
    - any callable `Completion -> float | None`.

    An unparseable reply (or a failed call) leaves the candidate unscored (None): it is never
    picked over a scored candidate and adds no weight to a vote.

    Args:
        endpoint: The judge's endpoint.
        prompt_template: The user message; `{question}` and `{solution}` are replaced.
            Default: a grading prompt suited to `score_parser`.
        score_parser: "rating", "yes_no", or a callable.
        scale: Top of the rating scale.
        max_tokens: Judge reply limit ("yes_no" uses at most 2).
        temperature: Judge temperature (0: deterministic where the endpoint honours it).
        system: Optional system message.
    """

    kind: ClassVar[str] = "llm_judge"
    prompt_template: str | None = None
    score_parser: Literal["rating", "yes_no"] | Callable[[Completion], float | None] = "rating"
    scale: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    max_tokens: int = Field(default=512, ge=1)
    temperature: float | None = Field(default=0.0, ge=0, le=2, allow_inf_nan=False)
    system: str | None = None

    @field_validator("prompt_template")
    @classmethod
    def _has_solution(cls, v: str | None) -> str | None:
        if v is not None and "{solution}" not in v:
            raise ValueError("prompt_template must contain {solution} (and usually {question})")
        return v

    @property
    def name(self) -> str:
        """The judge's endpoint name."""
        return f"judge:{self.endpoint.name}"

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """One judge call."""
        yes_no = self.score_parser == "yes_no"
        template = self.prompt_template or (_YES_NO_TEMPLATE if yes_no else _RATING_TEMPLATE)
        messages = [Message(role="user", content=_fill(template, question, solution))]
        if self.system:
            messages.insert(0, Message(role="system", content=self.system))
        request = Request(
            messages=tuple(messages),
            max_tokens=min(self.max_tokens, 2) if yes_no else self.max_tokens,
            temperature=self.temperature,
            seed=seed,
            logprobs=yes_no,
            top_logprobs=5 if yes_no else None,
        )
        call = Call(request=request, endpoint=self.endpoint, purpose="verify")
        return Verification(calls=(call,), read=self._read)

    def _read(self, responses: Sequence[Response | None]) -> ScoreValue:
        response = responses[0]
        if response is None or not response.completions:
            return None
        completion = response.completions[0]
        if self.score_parser == "rating":
            return parse_rating(completion.text, self.scale)
        if self.score_parser == "yes_no":
            return parse_yes_no(completion)
        try:
            return _finite(self.score_parser(completion))
        except Exception:  # a user parser that crashed: unscored, like an unparseable reply
            return None


class RewardModel(_EndpointVerifier):
    """An outcome reward model behind an endpoint: one call per candidate.

    Sends `[user: question, assistant: solution]` (with `max_tokens=1`) and reads the score,
    in order, from: `Completion.score` of the first completion (set by `adaptive.sim`'s
    `SimRewardEndpoint`, or by any `FunctionEndpoint` returning `Completion(score=...)`);
    `Response.extra["score"]`; the completion text when it is a number or a JSON object with a
    "score" (a server that answers with the score as the message content). A reward server
    behind an OpenAI-compatible chat route should therefore put the score in the message
    content, as `0.83` or as the JSON object `{"score": 0.83}`, with the usual `usage`: the
    OpenAI endpoints do not read a non-standard `score` field of a choice.

    Args:
        endpoint: The reward model's endpoint.
        transform: "sigmoid" maps a raw logit score into (0, 1) (useful for weighted votes,
            which need non-negative weights); "none" keeps it.
    """

    kind: ClassVar[str] = "reward_model"
    transform: Literal["none", "sigmoid"] = "none"

    @property
    def name(self) -> str:
        """The reward endpoint's name."""
        return f"rm:{self.endpoint.name}"

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """One reward-model call."""
        request = Request(messages=_pair(question, solution), max_tokens=1)
        call = Call(request=request, endpoint=self.endpoint, purpose="verify")
        return Verification(calls=(call,), read=self._read)

    def _read(self, responses: Sequence[Response | None]) -> ScoreValue:
        response = responses[0]
        if response is None:
            return None
        score = _response_score(response)
        if score is None or self.transform == "none":
            return score
        return 1.0 / (1.0 + math.exp(-max(min(score, 500.0), -500.0)))


class ProcessRewardModel(_EndpointVerifier):
    """A process reward model: scores each step of a (partial) solution.

    Sends `[user: question, assistant: steps joined by step_delimiter]` (with `max_tokens=1`;
    with `send_steps`, the step list also goes in the request body as `"steps"`), and reads the
    step scores, in order, from: `Response.extra["step_scores"]` (a list, one per step); a
    completion text that is a JSON object with "step_scores" (what `SimRewardEndpoint` and a
    custom PRM server behind an OpenAI-compatible route can send); one scored completion per
    step (`Completion.score`); a single `Completion.score`, taken as the score of the last
    step; a completion text that is a list of numbers ("0.9, 0.7, 0.2").

    Step-level search keeps each beam's step scores and aggregates them itself; elsewhere (as a
    best-of-n verifier) the scores are aggregated with `aggregation`.

    Args:
        endpoint: The PRM's endpoint.
        step_delimiter: What separates steps (a solution is split on it when no steps are given).
        aggregation: "last" (the PRM's judgment of the whole prefix), "min" (the weakest step),
            "product" (all steps right), or "mean".
        send_steps: Also send the step list as `extra={"steps": [...]}`.
    """

    kind: ClassVar[str] = "prm"
    step_delimiter: str = Field(default="\n\n", min_length=1)
    aggregation: Aggregation = "last"
    send_steps: bool = False

    @property
    def name(self) -> str:
        """The PRM endpoint's name."""
        return f"prm:{self.endpoint.name}"

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """One PRM call over the steps."""
        if steps is None:
            steps = [s.strip() for s in solution.split(self.step_delimiter) if s.strip()]
        if not steps:
            return Verification(score=None)
        extra = {"steps": list(steps)} if self.send_steps else {}
        request = Request(
            messages=_pair(question, self.step_delimiter.join(steps)), max_tokens=1, extra=extra
        )
        call = Call(request=request, endpoint=self.endpoint, purpose="verify")
        return Verification(calls=(call,), read=self._read)

    def _read(self, responses: Sequence[Response | None]) -> ScoreValue:
        response = responses[0]
        if response is None:
            return None
        listed = response.extra.get("step_scores")
        if listed is None and response.completions:
            data = _json_object(response.completions[0].text)
            listed = data.get("step_scores") if data is not None else None
        if isinstance(listed, list | tuple):
            return _clean(tuple(listed))
        scored = [c.score for c in response.completions]
        if len(scored) > 1 and all(s is not None for s in scored):
            return _clean(tuple(scored))
        if scored and scored[0] is not None:
            return _finite(scored[0])
        if response.completions:
            parts = [p for p in re.split(r"[\s,;]+", response.completions[0].text.strip().strip("[]")) if p]
            values = [_number_in(p) for p in parts]
            if values and all(v is not None for v in values):
                return _clean(tuple(values))
        return None

    def aggregate(self, scores: Sequence[float]) -> float | None:
        """Aggregate per-step scores the PRM's way."""
        return aggregate_steps(scores, self.aggregation)


def verifier_names() -> tuple[str, ...]:
    """Names that `verifier_from_config` knows."""
    return tuple(sorted(_REGISTRY))


def verifier_from_config(
    config: Verifier | str | Mapping[str, Any], params: Mapping[str, Any] | None = None
) -> Verifier:
    """Build a verifier from a name and parameters, or `{"name": ..., **params}`.

    Endpoint-backed verifiers take their endpoint object among the parameters
    (`{"name": "reward_model", "endpoint": my_endpoint}`). A verifier instance is returned as is.

    Raises:
        ConfigError: Unknown name, missing name or bad parameters.
    """
    if isinstance(config, str):
        name, data = config, dict(params or {})
    elif isinstance(config, Mapping):
        if params:
            raise ConfigError("give the parameters inside the config dict or in params, not both")
        data = dict(config)
        name = data.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"a verifier config needs a 'name' (one of {', '.join(verifier_names())})")
    elif isinstance(config, Verifier):
        return config
    else:
        raise ConfigError(
            f"cannot build a verifier from {type(config).__name__}: pass a Verifier, a name or a config dict"
        )
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown verifier {name!r}; known: {', '.join(verifier_names())}")
    return cls(**data)


def scoring_calls(verifier: Verifier, question: str, solution_bytes: int) -> tuple[Call, ...]:
    """The calls `verifier` would send to score a candidate of `solution_bytes` UTF-8 bytes.

    For a candidate not yet generated (a placeholder of that size is scored): what a plan
    holds budget back for, by the core's `work_worst_case`.
    """
    return verifier.verification(question, "x" * max(1, solution_bytes), steps=None, seed=None).calls
