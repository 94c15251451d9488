"""Reading a chat-completions body: what the proxy can honour, and the `adaptive` field.

A parameter the proxy cannot honour (tools, response_format, n > 1, logit_bias, ...) is a 400
naming it, never silently dropped: the client would otherwise believe it was applied.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .._budget import Budget, as_budget
from .._exceptions import ConfigError
from .._models import Message
from .._strategy import Strategy, strategy_from_config
from ._config import ServerConfig
from ._errors import APIError

__all__ = ["ADAPTIVE_PREFIX", "ChatCall", "parse_chat"]

#: `"adaptive/<model>"` runs the configured default strategy on upstream model <model>.
ADAPTIVE_PREFIX = "adaptive/"

# What the proxy honours; any other field is refused by name.
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "seed",
        "stream",
        "stream_options",
        "n",
        "adaptive",
    }
)
_ADAPTIVE_KEYS = frozenset({"strategy", "budget"})
_ROLES = frozenset({"system", "developer", "user", "assistant"})


@dataclasses.dataclass(frozen=True, slots=True)
class ChatCall:
    """One request, read and resolved.

    Attributes:
        model: The model name the client asked for (echoed in the answer).
        upstream_model: The upstream model that answers.
        strategy: The strategy (None: one sample).
        strategy_name: Its name, for logs and the receipt.
        budget: The request's own budget (before the tenant's caps and the timeout).
        messages: The conversation.
        max_tokens / temperature / seed: Sampling overrides.
        stream / include_usage: Streaming flags.
    """

    model: str
    upstream_model: str
    strategy: Strategy | None
    strategy_name: str
    budget: Budget | None
    messages: tuple[Message, ...]
    max_tokens: int | None
    temperature: float | None
    seed: int | None
    stream: bool
    include_usage: bool


def _bad(message: str, param: str | None, code: str = "invalid_request") -> APIError:
    return APIError(400, message, code=code, param=param)


def _content(raw: Any, i: int) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts: list[str] = []
        for j, part in enumerate(raw):
            if (
                not isinstance(part, Mapping)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise _bad(
                    f"messages[{i}].content[{j}] is a {kind!r} part: the proxy passes text parts only",
                    f"messages[{i}].content",
                    "unsupported_content",
                )
            parts.append(part["text"])
        return "".join(parts)
    raise _bad(f"messages[{i}].content must be a string or a list of text parts", f"messages[{i}].content")


def _messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise _bad("messages must be a non-empty list of {role, content} objects", "messages")
    out: list[Message] = []
    for i, m in enumerate(raw):
        if not isinstance(m, Mapping):
            raise _bad(f"messages[{i}] must be an object with role and content", f"messages[{i}]")
        extra = sorted(set(m) - {"role", "content"})  # a name would not be passed on: refused
        if extra:
            raise _bad(
                f"messages[{i}] has {', '.join(extra)}, which the proxy cannot pass on (text messages only)",
                f"messages[{i}].{extra[0]}",
                "unsupported_parameter",
            )
        role = m.get("role")
        if role not in _ROLES:
            raise _bad(
                f"messages[{i}].role {role!r} is not supported: use system, developer, user or assistant",
                f"messages[{i}].role",
            )
        out.append(Message(role=role, content=_content(m.get("content"), i)))
    return tuple(out)


def _int(body: Mapping[str, Any], name: str, minimum: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _bad(f"{name} must be a whole number >= {minimum}, got {v!r}", name)
    return v


def _strategy(raw: Any, param: str) -> tuple[Strategy, str]:
    try:
        s = strategy_from_config(raw)
    except ConfigError as exc:
        raise _bad(str(exc), param, "invalid_strategy") from None
    return s, s.name


def parse_chat(body: Any, config: ServerConfig) -> ChatCall:
    """Read and resolve a chat-completions body.

    Model resolution: a configured alias; else `"adaptive/<model>"` (the default strategy
    and budget on `<model>`); else `<model>` itself with one sample. The `adaptive` field
    (`{"strategy": name | {...}, "budget": {...}}`) overrides the strategy and the budget.

    Raises:
        APIError: 400 naming the parameter at fault.
    """
    if not isinstance(body, Mapping):
        raise _bad("the body must be a JSON object", None)
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise _bad(
            f"{unknown[0]} is not supported by the adaptive proxy (it would be silently ignored): "
            f"remove {', '.join(unknown)}; supported: {', '.join(sorted(_KNOWN))}",
            unknown[0],
            "unsupported_parameter",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("model is required: a model name, 'adaptive/<model>' or a configured alias", "model")
    n = body.get("n")
    if n is not None and n != 1:
        raise _bad(
            f"n={n!r} is not supported: the proxy answers with one choice (its strategy draws the samples; "
            "choose one with the 'adaptive' field)",
            "n",
            "unsupported_parameter",
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream must be true or false", "stream")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, Mapping) or set(opts) - {"include_usage"}:
            raise _bad("stream_options supports only include_usage", "stream_options")
        include_usage = opts.get("include_usage") is True
    max_tokens = _int(body, "max_tokens", 1)
    mct = _int(body, "max_completion_tokens", 1)
    if max_tokens is not None and mct is not None and max_tokens != mct:
        raise _bad(
            "give max_tokens or max_completion_tokens, not two different values", "max_completion_tokens"
        )
    max_tokens = max_tokens if max_tokens is not None else mct
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or not 0 <= temperature <= 2
    ):
        raise _bad(f"temperature must be a number from 0 to 2, got {temperature!r}", "temperature")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad(f"seed must be a whole number, got {seed!r}", "seed")
    messages = _messages(body.get("messages"))

    strategy: Strategy | None = None
    name = "single"
    budget: Budget | None = None
    alias = config.aliases.get(model)
    if alias is not None:
        upstream = alias.model
        if alias.strategy is not None:
            strategy, name = _strategy(alias.strategy, "model")
        budget = alias.budget
    elif model.startswith(ADAPTIVE_PREFIX) and len(model) > len(ADAPTIVE_PREFIX):
        upstream = model[len(ADAPTIVE_PREFIX) :]
        strategy, name = _strategy(config.default_strategy, "model")
        budget = config.default_budget
    else:
        upstream = model
    extension = body.get("adaptive")
    if extension is not None:
        if not isinstance(extension, Mapping):
            raise _bad("adaptive must be an object: {'strategy': ..., 'budget': {...}}", "adaptive")
        bad = sorted(set(extension) - _ADAPTIVE_KEYS)
        if bad:
            raise _bad(
                f"adaptive.{bad[0]} is not a field of the adaptive extension: use strategy and budget",
                f"adaptive.{bad[0]}",
            )
        if "strategy" in extension:
            strategy, name = _strategy(extension["strategy"], "adaptive.strategy")
        if "budget" in extension:
            try:
                budget = as_budget(extension["budget"])
            except ConfigError as exc:
                raise _bad(str(exc), "adaptive.budget", "invalid_budget") from None
            if budget is None:
                raise _bad(
                    "adaptive.budget must be an object of limits such as {'usd': 0.01}", "adaptive.budget"
                )
        elif budget is None:
            budget = config.default_budget
    return ChatCall(
        model=model,
        upstream_model=upstream,
        strategy=strategy,
        strategy_name=name,
        budget=budget,
        messages=messages,
        max_tokens=max_tokens,
        temperature=float(temperature) if temperature is not None else None,
        seed=seed,
        stream=stream,
        include_usage=include_usage,
    )
