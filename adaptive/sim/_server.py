"""The simulated reasoner and verifier behind a real OpenAI- and Anthropic-compatible HTTP server.

Any OpenAI or Anthropic client (adaptive's `OpenAIChat` / `OpenAICompletions` / `Anthropic`,
the `openai` and `anthropic` packages, curl) can talk to it; the answers are exactly those of
`simulate_response` and `simulate_reward_response`, usage included, so a run over HTTP costs
what the same run costs in process. It is a Starlette app on uvicorn (the server extra:
`pip install 'adaptive-ttc[server]'`). Start it with `python -m adaptive serve-sim`
(blocking), or inside async code::

    async with serve_sim() as server:
        chat = OpenAIChat("sim-reasoner", base_url=server.url + "/v1", price=SimModel().price)

Routes (all JSON; errors are OpenAI-style `{"error": {"message", "type", "param", "code"}}`
with status 400, or 404 for an unknown model or path; `/v1/messages` answers errors in
Anthropic's shape, `{"type": "error", "error": {"type", "message", ...}}`):

- `POST /v1/chat/completions`: `messages` (text content, or a list of text parts), `n`,
  `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `stop`, `seed`, `logprobs` +
  `top_logprobs` (OpenAI's chat shape), `stream` (+ `stream_options.include_usage`). A final
  assistant message is continued (an assistant prefill, as vLLM's `continue_final_message`).
  With `"model": "sim-verifier"` the request is scored instead (see below).
- `POST /v1/completions`: raw continuation of `prompt` (the problem, then a partial solution),
  with `logprobs: k` in the legacy shape (`tokens`, `token_logprobs`, `top_logprobs`,
  `text_offset`); streaming too. `echo` and `suffix` are not supported.
- `POST /v1/messages`: Anthropic Messages (`model`, `messages` with string or text-block
  content, `system`, `max_tokens`, `temperature`, `top_p`, `stop_sequences`, `stream`). A
  final assistant message is continued (a prefill). Streams the real event sequence:
  `message_start` (input usage), `content_block_start`, `ping`, `content_block_delta`
  (`text_delta`), `content_block_stop`, `message_delta` (stop reason, output usage),
  `message_stop`. Anthropic has no seed: each request takes the next auto seed.
- `GET /v1/models`: the two models, with their prices in $ per million tokens (`pricing`);
  `GET /v1/models/{id}`: one of them (404, `model_not_found`, for any other id).
- `POST /v1/reward`: score a solution with the verifier. Body: `messages` as
  `[user: problem, assistant: solution]`, or `prompt` (problem then solution), or `question`
  with `solution` (or `steps`, a list of step strings); optional `score`: "auto" (default),
  "outcome", "last" or "min". Answer: a chat completion whose message content is the JSON
  text `{"score": s, "step_scores": [...]}`, with `score` and `step_scores` also on each
  choice and at the top level.

A request parameter the server cannot honour (`tools`, `response_format`, penalties other
than 0, ... anything a route does not read) is refused with a 400 naming it, never ignored;
`user` and `metadata` are accepted as labels. A body that is not a JSON object, or is nested
too deeply to read, gets a 400; one over the size limit a 413 (see `ServerLimits`).

How scores reach adaptive's verifiers: point an `OpenAIChat` at the same server with the
verifier's model name (`OpenAIChat("sim-verifier", base_url=..., price=SimVerifier().price)`);
its chat route answers with that JSON text, from which `RewardModel` reads "score" and
`ProcessRewardModel` reads "step_scores".

Requests without a `seed` take seeds from a per-server counter. Simulated decoding time is
optional (`first_token_seconds`, `seconds_per_token`); a stream then paces its tokens.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response as HTTPResponse
from starlette.responses import StreamingResponse
from starlette.routing import Route

from .._exceptions import ConfigError
from .._models import Completion, Message, Request, Response, TokenLogprob, Usage
from ._asgi import RunningServer, ServerLimits, serve_app, serve_app_forever
from ._endpoint import simulate_response, simulate_reward_response, simulated_timing
from ._solver import SimModel, tokenize
from ._verifier import SimVerifier

__all__ = ["SimServer", "run_sim_server", "serve_sim"]

_MAX_LEGACY_LOGPROBS = 20
_SCORE_MODES = ("auto", "outcome", "last", "min")
Kind = Literal["reasoner", "verifier"]


class _APIError(Exception):
    """A request the server refuses, answered with an OpenAI-style error object."""

    def __init__(
        self, message: str, *, param: str | None = None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code

    def response(self, *, anthropic: bool = False) -> HTTPResponse:
        kind = "not_found_error" if anthropic and self.status == 404 else "invalid_request_error"
        error = {"message": str(self), "type": kind, "param": self.param, "code": self.code}
        if anthropic:  # Anthropic's shape: {"type": "error", "error": {"type", "message"}}
            return _json({"type": "error", "error": error}, status=self.status)
        return _json({"error": error}, status=self.status)


def _json(obj: Any, status: int = 200) -> HTTPResponse:
    return HTTPResponse(json.dumps(obj, separators=(",", ":")), status, media_type="application/json")


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield event.encode()
        finally:
            # A stream the client left part-way is closed here, not by the garbage collector.
            await events.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(body(), media_type="text/event-stream", headers={"cache-control": "no-store"})


def _data(payload: str) -> str:
    return f"data: {payload}\n\n"


# -- reading request bodies ----------------------------------------------------------------


async def _body(req: HTTPRequest, route: str) -> dict[str, Any]:
    raw = await req.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _APIError(f"the request body is not valid JSON ({exc}): send a JSON object") from None
    except RecursionError:
        raise _APIError("the request body is JSON nested too deeply to read: send a flatter object") from None
    if not isinstance(data, dict):
        raise _APIError(f"the request body must be a JSON object, got {type(data).__name__}")
    _refuse_unknown(data, route)
    return data


# What each route reads. Anything else would be silently ignored, so it is refused with a 400
# naming it (`tools`, `response_format`, penalties, ...); a null is the same as absent.
def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


_FIELDS = {
    "chat": _names(
        "model messages n max_tokens max_completion_tokens temperature top_p stop seed logprobs "
        "top_logprobs stream stream_options score continue_final_message add_generation_prompt"
    ),
    "completions": _names(
        "model prompt n max_tokens temperature top_p stop seed logprobs echo suffix stream "
        "stream_options score"
    ),
    "reward": _names("model messages prompt question solution steps score"),
    "messages": _names("model messages system max_tokens temperature top_p stop_sequences stream"),
}
# Fields that change nothing in an answer (labels for the caller's own bookkeeping).
_INFORMATIONAL = {"user", "metadata"}
# Parameters whose default is accepted (it is what the simulator does anyway).
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "best_of": (1,),
    "parallel_tool_calls": (False,),
}


def _refuse_unknown(body: Mapping[str, Any], route: str) -> None:
    known = _FIELDS[route] | _INFORMATIONAL
    for name, value in body.items():
        if name in known or value is None:
            continue
        if any(value == d and type(value) is type(d) for d in _DEFAULTS.get(name, ())):
            continue
        raise _APIError(
            f"{name} is not supported by the sim server, which would ignore it: drop it "
            f"(this route reads {', '.join(sorted(_FIELDS[route]))})",
            param=name,
            code="unsupported_parameter",
        )


def _int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _APIError(f"{name} must be an integer, got {value!r}", param=name)
    return value


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _APIError(f"{name} must be a finite number, got {value!r}", param=name)
    return float(value)


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _APIError(f"{name} must be true or false, got {value!r}", param=name)
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    value = body.get("stop")
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise _APIError("stop must be a non-empty string or a list of them", param="stop")
    return tuple(value)


def _content(raw: Any, where: str) -> str:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts = []
        for part in raw:
            text = part.get("text") if isinstance(part, dict) else None
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(text, str)):
                raise _APIError(
                    f"{where}: only text content is supported ({{'type': 'text', 'text': ...}} parts)",
                    param="messages",
                )
            parts.append(part["text"])
        return "".join(parts)
    raise _APIError(f"{where}: content must be a string or a list of text parts", param="messages")


def _messages(body: Mapping[str, Any]) -> tuple[Message, ...]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _APIError("messages must be a non-empty list of {role, content} objects", param="messages")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _APIError(f"messages[{i}] must be an object with a role and content", param="messages")
        _only(m, {"role", "content"}, f"messages[{i}]")
        try:
            out.append(Message(role=m["role"], content=_content(m.get("content"), f"messages[{i}]")))
        except ConfigError as exc:
            raise _APIError(f"messages[{i}]: {exc}", param="messages") from None
    return tuple(out)


def _prompt(body: Mapping[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # a batch of one prompt
    if isinstance(prompt, list):
        raise _APIError("batched prompts are not supported: send one prompt per request", param="prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _APIError("prompt must be a non-empty string", param="prompt")
    return prompt


def _request(body: Mapping[str, Any], *, chat: bool) -> Request:
    """Turn an OpenAI request body into a sim `Request` (400 on anything malformed)."""
    fields: dict[str, Any] = {}
    if chat:
        # A final assistant message stays in `messages`: the simulator continues it, and it is
        # billed like the in-process prefill.
        fields["messages"] = _messages(body)
        # vLLM's prefill switches: the simulator always continues a final assistant message.
        _flag(body, "add_generation_prompt")
        if body.get("continue_final_message") is False and fields["messages"][-1].role == "assistant":
            raise _APIError(
                "the sim server always continues a final assistant message: drop "
                "continue_final_message=false, or end the messages with a user message",
                param="continue_final_message",
            )
        _flag(body, "continue_final_message")
        logprobs = _flag(body, "logprobs")
        top = _int(body, "top_logprobs")
        if top is not None and not logprobs:
            raise _APIError("top_logprobs needs logprobs set to true", param="top_logprobs")
        fields["logprobs"] = logprobs
        fields["top_logprobs"] = top or None
    else:
        fields["prompt"] = _prompt(body)
        if _flag(body, "echo"):
            raise _APIError("echo is not supported by the sim server", param="echo")
        if body.get("suffix") is not None:
            raise _APIError("suffix is not supported by the sim server", param="suffix")
        k = _int(body, "logprobs")
        if k is not None:
            if not 0 <= k <= _MAX_LEGACY_LOGPROBS:
                top = _MAX_LEGACY_LOGPROBS
                raise _APIError(f"logprobs must be between 0 and {top}, got {k}", param="logprobs")
            fields["logprobs"] = True
            fields["top_logprobs"] = k or None
    n = _int(body, "n")
    limit = _int(body, "max_completion_tokens")
    if limit is None:
        limit = _int(body, "max_tokens")
    for name, value in (
        ("n", n),
        ("max_tokens", limit),
        ("temperature", _number(body, "temperature")),
        ("top_p", _number(body, "top_p")),
        ("stop", _stop(body)),
        ("seed", _int(body, "seed")),
    ):
        if value is not None:
            fields[name] = value
    try:
        return Request(**fields)
    except ConfigError as exc:
        raise _APIError(str(exc)) from None


def _score_mode(body: Mapping[str, Any]) -> str:
    how = body.get("score", "auto")
    if how not in _SCORE_MODES:
        raise _APIError(f"score must be one of {', '.join(_SCORE_MODES)}, got {how!r}", param="score")
    return str(how)


def _stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise _APIError("stream_options must be an object", param="stream_options")
    _only(options, {"include_usage"}, "stream_options")
    return stream, _flag(options, "include_usage")


def _only(obj: Mapping[str, Any], known: set[str], where: str) -> None:
    """Refuse a nested field the simulator would ignore (a message's `name`, `tool_calls`, ...)."""
    for key, value in obj.items():
        if key not in known and value is not None:
            raise _APIError(
                f"{where}.{key} is not supported by the sim server, which would ignore it: drop it",
                param=f"{where}.{key}",
                code="unsupported_parameter",
            )


# -- writing answers -----------------------------------------------------------------------


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _token_bytes(token: str) -> list[int]:
    return list(token.encode())


def _chat_logprobs(tokens: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": _token_bytes(t.token),
                "top_logprobs": [{"token": a, "logprob": lp, "bytes": _token_bytes(a)} for a, lp in t.top],
            }
            for t in tokens
        ]
    }


