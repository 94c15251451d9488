"""OpenAI's wire format: request bodies, answers, stream chunks and usage (no HTTP here).

Chat (`/chat/completions`) and legacy completions (`/completions`) differ only in how a
request's input goes into the body and how a choice carries its text and logprobs; a
`Choices` names those two readers for each.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from .._ledger import prompt_token_bound
from .._models import Completion, Request, Response, TokenLogprob, Usage
from .._tokens import estimate_tokens
from ._base import current_meter
from ._checks import WireError, check_indices, check_usage, count
from ._http import server_message
from ._sse import ServerSaid

__all__ = ["parse_usage"]

ChoiceReader = Callable[[dict[str, Any]], tuple[str, list[TokenLogprob] | None]]
DeltaReader = Callable[[dict[str, Any]], tuple[str, str, list[TokenLogprob] | None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Choices:
    """How one OpenAI API reads a choice: of a complete answer, and of a streamed chunk.

    Attributes:
        choice: Text and logprobs of one choice of a complete answer.
        delta: Text, reasoning text and logprobs of one choice of a streamed chunk.
    """

    choice: ChoiceReader
    delta: DeltaReader


def parse_usage(raw: Any) -> Usage | None:
    """Usage from an OpenAI-style `usage` object, or None when the server sent none.

    Raises:
        WireError: A `usage` that is not an object, lacks `prompt_tokens` or
            `completion_tokens`, or has a count that is negative, boolean or not an integer
            (the message names the field and the value).
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise WireError(f"usage is {type(raw).__name__} {str(raw)[:100]!r}, expected an object")
    prompt = count(raw, "prompt_tokens", "usage", required=True)
    completion = count(raw, "completion_tokens", "usage", required=True)
    reasoning = cached = 0
    details = raw.get("completion_tokens_details")
    if isinstance(details, dict):
        reasoning = count(details, "reasoning_tokens", "usage.completion_tokens_details")
    elif details is not None:
        raise WireError(f"usage.completion_tokens_details is {details!r}, expected an object")
    prompt_details = raw.get("prompt_tokens_details")
    if isinstance(prompt_details, dict):
        cached = count(prompt_details, "cached_tokens", "usage.prompt_tokens_details")
    elif prompt_details is not None:
        raise WireError(f"usage.prompt_tokens_details is {prompt_details!r}, expected an object")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=reasoning,
        cached_prompt_tokens=cached,
    )


def base_body(model: str, request: Request, max_tokens_field: str, *, stream: bool) -> dict[str, Any]:
    """The sampling fields of a body (the caller adds the input and logprob fields)."""
    body: dict[str, Any] = {"model": model, "n": request.n, max_tokens_field: request.max_tokens}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop is not None:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


# -- choices ------------------------------------------------------------------------------
def _chat_logprobs(raw: Any) -> list[TokenLogprob] | None:
    # {"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}, ...]}
    if not isinstance(raw, dict):
        return None
    content = raw.get("content")
    if not isinstance(content, list):
        return None
    out = []
    for item in content:
        top = item.get("top_logprobs") or ()
        out.append(
            TokenLogprob(
                token=item["token"],
                logprob=item["logprob"],
                top=tuple((t["token"], t["logprob"]) for t in top),
            )
        )
    return out


