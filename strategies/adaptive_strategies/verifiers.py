"""Verifiers: pluggable scorers of candidate solutions, behind one small protocol.

A verifier never sends anything itself. Given the question and a candidate solution it returns
a `Verification`: either a free local `score`, or the `calls` to send (which the controller
reserves, budgets and accounts exactly like generation calls, with purpose "verify") and a
`read` function that turns their responses into a score. Strategies such as `BestOfN` and
`BeamSearch` put those calls in their plans and read the answers back.

A score is a float (higher is better), a tuple of per-step scores (a process reward model
scoring each step of a partial solution), or None when the verifier could not score the
candidate (an unparseable judge reply, a failed call): an unscored candidate is never picked
over a scored one. The parsers that turn replies into scores (`parse_rating`, `parse_yes_no`,
`parse_reward`, `parse_step_scores`) live in `adaptive_strategies.replies`.

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
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, Protocol, cast, runtime_checkable

import anyio.to_thread
from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from adaptive import (
    AdaptiveError,
    AnswerSpec,
    Call,
    Completion,
    ConfigError,
    Endpoint,
    FunctionEndpoint,
    Message,
    Registry,
    Request,
    Response,
    Usage,
    ValidatedModel,
    normalize_answer,
)
from adaptive.endpoints import is_async_callable

from ._fields import AnswerSpecField
from .replies import (
    Aggregation,
    ScoreValue,
    aggregate_steps,
    clean_score,
    finite,
    parse_rating,
    parse_reward,
    parse_step_scores,
    parse_yes_no,
)

__all__ = [
    "ExactChecker",
    "FunctionVerifier",
    "LLMJudge",
    "ProcessRewardModel",
    "RewardModel",
    "Verification",
    "Verifier",
    "VerifierError",
    "VerifierField",
    "describe_error",
    "scoring_calls",
    "verifier_from_config",
    "verifier_names",
]


class VerifierError(AdaptiveError):
    """A verifier raised while scoring a candidate (a bug in it, not a low score).

    Raised by default by `BestOfN`, `BeamSearch` and `DVTS`; with `on_verifier_error="skip"`
    they leave such candidates unscored instead and record the failure on the result
    (`details["verifier_errors"]` and a warning). `receipt` holds what was spent before.

    Attributes:
        verifier: The verifier's name.
        failures: One entry per candidate it raised on: `{"candidate": ..., "error": "Type: message"}`.
    """

    def __init__(self, message: str, *, verifier: str, failures: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message)
        self.verifier = verifier
        self.failures = tuple(failures)


def describe_error(exc: BaseException) -> str:
    """`"TypeName: message"`, how a verifier's exception is shown on receipts and errors."""
    return f"{type(exc).__name__}: {exc}"


class _Raised(Exception):
    """A verifier's failure carried through a reply (an async function's, caught in its endpoint)."""


# What an async function verifier's endpoint answers when the function raised: the reader
# turns it back into a failure (the endpoint itself must not fail: the round would).
_RAISED = "verifier raised: "


@dataclasses.dataclass(frozen=True, slots=True)
class Verification:
    """How to score one candidate.

    Either `score` is the (free, local) result and `calls` is empty, or `calls` are to be sent
    and `read` turns their responses (in the order of `calls`; None for a call that was
    refused by the budget, cancelled or failed) into the score. A `read` that raises is a
    verifier failure (not an unscored reply): `outcome` reports it.

    Attributes:
        score: The local score when no call is needed.
        calls: Requests to send (purpose "verify").
        read: Responses -> score; required when `calls` is not empty.
        error: Set when scoring locally raised (`describe_error` of the exception); the
            candidate is then unscored and the strategy raises or records it.
    """

    score: ScoreValue = None
    calls: tuple[Call, ...] = ()
    read: Callable[[Sequence[Response | None]], ScoreValue] | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if self.calls and self.read is None:
            raise ConfigError("a Verification with calls needs a read function for their responses")

    def finish(self, responses: Sequence[Response | None]) -> ScoreValue:
        """Return the score: the local one, or `read` applied to the calls' responses.

        A failure (see `outcome`) gives None; use `outcome` to learn of it.
        """
        return self.outcome(responses)[0]

    def outcome(self, responses: Sequence[Response | None]) -> tuple[ScoreValue, str | None]:
        """Return `(score, error)`: error is None, or what the verifier raised (score None)."""
        if not self.calls:
            return (None, self.error) if self.error is not None else (clean_score(self.score), None)
        assert self.read is not None
        try:
            return clean_score(self.read(responses)), None
        except _Raised as exc:
            return None, str(exc)
        except Exception as exc:  # a reader or parser that crashed: a failure, not "unscored"
            return None, describe_error(exc)


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