def _legacy_logprobs(tokens: tuple[TokenLogprob, ...], k: int, offset: int) -> dict[str, Any]:
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) for t in tokens] if k > 0 else None,
        "text_offset": offsets,
    }


def _scores(c: Completion) -> dict[str, Any]:
    try:
        data = json.loads(c.text)
    except ValueError:  # pragma: no cover - the verifier always writes JSON
        return {}
    return {"score": data.get("score"), "step_scores": data.get("step_scores")}


class _Answer:
    """One simulated `Response` and how to render it in OpenAI's shapes."""

    def __init__(self, response: Response, request: Request, kind: Kind, chat: bool, model: str) -> None:
        self.response = response
        self.request = request
        self.kind = kind
        self.chat = chat
        self.model = model
        prefix = "chatcmpl" if chat else "cmpl"
        self.id = f"{prefix}-{response.id or uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.k = request.top_logprobs or 0
        self.auto = 0  # the auto seed it was generated with (0 when the request had a seed)

    def _choice_extra(self, c: Completion) -> dict[str, Any]:
        return _scores(c) if self.kind == "verifier" else {}

    def body(self) -> dict[str, Any]:
        """The complete (non-streamed) answer."""
        choices = []
        for c in self.response.completions:
            if self.chat:
                lps = _chat_logprobs(c.logprobs) if c.logprobs is not None else None
                choice = {
                    "index": c.index,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": lps,
                    "finish_reason": c.finish_reason,
                }
            else:
                offset = len(self.request.prompt or "")
                lps = _legacy_logprobs(c.logprobs, self.k, offset) if c.logprobs is not None else None
                choice = {"index": c.index, "text": c.text, "logprobs": lps, "finish_reason": c.finish_reason}
            choices.append(choice | self._choice_extra(c))
        out: dict[str, Any] = self._head("chat.completion" if self.chat else "text_completion")
        out["choices"] = choices
        out["usage"] = _usage(self.response.usage)
        if self.kind == "verifier" and self.response.completions:
            out |= _scores(self.response.completions[0])
        return out

    def _head(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "adaptive-sim",
        }

    def pieces(self, c: Completion) -> list[tuple[str, TokenLogprob | None]]:
        """The streamed pieces of one completion: its tokens (with logprobs when asked)."""
        if c.logprobs is not None:
            return [(t.token, t) for t in c.logprobs]
        if self.kind == "reasoner":
            return [(t, None) for t in tokenize(c.text)]
        return [(c.text, None)] if c.text else []

    def _chunk(self, choice: dict[str, Any], include_usage: bool) -> str:
        out = self._head("chat.completion.chunk" if self.chat else "text_completion")
        out["choices"] = [choice]
        if include_usage:
            out["usage"] = None
        return _data(json.dumps(out, separators=(",", ":")))

    def _piece_choice(
        self, c: Completion, piece: str, lp: TokenLogprob | None, offset: int
    ) -> dict[str, Any]:
        if self.chat:
            return {
                "index": c.index,
                "delta": {"content": piece},
                "logprobs": _chat_logprobs((lp,)) if lp is not None else None,
                "finish_reason": None,
            }
        legacy = _legacy_logprobs((lp,), self.k, offset) if lp is not None else None
        return {"index": c.index, "text": piece, "logprobs": legacy, "finish_reason": None}

    def _final_choice(self, c: Completion) -> dict[str, Any]:
        if self.chat:
            choice = {"index": c.index, "delta": {}, "logprobs": None, "finish_reason": c.finish_reason}
        else:
            choice = {"index": c.index, "text": "", "logprobs": None, "finish_reason": c.finish_reason}
        return choice | self._choice_extra(c)

    async def events(self, first: float, per_token: float, include_usage: bool) -> AsyncIterator[str]:
        """The answer as server-sent events, paced like decoding, ending with [DONE]."""
        completions = self.response.completions
        pieces = [self.pieces(c) for c in completions]
        offsets = [len(self.request.prompt or "")] * len(completions)
        if self.chat:
            for c in completions:
                role = {"index": c.index, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
                yield self._chunk(role | {"finish_reason": None}, include_usage)
        await _sleep(first)
        longest = max((len(p) for p in pieces), default=0)
        for j in range(longest):
            if j:
                await _sleep(per_token)
            for i, c in enumerate(completions):
                if j < len(pieces[i]):
                    piece, lp = pieces[i][j]
                    yield self._chunk(self._piece_choice(c, piece, lp, offsets[i]), include_usage)
                    offsets[i] += len(piece)
                if j == len(pieces[i]) - 1:
                    yield self._chunk(self._final_choice(c), include_usage)
        for i, c in enumerate(completions):
            if not pieces[i]:  # nothing generated: only the finish
                yield self._chunk(self._final_choice(c), include_usage)
        if include_usage:
            tail = self._head("chat.completion.chunk" if self.chat else "text_completion")
            tail["choices"] = []
            tail["usage"] = _usage(self.response.usage)
            yield _data(json.dumps(tail, separators=(",", ":")))
        yield _data("[DONE]")


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await anyio.sleep(seconds)


# -- Anthropic Messages -------------------------------------------------------------------

_ANTHROPIC_STOP = {"length": "max_tokens"}


def _anthropic_text(raw: Any, where: str) -> str:
    """A Messages `content` (or `system`): a string, or a list of text blocks."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts = []
        for block in raw:
            text = block.get("text") if isinstance(block, dict) else None
            if not (isinstance(block, dict) and block.get("type") == "text" and isinstance(text, str)):
                raise _APIError(
                    f"{where}: only text blocks are supported ({{'type': 'text', 'text': ...}})",
                    param="messages",
                )
            parts.append(text)
        return "".join(parts)
    raise _APIError(f"{where}: content must be a string or a list of text blocks", param="messages")


def _anthropic_request(body: Mapping[str, Any]) -> Request:
    """Turn a Messages request body into a sim `Request` (400 on anything malformed)."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _APIError("messages must be a non-empty list of {role, content} objects", param="messages")
    messages: list[Message] = []
    system = body.get("system")
    try:
        if system is not None:
            messages.append(Message(role="system", content=_anthropic_text(system, "system")))
        for i, m in enumerate(raw):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                raise _APIError(f"messages[{i}] must have the role 'user' or 'assistant'", param="messages")
            _only(m, {"role", "content"}, f"messages[{i}]")
            content = _anthropic_text(m.get("content"), f"messages[{i}]")
            messages.append(Message(role=m["role"], content=content))
    except ConfigError as exc:
        raise _APIError(f"messages: {exc}", param="messages") from None
    limit = _int(body, "max_tokens")
    if limit is None:
        raise _APIError("max_tokens is required", param="max_tokens")
    fields: dict[str, Any] = {"messages": tuple(messages), "max_tokens": limit}
    for name, value in (("temperature", _number(body, "temperature")), ("top_p", _number(body, "top_p"))):
        if value is not None:
            fields[name] = value
    stops = body.get("stop_sequences")
    if stops is not None:
        fields["stop"] = _stop({"stop": stops})
    try:
        return Request(**fields)
    except ConfigError as exc:
        raise _APIError(str(exc)) from None


def _anthropic_usage(usage: Usage, output: int | None = None) -> dict[str, Any]:
    # Anthropic's input_tokens leaves out cache reads and writes, which have fields of their own.
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_prompt_tokens - usage.cache_write_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_prompt_tokens,
        "output_tokens": usage.completion_tokens if output is None else output,
    }


