"""Requests to and responses from model endpoints: the data every layer shares."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._exceptions import ConfigError

__all__ = [
    "Completion",
    "Message",
    "Request",
    "Response",
    "TokenLogprob",
    "Usage",
    "ValidatedModel",
    "as_messages",
]


class HiddenInputError(ValueError):
    """A validation failure whose input must not be repeated (it may hold credentials)."""


def _explain(error: ValidationError, what: str, model: type[BaseModel] | None = None) -> str:
    parts = []
    fields = model.model_fields if model is not None else {}
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or what
        field = fields.get(str(item["loc"][0])) if item["loc"] else None
        # A field kept out of the repr (an API key, headers) is kept out of the message too.
        hidden = isinstance(item.get("ctx", {}).get("error"), HiddenInputError) or (
            field is not None and field.repr is False
        )
        shown = "" if hidden else f" (got {item.get('input')!r})"
        parts.append(f"{loc}: {item['msg']}{shown}")
    return f"invalid {what}: " + "; ".join(parts)


class ValidatedModel(BaseModel):
    """A pydantic model whose validation failures raise `ConfigError` (a `ValueError`).

    Every config and request in adaptive derives from it, so bad input always surfaces as one
    typed error that names the field and what to fix.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_explain(exc, type(self).__name__, type(self))) from None


Role = Literal["system", "user", "assistant", "tool", "developer"]


class Message(ValidatedModel):
    """One chat message."""

    role: Role
    content: str


def _message(m: Any, index: int) -> Message:
    if isinstance(m, Message):
        return m
    if isinstance(m, Mapping):
        return Message(**dict(m))
    raise ConfigError(
        f"message {index} of the prompt must be a {{'role': ..., 'content': ...}} dict or a Message, "
        f"not {type(m).__name__} {m!r:.60}"
    )


def as_messages(prompt: str | Sequence[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    """Turn a prompt string or a list of message dicts into validated messages.

    Raises:
        ConfigError: The prompt is not a str or a sequence of messages, is empty, or a message
            is malformed.
    """
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ConfigError("the prompt is empty: pass a non-empty string or list of messages")
        return (Message(role="user", content=prompt),)
    if (
        isinstance(prompt, Mapping)
        or not isinstance(prompt, Sequence)
        or isinstance(prompt, bytes | bytearray)
    ):
        hint = " (decode it to a str first)" if isinstance(prompt, bytes | bytearray) else ""
        hint = " (wrap one message in a list: [message])" if isinstance(prompt, Mapping) else hint
        raise ConfigError(
            f"the prompt must be a str or a list of messages ({{'role': ..., 'content': ...}} dicts "
            f"or Message objects), not {type(prompt).__name__}{hint}"
        )
    messages = tuple(_message(m, i) for i, m in enumerate(prompt))
    if not messages:
        raise ConfigError("messages is empty: pass at least one message")
    if not any(m.content.strip() for m in messages):
        raise ConfigError("every message is empty: give at least one message some content")
    return messages


class Request(ValidatedModel):
    """What one endpoint call asks for.

    Give either `messages` (chat) or `prompt` (raw text continuation, for completions
    endpoints). `prefill` starts the assistant's answer with the given text (chat endpoints
    that support it) so that a partial solution can be continued.
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    prefill: str | None = None
    n: int = Field(default=1, ge=1, le=128)
    max_tokens: int = Field(default=1024, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    extra: Mapping[str, Any] = Field(default_factory=dict)

    @field_validator("temperature", "top_p")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and (len(v) > 16 or any(not s for s in v)):
            raise ValueError("stop takes at most 16 non-empty strings")
        return v

    @model_validator(mode="after")
    def _one_input(self) -> Request:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages (chat) or prompt (raw completion)")
        if self.messages is not None and not self.messages:
            raise ValueError("messages is empty: pass at least one message")
        if self.prompt is not None and not self.prompt:
            raise ValueError("prompt is empty")
        return self

    def prompt_key(self) -> str:
        """A key identifying the input, so an exact prompt-token count can be reused."""
        if self.prompt is not None:
            return "p:" + self.prompt
        assert self.messages is not None
        return (
            "m:"
            + "\x00".join(f"{m.role}\x01{m.content}" for m in self.messages)
            + "\x02"
            + (self.prefill or "")
        )


class Usage(BaseModel):
    """Token usage as the provider reported it.

    `reasoning_tokens` are part of `completion_tokens` (as OpenAI reports them);
    `cached_prompt_tokens` (cache reads) and `cache_write_tokens` (prompt tokens written to
    the cache) are part of `prompt_tokens`; `cache_write_1h_tokens` are the part of
    `cache_write_tokens` written with Anthropic's 1-hour lifetime (billed at a higher rate
    than the default 5-minute writes). No count can be negative.
    """

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    cached_prompt_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    cache_write_1h_tokens: int = Field(default=0, ge=0)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
        )


class TokenLogprob(BaseModel):
    """One generated token with its log-probability (and alternatives, when asked)."""

    model_config = ConfigDict(frozen=True)

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


class Completion(BaseModel):
    """One generated answer.

    Attributes:
        text: The generated text (for a prefilled request, only the continuation).
        finish_reason: "stop", "length", ... as the provider said; "cancelled" when cut.
        logprobs: Per-token log-probabilities, when requested and provided.
        completion_tokens: Tokens of this completion, when known (n=1, or from logprobs).
        score: A score attached by the endpoint (reward models, recorded samples).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    finish_reason: str | None = None
    index: int = 0
    logprobs: tuple[TokenLogprob, ...] | None = None
    completion_tokens: int | None = None
    score: float | None = None
    answer: str | None = None

    def mean_logprob(self) -> float | None:
        """Average token log-probability, or None without logprobs."""
        if not self.logprobs:
            return None
        return sum(t.logprob for t in self.logprobs) / len(self.logprobs)

    def logprob_weight(self) -> float | None:
        """The weight of this completion in a logprob-weighted vote: `exp(mean_logprob())`.

        None without logprobs.
        """
        from ._voting import logprob_weight

        mean = self.mean_logprob()
        return None if mean is None else logprob_weight(mean)


class Response(BaseModel):
    """What an endpoint returns for one `Request`: its completions and exact usage."""

    model_config = ConfigDict(frozen=True)

    completions: tuple[Completion, ...]
    usage: Usage
    model: str | None = None
    id: str | None = None
    usage_reported: bool = True
    extra: Mapping[str, Any] = Field(default_factory=dict)