def _pair(question: str, solution: str) -> tuple[Message, ...]:
    return (Message(role="user", content=question), Message(role="assistant", content=solution))


def _fill(template: str, question: str, solution: str) -> str:
    # Plain replacement (not str.format): questions and solutions are full of braces.
    return template.replace("{question}", question).replace("{solution}", solution)


# --------------------------------------------------------------------------------------------
# Verifiers
# --------------------------------------------------------------------------------------------


#: Verifiers by name (`llm-judge`, `reward-model`, `prm`, `exact`, `function`); installed
#: distributions may declare more under the `adaptive.verifiers` entry-point group.
VERIFIERS: Registry[Verifier] = Registry("verifier", group="adaptive.verifiers")


class _VerifierModel(ValidatedModel):
    """Base of the built-in verifiers: validated, frozen, buildable by name."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            VERIFIERS.register(cls.kind, cls)

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

    endpoint: Endpoint | None

    def __init__(self, endpoint: Endpoint | None = None, /, **data: Any) -> None:
        if endpoint is not None:
            if "endpoint" in data:
                name = type(self).__name__
                raise ConfigError(f"give {name} its endpoint positionally or by name, not both")
            data["endpoint"] = endpoint
        super().__init__(**data)

    # Receipts name the verifier after its endpoint: "judge:gpt-4o-mini", "rm:...", "prm:...".
    prefix: ClassVar[str] = ""

    @property
    def name(self) -> str:
        """`prefix:endpoint name` (`prefix:task` on the call's own endpoint), for receipts."""
        return f"{self.prefix}:{'task' if self.endpoint is None else self.endpoint.name}"

    def _one_call(self, request: Request) -> Verification:
        """Score with one call of `request` to the endpoint, read back by `_score`."""
        call = Call(request=request, endpoint=self.endpoint, purpose="verify")
        return Verification(calls=(call,), read=self._read)

    def _read(self, responses: Sequence[Response | None]) -> ScoreValue:
        response = responses[0]
        return None if response is None else self._score(response)

    def _score(self, response: Response) -> ScoreValue:
        """The score in the endpoint's response (None: unscored)."""
        raise NotImplementedError


SyncScoreFn = Callable[[str, str], float | bool | None]
AsyncScoreFn = Callable[[str, str], Awaitable[float | bool | None]]
ScoreFn = SyncScoreFn | AsyncScoreFn


class FunctionVerifier(_VerifierModel):
    """Any callable `fn(question, solution) -> float | bool | None` as a verifier.

    Either kind is scored through a free call on a `FunctionEndpoint` (purpose "verify", $0,
    reported usage 0), so it runs concurrently with the other scoring calls and shows on the
    receipt: an async callable is awaited, a sync one runs in a worker thread (as
    `FunctionEndpoint` runs sync functions), so a slow check never blocks the event loop. A bool counts as
    1.0 / 0.0; None or NaN leaves the candidate unscored. An exception is a verifier failure
    (`Verification.error`): the strategy raises `VerifierError`, or with
    `on_verifier_error="skip"` leaves the candidate unscored and records it.

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

        is_async = is_async_callable(fn)

        async def score(request: Request) -> Completion:
            assert request.messages is not None
            question, solution = request.messages[0].content, request.messages[-1].content
            try:
                if is_async:
                    raw = await fn(question, solution)
                else:
                    raw = await anyio.to_thread.run_sync(fn, question, solution)
            except Exception as exc:  # carried in the reply: a failed call would fail the round
                return Completion(text=_RAISED + describe_error(exc), finish_reason="stop")
            value = finite(float(raw)) if isinstance(raw, bool) else finite(raw)
            return Completion(text="" if value is None else repr(value), finish_reason="stop", score=value)

        endpoint = FunctionEndpoint(score, name=f"verifier:{self.name}", usage=lambda r, c: Usage())
        # BaseEndpoint.name is a read-only property, which mypy does not match to the protocol.
        return cast(Endpoint, endpoint)

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """One free call that runs the function (awaited, or in a worker thread if sync)."""
        request = Request(messages=_pair(question, solution), max_tokens=1)
        call = Call(request=request, endpoint=self._endpoint, purpose="verify")
        return Verification(calls=(call,), read=_read_function_reply)


def _read_function_reply(responses: Sequence[Response | None]) -> ScoreValue:
    response = responses[0]
    if response is None:
        return None
    if response.completions and response.completions[0].text.startswith(_RAISED):
        raise _Raised(response.completions[0].text[len(_RAISED) :])
    return parse_reward(response)


class ExactChecker(_VerifierModel):
    """1.0 when a candidate is right, 0.0 when it is not: free and local.

    Give either `expected` (a reference answer, compared after extraction and normalization
    with `answer`, so "1,000" matches "1000") or `check` (a function of the solution text
    returning a bool, e.g. one that runs unit tests). A candidate with no extractable answer
    scores 0.0. A `check` that raises is a verifier failure (`Verification.error`), as for
    `FunctionVerifier`: the strategy raises `VerifierError`, or with
    `on_verifier_error="skip"` leaves the candidate unscored and records it. (A check that
    runs a candidate's code should catch the candidate's own crash and return False.)

    Example:
        >>> ExactChecker("42").verification("q", "so the answer is 42").score
        1.0
    """

    kind: ClassVar[str] = "exact"
    expected: str | None = None
    check: Callable[[str], bool] | None = None
    answer: AnswerSpecField = Field(default_factory=AnswerSpec)

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
            except Exception as exc:
                # Not a failing candidate: a check that raises is broken (a bug, a harness that
                # fell over), and scoring every candidate 0.0 would pick one blindly.
                return Verification(error=describe_error(exc))
        assert self.expected is not None
        got = self.answer.read(solution)
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


class LLMJudge(_EndpointVerifier):
    """An LLM as judge, on any chat endpoint (it may be the generation model itself).

    `score_parser`:

    - "rating" (default): asks for a 0-`scale` rating ("Score: N") and reads it with
      `parse_rating`; the score is the rating divided by `scale`, in [0, 1].
    - "yes_no": asks for Yes/No with log-probabilities and scores P(yes) (or 1/0 from the
      word when the endpoint returns no log-probabilities).
    - any callable `Completion -> float | None` (None: unparseable; raising is a verifier
      failure, see `VerifierError`).

    An unparseable reply (or a failed call) leaves the candidate unscored (None): it is never
    picked over a scored candidate and adds no weight to a vote.

    Args:
        endpoint: The judge's endpoint (default None: the endpoint of the call it scores,
            i.e. the generation model judges its own candidates).
        prompt_template: The user message; `{question}` and `{solution}` are replaced.
            Default: a grading prompt suited to `score_parser`.
        score_parser: "rating", "yes_no", or a callable.
        scale: Top of the rating scale.
        max_tokens: Judge reply limit ("yes_no" uses at most 2).
        temperature: Judge temperature (0: deterministic where the endpoint honours it).
        system: Optional system message.
    """

    kind: ClassVar[str] = "llm-judge"
    endpoint: Endpoint | None = None
    prefix: ClassVar[str] = "judge"
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
        return self._one_call(request)

    def _score(self, response: Response) -> ScoreValue:
        if not response.completions:
            return None
        completion = response.completions[0]
        if self.score_parser == "rating":
            return parse_rating(completion.text, self.scale)
        if self.score_parser == "yes_no":
            return parse_yes_no(completion)
        # A user parser that raises is a verifier failure (Verification.outcome reports it),
        # unlike a reply it cannot read, for which it returns None.
        return finite(self.score_parser(completion))


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

    kind: ClassVar[str] = "reward-model"
    endpoint: Endpoint
    prefix: ClassVar[str] = "rm"
    transform: Literal["none", "sigmoid"] = "none"

    def verification(
        self, question: str, solution: str, *, steps: Sequence[str] | None = None, seed: int | None = None
    ) -> Verification:
        """One reward-model call."""
        return self._one_call(Request(messages=_pair(question, solution), max_tokens=1))

    def _score(self, response: Response) -> ScoreValue:
        score = parse_reward(response)
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
    endpoint: Endpoint
    prefix: ClassVar[str] = "prm"
    step_delimiter: str = Field(default="\n\n", min_length=1)
    aggregation: Aggregation = "last"
    send_steps: bool = False

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
        return self._one_call(request)

    def _score(self, response: Response) -> ScoreValue:
        return parse_step_scores(response)

    def aggregate(self, scores: Sequence[float]) -> float | None:
        """Aggregate per-step scores the PRM's way."""
        return aggregate_steps(scores, self.aggregation)