class _Message:
    """One simulated completion rendered as an Anthropic Messages answer."""

    def __init__(self, answer: _Answer, stop_sequence: str | None) -> None:
        self.answer = answer
        self.completion = answer.response.completions[0]
        self.id = f"msg_{answer.response.id or uuid.uuid4().hex[:24]}"
        self.stop_sequence = stop_sequence
        finish = self.completion.finish_reason or "stop"
        natural = _ANTHROPIC_STOP.get(finish, "end_turn")
        self.stop_reason = "stop_sequence" if stop_sequence is not None else natural

    def _skeleton(self, content: list[dict[str, Any]], stop_reason: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.answer.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": self.stop_sequence if stop_reason is not None else None,
        }

    def body(self) -> dict[str, Any]:
        """The complete (non-streamed) answer."""
        out = self._skeleton([{"type": "text", "text": self.completion.text}], self.stop_reason)
        out["usage"] = _anthropic_usage(self.answer.response.usage)
        return out

    async def events(self, first: float, per_token: float) -> AsyncIterator[str]:
        """The Messages event stream: message_start, one text block, message_delta, message_stop."""

        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name} | data, separators=(',', ':'))}\n\n"

        usage = self.answer.response.usage
        start = self._skeleton([], None) | {"usage": _anthropic_usage(usage, output=0)}
        yield event("message_start", {"message": start})
        block = {"index": 0, "content_block": {"type": "text", "text": ""}}
        yield event("content_block_start", block)
        yield event("ping", {})
        await _sleep(first)
        for j, (piece, _) in enumerate(self.answer.pieces(self.completion)):
            if j:
                await _sleep(per_token)
            yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        yield event("content_block_stop", {"index": 0})
        delta = {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence}
        yield event("message_delta", {"delta": delta, "usage": {"output_tokens": usage.completion_tokens}})
        yield event("message_stop", {})


