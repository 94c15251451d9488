"""Anthropic's Messages API over the shared HTTP layer (no vendor SDK).

Message mapping: `system` and `developer` messages are joined (blank line between) into the
top-level `system` field; consecutive messages of the same role are merged into one turn
(blank line between), because the API requires user and assistant turns to alternate. A
`prefill` becomes a trailing assistant message, which Anthropic continues.

Streaming (`stream=True`, or `stream()`) reads the Messages event stream: `message_start`
(the input usage), `content_block_start` / `content_block_delta` (`text_delta`,
`thinking_delta`; signatures and tool-input JSON are skipped) / `content_block_stop`,
`message_delta` (the stop reason and the cumulative output usage), `message_stop` (the end),
`ping`, and `error`. Thinking text is not part of the answer; its estimated tokens are
reported as `Usage.reasoning_tokens`, within `completion_tokens` as Anthropic bills them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Unpack

import httpx

from .._exceptions import ConfigError
from .._ledger import prompt_token_bound
from .._models import Completion, Request, Response, Usage
from .._tokens import estimate_tokens
from ._checks import WireError, check_usage, count
from ._http import HTTPEndpoint, HTTPSettings, HTTPSettingsArgs
from ._sse import ServerSaid, StreamDecoder

__all__ = ["Anthropic"]

_API_VERSION = "2023-06-01"

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    # The prompt plus output filled the context window: the answer was cut, like max_tokens.
    "model_context_window_exceeded": "length",
}
_THINKING = ("thinking", "redacted_thinking")
# How Anthropic names our usage fields, for error messages.
_NAMES = {"prompt_tokens": "input_tokens (with cache reads and writes)", "completion_tokens": "output_tokens"}


def _count(usage: Mapping[str, Any], key: str, *, required: bool = False) -> int:
    # Cache fields are null on models / requests without caching: those count 0.
    return count(usage, key, "usage", required=required)


def _finish(stop_reason: Any) -> str | None:
    return _FINISH.get(stop_reason, stop_reason) if isinstance(stop_reason, str) else None


def _sent_prefill(request: Request) -> str:
    # The API refuses a final assistant turn that ends in whitespace, so it is trimmed.
    return (request.prefill or "").rstrip()


def _trims_prefill(request: Request) -> bool:
    # The caller's prefill already ends in the whitespace we trimmed: the answer must not repeat it.
    return bool(request.prefill) and _sent_prefill(request) != request.prefill


class Anthropic(HTTPEndpoint):
    """An Anthropic model through the Messages API (`POST {base_url}/v1/messages`).

    One request yields one completion: `n > 1` is fanned out into parallel requests by
    `BaseEndpoint` (each billed for its prompt). Logprobs are not available from Anthropic.
    Like every HTTP endpoint it does not stream unless asked (`stream=True`); streaming lets
    a request the controller cancels be charged what it streamed, not its worst case.

    Args:
        model: The model id, e.g. "claude-sonnet-4-5".
        settings: `HTTPSettings`; the keywords override its fields.
        **kwargs: The HTTP settings (see `HTTPSettings`): `base_url` (default
            `$ANTHROPIC_BASE_URL`, then https://api.anthropic.com), `api_key` (default
            `$ANTHROPIC_API_KEY`; never shown in reprs or errors), `http_client`, `price`,
            `provider`, `max_concurrency`, `retry` (429, 5xx, 529 overloaded and transport
            errors), `timeout`, `headers` (e.g. `anthropic-beta`), `stream`.

    Raises:
        ConfigError: No API key (neither given, nor in the environment, nor in `headers`), or
            a bad setting.

    Example:
        >>> async with Anthropic("claude-haiku-4-5") as claude:  # doctest: +SKIP
        ...     response = await claude.request(Request(messages=as_messages("2+2?")))

    """

    supports_n = False
    supports_prefill = True
    supports_raw = False
    provider: ClassVar[str | None] = "anthropic"
    _path: ClassVar[str] = "/v1/messages"
    _default_base_url: ClassVar[str] = "https://api.anthropic.com"
    _base_url_env: ClassVar[str] = "ANTHROPIC_BASE_URL"
    _api_key_env: ClassVar[str] = "ANTHROPIC_API_KEY"

    def __init__(
        self, model: str, *, settings: HTTPSettings | None = None, **kwargs: Unpack[HTTPSettingsArgs]
    ) -> None:
        if isinstance(model, str) and not model.strip():
            raise ConfigError("model is empty: pass the Anthropic model id, e.g. 'claude-sonnet-4-5'")
        super().__init__(model, settings=settings, **kwargs)

    def _auth_headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": _API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def _check_auth(self, api_key: str | None, headers: httpx.Headers) -> None:
        if not api_key and "x-api-key" not in headers and "authorization" not in headers:
            raise ConfigError(
                "no Anthropic API key: pass api_key=... or set the ANTHROPIC_API_KEY environment variable"
            )

    # -- building the request ----------------------------------------------------------
    def build_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        """Build the JSON body sent for `request` (useful for inspection and tests).

        Raises:
            ConfigError: The request uses something Anthropic does not offer.

        """
        if request.prompt is not None:
            raise ConfigError(
                "Anthropic has no raw text-completion endpoint: pass messages=... instead of prompt=..."
            )
        if request.logprobs or request.top_logprobs:
            raise ConfigError(
                "Anthropic does not return logprobs: drop logprobs/top_logprobs or use an endpoint "
                "that offers them"
            )
        if request.temperature is not None and request.temperature > 1.0:
            raise ConfigError(
                f"Anthropic accepts temperature from 0 to 1 (got {request.temperature}): "
                "lower it to at most 1"
            )
        if request.n != 1:
            raise ConfigError("Anthropic returns one completion per request: send n=1 (request() fans out n)")
        assert request.messages is not None
        system: list[str] = []
        turns: list[dict[str, str]] = []
        for m in request.messages:
            if m.role in ("system", "developer"):
                system.append(m.content)
                continue
            if m.role not in ("user", "assistant"):
                raise ConfigError(
                    f"Anthropic takes user, assistant and system messages, not {m.role!r}: "
                    "put the tool output in a user message"
                )
            if turns and turns[-1]["role"] == m.role:
                turns[-1]["content"] += "\n\n" + m.content
            else:
                turns.append({"role": m.role, "content": m.content})
        prefill = _sent_prefill(request)
        if request.prefill is not None and turns and turns[-1]["role"] == "assistant":
            raise ConfigError(
                "the messages already end with an assistant message and a prefill was given: put "
                "the partial answer in one place (prefill=...)"
            )
        if prefill:
            turns.append({"role": "assistant", "content": prefill})
        if not turns:
            raise ConfigError("Anthropic needs at least one user message besides the system prompt")
        body: dict[str, Any] = {"model": self.model, "max_tokens": request.max_tokens, "messages": turns}
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if stream:
            body["stream"] = True
        # Anthropic has no seed parameter; a seed only distinguishes fanned-out samples here.
        body.update(request.extra)
        return body

    # -- reading the answer ------------------------------------------------------------
    def _parse(self, request: Request, data: Any) -> Response:
        if not isinstance(data, dict):
            raise WireError(f"unusable answer: expected a JSON object, got {type(data).__name__}")
        if data.get("type") == "error":
            err = data.get("error")
            err = err if isinstance(err, dict) else {}
            raise WireError(f"unusable answer: an error object: {err.get('type')}: {err.get('message')}")
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise WireError("unusable answer: no 'content' list in the answer")
        texts: list[str] = []
        thinking = thinking_bytes = 0
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise WireError("unusable answer: a text block without a string 'text'")
                texts.append(block["text"])
            elif kind in _THINKING:
                thinking += 1  # not part of the answer; its tokens are in usage.output_tokens
                if isinstance(block.get("thinking"), str):
                    thinking_bytes += len(block["thinking"].encode())
        text = "".join(texts)
        if _trims_prefill(request):
            text = text.lstrip()
        usage, reported = self._usage(data.get("usage"), request, text, thinking)
        if thinking_bytes:
            reasoning = estimate_tokens(thinking_bytes, usage.completion_tokens)
            usage = usage.model_copy(update={"reasoning_tokens": reasoning})
        extra: dict[str, Any] = {"thinking_blocks": thinking}
        if data.get("stop_sequence") is not None:
            extra["stop_sequence"] = data["stop_sequence"]
        completion = Completion(
            text=text,
            finish_reason=_finish(data.get("stop_reason")),
            completion_tokens=usage.completion_tokens if reported else None,
        )
        return Response(
            completions=(completion,),
            usage=usage,
            model=data.get("model") if isinstance(data.get("model"), str) else self.model,
            id=data.get("id") if isinstance(data.get("id"), str) else None,
            usage_reported=reported,
            extra=extra,
        )

    def _usage(self, raw: Any, request: Request, text: str, thinking: int) -> tuple[Usage, bool]:
        if raw is None:
            # A proxy that drops usage: charge an upper bound (each token covers >= 1 byte;
            # hidden thinking can use the whole max_tokens) and mark it as estimated.
            out = request.max_tokens if thinking else min(request.max_tokens, len(text.encode()))
            return Usage(prompt_tokens=prompt_token_bound(request), completion_tokens=out), False
        if not isinstance(raw, dict):
            raise WireError(f"unusable answer: 'usage' is {type(raw).__name__}, expected an object")
        usage = _input_usage(raw, _count(raw, "output_tokens", required=True))
        return check_usage(usage, request, _NAMES), True

    def _decoder(self, request: Request) -> StreamDecoder:
        return AnthropicStreamDecoder(request, model=self.model)


def _input_usage(raw: Mapping[str, Any], output: int) -> Usage:
    fresh = _count(raw, "input_tokens", required=True)
    read = _count(raw, "cache_read_input_tokens")
    write = _count(raw, "cache_creation_input_tokens")
    write_1h = 0
    split = raw.get("cache_creation")
    if isinstance(split, dict):
        # The writes by cache lifetime: 1-hour writes cost more than 5-minute ones.
        write_5m = count(split, "ephemeral_5m_input_tokens", "usage.cache_creation")
        write_1h = count(split, "ephemeral_1h_input_tokens", "usage.cache_creation")
        if raw.get("cache_creation_input_tokens") is None:
            write = write_5m + write_1h
        elif write_5m + write_1h != write:
            raise WireError(
                f"usage.cache_creation splits {write_5m + write_1h} tokens ({write_5m} 5-minute, "
                f"{write_1h} 1-hour) but usage.cache_creation_input_tokens is {write}"
            )
    elif split is not None:
        raise WireError(f"usage.cache_creation is {split!r}, expected an object")
    # Anthropic reports fresh, cache-read and cache-write input separately; ours is the sum.
    return Usage(
        prompt_tokens=fresh + read + write,
        completion_tokens=output,
        cached_prompt_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
    )


class AnthropicStreamDecoder:
    """Assembles a Messages event stream into one completion.

    Each event's data carries its `type` (the SSE event name repeats it), so the data alone
    is read. Until `message_delta` reports the cumulative output tokens, the output is counted
    from what arrived: at least a token per delta, else the byte estimate.

    Args:
        request: The request being answered (its `max_tokens`, prefill and prompt bound).
        model: The model name to report if `message_start` names none.
    """

    end_marker = "message_stop"

    def __init__(self, request: Request, *, model: str) -> None:
        self._request = request
        self._model = model
        self._id: str | None = None
        self._parts: list[str] = []
        self._trim = _trims_prefill(request)
        self._text_chunks = self._text_bytes = 0
        self._thinking_chunks = self._thinking_bytes = 0
        self._thinking_blocks = 0
        self._input: Usage | None = None  # from message_start: exact prompt, cache split
        self._start_output = 0
        self._output: int | None = None  # cumulative, from message_delta
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._stopped = False

    def feed(self, data: str, deltas: list[tuple[int, str]]) -> bool:
        """Read one event; True at `message_stop`."""
        event = json.loads(data)
        if not isinstance(event, dict):
            raise ValueError("an event is not a JSON object")
        kind = event.get("type")
        if kind == "content_block_delta":  # the common case first
            delta = event["delta"]
            dtype = delta.get("type")
            if dtype == "text_delta":
                self._text(delta["text"], deltas)
            elif dtype == "thinking_delta":
                thought = delta["thinking"]
                if not isinstance(thought, str):
                    raise TypeError("a thinking delta is not text")
                self._thinking_chunks += 1
                self._thinking_bytes += len(thought.encode())
            # signature_delta, input_json_delta and newer kinds carry no answer text.
        elif kind == "message_start":
            message = event["message"]
            if isinstance(message.get("model"), str):
                self._model = message["model"]
            if isinstance(message.get("id"), str):
                self._id = message["id"]
            usage = message.get("usage")
            if isinstance(usage, dict):
                self._input = check_usage(_input_usage(usage, 0), self._request, _NAMES)
                self._start_output = _count(usage, "output_tokens")
            elif usage is not None:
                raise WireError(f"message_start's usage is {usage!r}, expected an object")
        elif kind == "content_block_start":
            block = event["content_block"]
            if block.get("type") in _THINKING:
                self._thinking_blocks += 1
            elif block.get("type") == "text" and block.get("text"):
                self._text(block["text"], deltas)
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            if isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
            if isinstance(delta.get("stop_sequence"), str):
                self._stop_sequence = delta["stop_sequence"]
            usage = event.get("usage")
            if isinstance(usage, dict):
                output = _count(usage, "output_tokens", required=True)
                if usage.get("input_tokens") is not None:
                    # Newer servers repeat the (cumulative) input usage here: the later wins.
                    self._input = _input_usage(usage, 0)
                base = self._input or Usage(prompt_tokens=prompt_token_bound(self._request))
                check_usage(base.model_copy(update={"completion_tokens": output}), self._request, _NAMES)
                self._output = output
            elif usage is not None:
                raise WireError(f"message_delta's usage is {usage!r}, expected an object")
        elif kind == "message_stop":
            self._stopped = True
            return True
        elif kind == "error":
            err = event.get("error")
            err = err if isinstance(err, dict) else {}
            raise ServerSaid(f"{err.get('type', 'error')}: {err.get('message', '')}")
        # ping, content_block_stop and event types added later carry nothing to assemble.
        return False

    def _text(self, text: Any, deltas: list[tuple[int, str]]) -> None:
        if not isinstance(text, str):
            raise TypeError("a text delta is not text")
        if self._trim and not self._parts:
            text = text.lstrip()  # see _trims_prefill: until the first visible character
        if text:
            self._parts.append(text)
            self._text_chunks += 1
            self._text_bytes += len(text.encode())
            deltas.append((0, text))

    def complete(self) -> bool:
        """Without `message_stop`, an answer whose stop reason and usage arrived is whole."""
        return self._stop_reason is not None and self._output is not None and self._input is not None

    def reported(self) -> bool:
        """Whether the input and the final output usage have both been reported."""
        return self._input is not None and self._output is not None

    def prompt_reported(self) -> bool:
        """Whether the input usage has been reported (`message_start` carries it)."""
        return self._input is not None

    def _reasoning(self, cap: int) -> int:
        if not self._thinking_chunks:
            return 0
        return min(cap, max(self._thinking_chunks, estimate_tokens(self._thinking_bytes)))

    def usage(self) -> Usage:
        """The reported usage once `message_delta` came, else the usage counted so far."""
        max_tokens = self._request.max_tokens
        if self._output is not None:
            output = self._output
        else:
            estimate = min(max_tokens, estimate_tokens(self._text_bytes) + self._reasoning(max_tokens))
            # A delta is at least a token: more deltas than max_tokens is output past it (an
            # overrun the count must show), so only the byte estimate is capped.
            output = max(self._start_output, estimate, self._text_chunks + self._thinking_chunks)
        base = self._input or Usage(prompt_tokens=prompt_token_bound(self._request))
        return base.model_copy(
            update={"completion_tokens": output, "reasoning_tokens": self._reasoning(output)}
        )

    def started(self) -> int:
        """1 once any text or thinking arrived."""
        return 1 if self._text_chunks or self._thinking_chunks else 0

    def build(self, *, complete: bool) -> Response:
        """The `Response` so far (not complete: finish_reason "cancelled" unless it stopped)."""
        usage = self.usage()
        reported = self.reported()
        finish = _finish(self._stop_reason)
        if finish is None and not complete:
            finish = "cancelled"
        extra: dict[str, Any] = {"thinking_blocks": self._thinking_blocks}
        if self._stop_sequence is not None:
            extra["stop_sequence"] = self._stop_sequence
        completion = Completion(
            text="".join(self._parts),
            finish_reason=finish,
            completion_tokens=usage.completion_tokens if reported else None,
        )
        return Response(
            completions=(completion,),
            usage=usage,
            model=self._model,
            id=self._id,
            usage_reported=reported,
            extra=extra,
        )