def verifier_names() -> tuple[str, ...]:
    """Names that `verifier_from_config` knows."""
    return VERIFIERS.names()


def verifier_from_config(
    config: Verifier | ScoreFn | str | Mapping[str, Any], params: Mapping[str, Any] | None = None
) -> Verifier:
    """Build a verifier from a name and parameters, `{"name": ..., **params}`, or a function.

    Endpoint-backed verifiers take their endpoint object among the parameters
    (`{"name": "reward-model", "endpoint": my_endpoint}`). A verifier instance is returned as
    is; a plain function `fn(question, solution) -> float | bool | None` (sync or async)
    becomes a `FunctionVerifier`.

    Raises:
        ConfigError: Unknown name (the message lists the known ones), missing name or bad
            parameters.
    """
    if isinstance(config, Verifier):
        if params:
            raise ConfigError(
                "parameters were given with a Verifier instance; configure the instance instead"
            )
        return config
    if isinstance(config, str | Mapping):
        return VERIFIERS.build(config, params)
    if callable(config) and not isinstance(config, type):
        if params:
            raise ConfigError("parameters cannot be given with a function verifier")
        return FunctionVerifier(config)
    raise ConfigError(
        f"cannot build a verifier from {type(config).__name__}: pass a Verifier, a function "
        "(question, solution) -> score, a name or a config dict"
    )


def _as_verifier(value: Any) -> Verifier:
    # A one-argument wrapper: pydantic would take a second parameter for its ValidationInfo.
    return verifier_from_config(value)


VerifierField = Annotated[Verifier, BeforeValidator(_as_verifier)]
"""The type of a config field holding a verifier (`verifier: VerifierField`): it also takes a
registered name or a config dict, built with `verifier_from_config`."""


def scoring_calls(verifier: Verifier, question: str, solution_bytes: int) -> tuple[Call, ...]:
    """The calls `verifier` would send to score a candidate of `solution_bytes` UTF-8 bytes.

    For a candidate not yet generated (a placeholder of that size is scored): what a plan
    holds budget back for, by the core's `work_worst_case`.
    """
    return verifier.verification(question, "x" * max(1, solution_bytes), steps=None, seed=None).calls