def _stop_hit(full: str, text: str, stops: tuple[str, ...] | None) -> str | None:
    """The stop sequence that ended `text`, given the same answer generated without stops."""
    if not stops or len(full) <= len(text) or not full.startswith(text):
        return None
    rest = full[len(text) :]
    return next((s for s in stops if rest.startswith(s)), None)


class SimServer:
    """An OpenAI- and Anthropic-compatible HTTP front for `SimModel` and `SimVerifier`.

    Routes are in the module doc. Served with Starlette on uvicorn (the server extra).

    Args:
        model: The simulated reasoner (default `SimModel()`).
        verifier: The simulated verifier (default `SimVerifier()`), served under its own name.
        first_token_seconds: Simulated time to the first token of every answer.
        seconds_per_token: Simulated decoding time per token (the `n` choices decode in parallel).
        jitter: Relative spread of those times, fixed by each request.

    Raises:
        ConfigError: The two models share a name, or a time or the jitter is out of range.

    Attributes:
        app: The Starlette app to serve (`serve_app(server.app)`, or use `serve_sim`).
    """

    def __init__(
        self,
        model: SimModel | None = None,
        verifier: SimVerifier | None = None,
        *,
        first_token_seconds: float = 0.0,
        seconds_per_token: float = 0.0,
        jitter: float = 0.2,
    ) -> None:
        self.model = model if model is not None else SimModel()
        self.verifier = verifier if verifier is not None else SimVerifier()
        if self.model.name == self.verifier.name:
            raise ConfigError(
                f"the model and the verifier are both named {self.model.name!r}: give them different "
                "names, the server picks one by the request's model field"
            )
        # Validates the times now rather than on the first request.
        simulated_timing(
            Request(prompt="x"),
            first_token_seconds=first_token_seconds,
            seconds_per_token=seconds_per_token,
            jitter=jitter,
        )
        self.first_token_seconds = first_token_seconds
        self.seconds_per_token = seconds_per_token
        self.jitter = jitter
        self._auto_seeds = itertools.count()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self._model, methods=["GET"]),
                Route("/v1/reward", self._reward, methods=["POST"]),
            ],
            exception_handlers={HTTPException: self._http_error, Exception: self._crash},
        )

    @property
    def model_names(self) -> tuple[str, str]:
        """(reasoner, verifier) model names."""
        return self.model.name, self.verifier.name

    # -- routes --------------------------------------------------------------------------
    @staticmethod
    async def _http_error(req: HTTPRequest, exc: Exception) -> HTTPResponse:
        # Unknown paths and wrong methods answer in the API's error shape, not Starlette's text.
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            message = f"method {req.method} not allowed on {req.url.path}"
        elif exc.status_code == 404:
            message = f"no route for {req.method} {req.url.path}"
        else:
            message = str(exc.detail)
        return _APIError(message, status=exc.status_code).response(anthropic=req.url.path == "/v1/messages")

    @staticmethod
    async def _crash(req: HTTPRequest, exc: Exception) -> HTTPResponse:
        # A bug in the simulator: say so in the API's shape (uvicorn also logs the traceback).
        error = _APIError(f"the sim server failed: {type(exc).__name__}: {exc}", status=500)
        return error.response()

    def _model_object(self, m: SimModel | SimVerifier) -> dict[str, Any]:
        return {
            "id": m.name,
            "object": "model",
            "created": 0,
            "owned_by": "adaptive-sim",
            "pricing": {"input_per_mtok": m.price.input, "output_per_mtok": m.price.output},
        }

    async def _models(self, req: HTTPRequest) -> HTTPResponse:
        return _json({"object": "list", "data": [self._model_object(m) for m in (self.model, self.verifier)]})

    async def _model(self, req: HTTPRequest) -> HTTPResponse:
        name = req.path_params["model_id"]
        try:
            self._kind({"model": name})
        except _APIError as exc:
            return exc.response()
        return _json(self._model_object(self.model if name == self.model.name else self.verifier))

    async def _chat(self, req: HTTPRequest) -> HTTPResponse:
        return await self._generate(req, chat=True)

    async def _completions(self, req: HTTPRequest) -> HTTPResponse:
        return await self._generate(req, chat=False)

    def _kind(self, body: Mapping[str, Any]) -> tuple[Kind, str]:
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise _APIError(
                f"model is required: {self.model.name!r} (reasoner) or {self.verifier.name!r} (verifier)",
                param="model",
            )
        if name == self.model.name:
            return "reasoner", name
        if name == self.verifier.name:
            return "verifier", name
        raise _APIError(
            f"the model {name!r} does not exist: this server has {self.model.name!r} (reasoner) and "
            f"{self.verifier.name!r} (verifier)",
            param="model",
            status=404,
            code="model_not_found",
        )

    async def _generate(self, req: HTTPRequest, *, chat: bool) -> HTTPResponse:
        try:
            body = await _body(req, "chat" if chat else "completions")
            kind, name = self._kind(body)
            request = _request(body, chat=chat)
            stream, include_usage = _stream_flags(body)
            if kind == "verifier":
                how = _score_mode(body)
                if how != "auto":
                    request = request.model_copy(update={"extra": {"score": how}})
            elif body.get("score") is not None:
                raise _APIError("score applies to the verifier model only", param="score")
            answer, first, per_token = self._simulate(request, kind, name, chat=chat)
        except _APIError as exc:
            return exc.response()
        if stream:
            return _sse(answer.events(first, per_token, include_usage))
        await self._decode(answer, first, per_token)
        return _json(answer.body())

    async def _messages(self, req: HTTPRequest) -> HTTPResponse:
        try:
            body = await _body(req, "messages")
            kind, name = self._kind(body)
            request = _anthropic_request(body)
            stream = _flag(body, "stream")
            answer, first, per_token = self._simulate(request, kind, name, chat=True)
            stop_sequence = None
            if kind == "reasoner" and request.stop and answer.response.completions:
                # The simulator reports "stop" for both a natural end and a stop sequence;
                # Anthropic tells them apart, so see what the same answer holds past the cut.
                unstopped, _, _ = self._simulate(
                    request.model_copy(update={"stop": None}), kind, name, chat=True, auto=answer.auto
                )
                full = unstopped.response.completions[0].text
                stop_sequence = _stop_hit(full, answer.response.completions[0].text, request.stop)
        except _APIError as exc:
            return exc.response(anthropic=True)
        message = _Message(answer, stop_sequence)
        if stream:
            return _sse(message.events(first, per_token))
        await self._decode(answer, first, per_token)
        return _json(message.body())

    async def _reward(self, req: HTTPRequest) -> HTTPResponse:
        try:
            body = await _body(req, "reward")
            name = body.get("model", self.verifier.name)
            if name != self.verifier.name:
                raise _APIError(
                    f"/v1/reward scores with {self.verifier.name!r}, got model {name!r}", param="model"
                )
            how = _score_mode(body)
            request = self._reward_request(body).model_copy(update={"extra": {"score": how}})
            answer, first, per_token = self._simulate(request, "verifier", self.verifier.name, chat=True)
        except _APIError as exc:
            return exc.response()
        await self._decode(answer, first, per_token)
        return _json(answer.body())

    def _reward_request(self, body: Mapping[str, Any]) -> Request:
        if "messages" in body:
            return Request(messages=_messages(body), max_tokens=1)
        if "prompt" in body:
            return Request(prompt=_prompt(body), max_tokens=1)
        question = body.get("question")
        if not isinstance(question, str) or not question.strip():
            raise _APIError(
                "send messages [user: problem, assistant: solution], a prompt, or a question with a "
                "solution (or steps)",
                param="question",
            )
        solution = body.get("solution")
        steps = body.get("steps")
        if solution is None and isinstance(steps, list) and all(isinstance(s, str) for s in steps):
            solution = "\n\n".join(steps)
        if not isinstance(solution, str) or not solution.strip():
            raise _APIError(
                "solution must be a non-empty string (or steps a list of strings)", param="solution"
            )
        messages = (Message(role="user", content=question), Message(role="assistant", content=solution))
        return Request(messages=messages, max_tokens=1)

    def _simulate(
        self, request: Request, kind: Kind, name: str, *, chat: bool, auto: int | None = None
    ) -> tuple[_Answer, float, float]:
        """The simulated answer and its (first-token, per-token) times."""
        seed = 0
        if kind == "verifier":
            try:
                response = simulate_reward_response(self.verifier, request)
            except ConfigError as exc:
                raise _APIError(str(exc), param="messages") from None
        else:
            if auto is not None:
                seed = auto
            elif request.seed is None:
                seed = next(self._auto_seeds)
            response = simulate_response(self.model, request, auto_seed=seed)
        first, per_token = simulated_timing(
            request,
            first_token_seconds=self.first_token_seconds,
            seconds_per_token=self.seconds_per_token,
            jitter=self.jitter,
            auto_seed=seed,
        )
        answer = _Answer(response, request, kind, chat, name)
        answer.auto = seed
        return answer, first, per_token

    @staticmethod
    async def _decode(answer: _Answer, first: float, per_token: float) -> None:
        """Wait the simulated decoding time of a complete (non-streamed) answer."""
        longest = max((c.completion_tokens or 0 for c in answer.response.completions), default=0)
        await _sleep(first + per_token * longest)