def _completion_logprobs(raw: Any) -> list[TokenLogprob] | None:
    # {"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token: logprob} | None, ...]}
    if not isinstance(raw, dict):
        return None
    tokens = raw.get("tokens")
    values = raw.get("token_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        return None
    tops = raw.get("top_logprobs") or [None] * len(tokens)
    out = []
    for token, value, top in zip(tokens, values, tops, strict=False):
        alternatives = sorted(top.items(), key=lambda kv: -kv[1]) if top else ()
        # An echoed first prompt token has no logprob; 0.0 keeps the token count right.
        out.append(
            TokenLogprob(token=token, logprob=0.0 if value is None else value, top=tuple(alternatives))
        )
    return out


def chat_choice(choice: dict[str, Any]) -> tuple[str, list[TokenLogprob] | None]:
    """Text and logprobs of a chat choice (`message.content`)."""
    message = choice["message"]
    content = message.get("content") if message is not None else None
    if content is not None and not isinstance(content, str):
        raise TypeError(f"message content is {type(content).__name__}, not text")
    return content or "", _chat_logprobs(choice.get("logprobs"))


def chat_delta(choice: dict[str, Any]) -> tuple[str, str, list[TokenLogprob] | None]:
    """Text, reasoning text and logprobs of a streamed chat choice (`delta`)."""
    delta = choice.get("delta") or {}
    content = delta.get("content") or ""
    # Reasoning servers stream thoughts under one of these names; they are billed output.
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    if not isinstance(content, str) or not isinstance(reasoning, str):
        raise TypeError("a delta's content is not text")
    return content, reasoning, _chat_logprobs(choice.get("logprobs"))


def completion_choice(choice: dict[str, Any]) -> tuple[str, list[TokenLogprob] | None]:
    """Text and logprobs of a legacy completions choice (`text`)."""
    text = choice["text"]
    if not isinstance(text, str):
        raise TypeError(f"choice text is {type(text).__name__}, not a string")
    return text, _completion_logprobs(choice.get("logprobs"))


def completion_delta(choice: dict[str, Any]) -> tuple[str, str, list[TokenLogprob] | None]:
    """Text and logprobs of a streamed legacy completions choice (no reasoning channel)."""
    text = choice.get("text") or ""
    if not isinstance(text, str):
        raise TypeError("a chunk's text is not a string")
    return text, "", _completion_logprobs(choice.get("logprobs"))


# -- complete answers ---------------------------------------------------------------------
def parse_response(request: Request, data: Any, read: ChoiceReader) -> Response:
    """The `Response` in an OpenAI answer body.

    Raises:
        WireError: An error body, no choices, a malformed choice, usage that fails the checks
            (`_checks`), or choices other than one per index 0 .. n-1 (then `usage` is the
            reported usage, which the server billed).
    """
    message = server_message(data)
    if message is not None:
        raise WireError(f"the server returned an error: {message}")
    if not isinstance(data, dict):
        raise WireError(f"the answer is a JSON {type(data).__name__}, expected an object with 'choices'")
    usage = parse_usage(data.get("usage"))
    if usage is not None:
        check_usage(usage, request)
    reported = usage is not None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise WireError("the answer has no 'choices' list", usage=usage)
    if len(choices) != request.n:
        check_indices(range(len(choices)), request.n, usage)
    single = request.n == 1 and len(choices) == 1
    completions = []
    try:
        for i, choice in enumerate(choices):
            text, logprobs = read(choice)
            index = choice.get("index")
            if index is None:
                index = i  # servers that leave the index out list the choices in order
            elif isinstance(index, bool) or not isinstance(index, int):
                raise WireError(f"choices[{i}].index is {index!r}, expected an integer", usage=usage)
            completions.append(
                Completion(
                    text=text,
                    finish_reason=choice.get("finish_reason"),
                    index=index,
                    logprobs=tuple(logprobs) if logprobs is not None else None,
                    completion_tokens=len(logprobs)
                    if logprobs
                    else (usage.completion_tokens if single and usage is not None else None),
                )
            )
    except WireError:
        raise
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise WireError(
            f"a choice in the answer is malformed ({type(exc).__name__}: {str(exc)[:300]})", usage=usage
        ) from None
    check_indices((c.index for c in completions), request.n, usage)
    if usage is None:
        usage = Usage(
            prompt_tokens=prompt_token_bound(request),
            completion_tokens=sum(
                len(c.logprobs) if c.logprobs else estimate_tokens(len(c.text.encode()), request.max_tokens)
                for c in completions
            ),
        )
    model = data.get("model")
    rid = data.get("id")
    return Response(
        completions=tuple(completions),
        usage=usage,
        model=model if isinstance(model, str) else None,
        id=rid if isinstance(rid, str) else None,
        usage_reported=reported,
    )


# -- streamed answers ---------------------------------------------------------------------
@dataclasses.dataclass(slots=True)
class _Choice:
    parts: list[str] = dataclasses.field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    chunks: int = 0
    nbytes: int = 0
    reasoning_chunks: int = 0
    reasoning_bytes: int = 0
    finished_at: int = 0  # the event that carried finish_reason (0: not finished)

    def tokens(self, max_tokens: int) -> tuple[int, int]:
        """(completion tokens, of which reasoning) counted so far."""
        # A chunk is at least one token; the byte estimate covers servers that batch tokens.
        reasoning = max(self.reasoning_chunks, estimate_tokens(self.reasoning_bytes, max_tokens))
        if self.logprobs is not None:
            text = len(self.logprobs)
        else:
            text = max(self.chunks, estimate_tokens(self.nbytes, max_tokens))
        return text + reasoning, reasoning


class OpenAIStreamDecoder:
    """Assembles an OpenAI chunk stream (`data: {...}` events, then `data: [DONE]`).

    Args:
        request: The request being answered (its `n`, `max_tokens` and prompt bound).
        read: How a chunk's choice carries text, reasoning and logprobs.
    """

    end_marker = "[DONE]"

    def __init__(self, request: Request, read: DeltaReader) -> None:
        self._request = request
        self._read = read
        self._choices: dict[int, _Choice] = {}
        self._reported: Usage | None = None
        self._prompt_bound = prompt_token_bound(request)
        self._model: str | None = None
        self._id: str | None = None
        self._events = 0
        # Told of each chunk's logprobs as they arrive (a caller watching the trace).
        self._meter = current_meter()

    def feed(self, data: str, deltas: list[tuple[int, str]]) -> bool:
        """Read one chunk; True at `[DONE]`."""
        if data == "[DONE]":
            return True
        chunk = json.loads(data)
        if not isinstance(chunk, dict):
            raise ValueError("an event is not a JSON object")
        message = server_message(chunk)
        if message is not None:
            raise ServerSaid(message)
        if self._model is None and isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        if self._id is None and isinstance(chunk.get("id"), str):
            self._id = chunk["id"]
        self._events += 1
        raw_usage = chunk.get("usage")
        if raw_usage is not None:
            usage = parse_usage(raw_usage)
            assert usage is not None
            self._reported = check_usage(usage, self._request)
        n = self._request.n
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
                # An index past n-1 is one more choice than asked for: say how many came.
                returned = len(self._choices.keys() | {index}) if isinstance(index, int) else None
                raise WireError(
                    f"a chunk's choice index is {index!r}, expected 0 to {n - 1} for n={n}",
                    usage=self._reported,
                    choices=returned,
                )
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice()
            text, reasoning, logprobs = self._read(choice)
            finish = choice.get("finish_reason")
            if state.finished_at and (
                text or reasoning or logprobs or (finish and state.finished_at < self._events)
            ):
                # One index carrying two choices (a gateway that numbers every choice 0):
                # merging them would make one garbled completion. Interleaved token by
                # token, the second choice's output arrives before the first finishes; its
                # own finish_reason, a second one for the index, still gives it away.
                what = "more output" if text or reasoning or logprobs else "a second finish_reason"
                raise WireError(
                    f"choice {index} received {what} after it finished "
                    f"(finish_reason {state.finish_reason!r}); the server is mixing choices "
                    "under one index",
                    usage=self._reported,
                    choices=len(self._choices) + 1,
                )
            if text:
                state.parts.append(text)
                state.chunks += 1
                state.nbytes += len(text.encode())
                deltas.append((index, text))
            if reasoning:
                state.reasoning_chunks += 1
                state.reasoning_bytes += len(reasoning.encode())
            if logprobs is not None:
                if state.logprobs is None:
                    state.logprobs = []
                state.logprobs.extend(logprobs)
                if self._meter is not None and logprobs:
                    self._meter.tokens(index, logprobs)
            if finish:
                state.finish_reason = str(finish)
                state.finished_at = self._events
        return False

    def complete(self) -> bool:
        """Without [DONE], a stream whose every choice said why it finished is still whole."""
        choices = self._choices.values()
        return len(self._choices) >= self._request.n and all(c.finish_reason for c in choices)

    def reported(self) -> bool:
        """Whether the server sent its usage (`stream_options.include_usage`)."""
        return self._reported is not None

    def prompt_reported(self) -> bool:
        """Whether the prompt count is the server's: it comes with the usage, at the end."""
        return self._reported is not None

    def usage(self) -> Usage:
        """The reported usage if the server sent it, else the usage counted so far."""
        if self._reported is not None:
            return self._reported
        completion = reasoning = 0
        for choice in self._choices.values():
            c, r = choice.tokens(self._request.max_tokens)
            completion += c
            reasoning += r
        return Usage(
            prompt_tokens=self._prompt_bound, completion_tokens=completion, reasoning_tokens=reasoning
        )

    def started(self) -> int:
        """Choices that have received any output."""
        return sum(1 for c in self._choices.values() if c.chunks or c.reasoning_chunks or c.logprobs)

    def build(self, *, complete: bool) -> Response:
        """The `Response` so far (unfinished choices: finish_reason "cancelled" unless complete).

        Raises:
            WireError: `complete` and the choices are not exactly 0 .. n-1 (carries the
                reported usage).
        """
        usage = self.usage()
        reported = self._reported is not None
        if complete:
            check_indices(self._choices, self._request.n, self._reported)
        single = self._request.n == 1 and len(self._choices) == 1
        completions = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            finish = choice.finish_reason or (None if complete else "cancelled")
            lps = tuple(choice.logprobs) if choice.logprobs is not None else None
            completions.append(
                Completion(
                    text="".join(choice.parts),
                    finish_reason=finish,
                    index=index,
                    logprobs=lps,
                    completion_tokens=len(lps)
                    if lps
                    else (usage.completion_tokens if single and reported else None),
                )
            )
        return Response(
            completions=tuple(completions),
            usage=usage,
            model=self._model,
            id=self._id,
            usage_reported=reported,
        )