@contextlib.asynccontextmanager
async def serve_sim(
    model: SimModel | None = None,
    verifier: SimVerifier | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    first_token_seconds: float = 0.0,
    seconds_per_token: float = 0.0,
    jitter: float = 0.2,
    limits: ServerLimits | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve the simulated models over HTTP while the block runs (port 0 picks a free port).

    The OpenAI base URL is `server.url + "/v1"`, the Anthropic one `server.url`. The server
    (uvicorn, in this event loop) stops, and its connections close, when the block exits.
    Needs the server extra (`pip install 'adaptive-ttc[server]'`).

    Example:
        >>> async with serve_sim() as server:  # doctest: +SKIP
        ...     chat = OpenAIChat("sim-reasoner", base_url=server.url + "/v1", price=SimModel().price)
    """
    sim = SimServer(
        model,
        verifier,
        first_token_seconds=first_token_seconds,
        seconds_per_token=seconds_per_token,
        jitter=jitter,
    )
    async with serve_app(sim.app, host, port, limits=limits) as server:
        yield server


def run_sim_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    seed: int = 0,
    first_token_seconds: float = 0.0,
    seconds_per_token: float = 0.0,
    on_ready: Callable[[RunningServer, SimServer], None] | None = None,
    limits: ServerLimits | None = None,
) -> None:
    """Serve the simulated models until interrupted (what `python -m adaptive serve-sim` runs).

    Args:
        host: Interface to listen on (keep 127.0.0.1 unless you mean to expose it).
        port: TCP port (0 picks a free one).
        seed: Seeds the simulated model's quirks and the verifier's noise.
        first_token_seconds: Simulated time to the first token.
        seconds_per_token: Simulated decoding time per token.
        on_ready: Called once the port is bound, e.g. to print the URL.
        limits: Timeouts and limits of the server (default `ServerLimits()`).
    """
    sim = SimServer(
        SimModel(seed=seed),
        SimVerifier(seed=seed),
        first_token_seconds=first_token_seconds,
        seconds_per_token=seconds_per_token,
    )

    def ready(server: RunningServer) -> None:
        if on_ready is not None:
            on_ready(server, sim)

    serve_app_forever(sim.app, host, port, limits=limits, on_ready=ready)
