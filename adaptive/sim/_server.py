"""The simulated reasoner and verifier behind a real OpenAI-compatible HTTP server.

Any OpenAI client (adaptive's `OpenAIChat` / `OpenAICompletions`, the `openai` package, curl)
can talk to it; the answers are exactly those of `simulate_response` and
`simulate_reward_response`, usage included, so a run over HTTP costs what the same run costs
in process. Start it with `python -m adaptive serve-sim` (blocking), or inside async code::

    async with serve_sim() as server:
        chat = OpenAIChat("sim-reasoner", base_url=server.url + "/v1", price=SimModel().price)

Routes (all JSON; errors are OpenAI-style `{"error": {"message", "type", "param", "code"}}`
with status 400, or 404 for an unknown model or path):

- `POST /v1/chat/completions`: `messages` (text content, or a list of text parts), `n`,
  `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `stop`, `seed`, `logprobs` +
  `top_logprobs` (OpenAI's chat shape), `stream` (+ `stream_options.include_usage`). A final
  assistant message is continued (an assistant prefill, as vLLM's `continue_final_message`).
  With `"model": "sim-verifier"` the request is scored instead (see below).
- `POST /v1/completions`: raw continuation of `prompt` (the problem, then a partial solution),
  with `logprobs: k` in the legacy shape (`tokens`, `token_logprobs`, `top_logprobs`,
  `text_offset`); streaming too. `echo` and `suffix` are not supported.
- `GET /v1/models`: the two models, with their prices in $ per million tokens.
- `POST /v1/reward`: score a solution with the verifier. Body: `messages` as
  `[user: problem, assistant: solution]`, or `prompt` (problem then solution), or `question`
  with `solution` (or `steps`, a list of step strings); optional `score`: "auto" (default),
  "outcome", "last" or "min". Answer: a chat completion whose message content is the JSON
  text `{"score": s, "step_scores": [...]}`, with `score` and `step_scores` also on each
  choice and at the top level.

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

from .._exceptions import ConfigError
from .._models import Completion, Message, Request, Response, TokenLogprob, Usage
from ._endpoint import simulate_response, simulate_reward_response, simulated_timing
from ._httpserver import (
    HTTPRequest,
    HTTPResponse,
    HTTPServer,
    RunningServer,
    SSEResponse,
    serve,
    serve_forever,
)
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

    def response(self) -> HTTPResponse:
        error = {"message": str(self), "type": "invalid_request_error", "param": self.param}
        return HTTPResponse.json({"error": error | {"code": self.code}}, status=self.status)


# -- reading request bodies ----------------------------------------------------------------


def _body(req: HTTPRequest) -> dict[str, Any]:
    try:
        data = req.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise _APIError(f"the request body is not valid JSON ({exc}): send a JSON object") from None
    if not isinstance(data, dict):
        raise _APIError(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


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
    return stream, _flag(options, "include_usage")


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
        return json.dumps(out, separators=(",", ":"))

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
            yield json.dumps(tail, separators=(",", ":"))
        yield "[DONE]"


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await anyio.sleep(seconds)


class SimServer:
    """An OpenAI-compatible HTTP front for `SimModel` and `SimVerifier` (routes in the module doc).

    Args:
        model: The simulated reasoner (default `SimModel()`).
        verifier: The simulated verifier (default `SimVerifier()`), served under its own name.
        first_token_seconds: Simulated time to the first token of every answer.
        seconds_per_token: Simulated decoding time per token (the `n` choices decode in parallel).
        jitter: Relative spread of those times, fixed by each request.

    Raises:
        ConfigError: The two models share a name, or a time or the jitter is out of range.

    Attributes:
        app: The `HTTPServer` to serve (`serve(server.app)`, or use `serve_sim`).
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
        self.app = HTTPServer(
            {
                ("POST", "/v1/chat/completions"): self._chat,
                ("POST", "/v1/completions"): self._completions,
                ("GET", "/v1/models"): self._models,
                ("POST", "/v1/reward"): self._reward,
            }
        )

    @property
    def model_names(self) -> tuple[str, str]:
        """(reasoner, verifier) model names."""
        return self.model.name, self.verifier.name

    # -- routes --------------------------------------------------------------------------
    async def _models(self, req: HTTPRequest) -> HTTPResponse:
        data = [
            {
                "id": m.name,
                "object": "model",
                "created": 0,
                "owned_by": "adaptive-sim",
                "pricing": {"input_per_mtok": m.price.input, "output_per_mtok": m.price.output},
            }
            for m in (self.model, self.verifier)
        ]
        return HTTPResponse.json({"object": "list", "data": data})

    async def _chat(self, req: HTTPRequest) -> HTTPResponse | SSEResponse:
        return await self._generate(req, chat=True)

    async def _completions(self, req: HTTPRequest) -> HTTPResponse | SSEResponse:
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

    async def _generate(self, req: HTTPRequest, *, chat: bool) -> HTTPResponse | SSEResponse:
        try:
            body = _body(req)
            kind, name = self._kind(body)
            request = _request(body, chat=chat)
            stream, include_usage = _stream_flags(body)
            if kind == "verifier":
                how = _score_mode(body)
                if how != "auto":
                    request = request.model_copy(update={"extra": {"score": how}})
            return await self._answer(
                request, kind, name, chat=chat, stream=stream, include_usage=include_usage
            )
        except _APIError as exc:
            return exc.response()

    async def _reward(self, req: HTTPRequest) -> HTTPResponse | SSEResponse:
        try:
            body = _body(req)
            name = body.get("model", self.verifier.name)
            if name != self.verifier.name:
                raise _APIError(
                    f"/v1/reward scores with {self.verifier.name!r}, got model {name!r}", param="model"
                )
            how = _score_mode(body)
            request = self._reward_request(body).model_copy(update={"extra": {"score": how}})
            return await self._answer(request, "verifier", self.verifier.name, chat=True)
        except _APIError as exc:
            return exc.response()

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

    async def _answer(
        self,
        request: Request,
        kind: Kind,
        name: str,
        *,
        chat: bool,
        stream: bool = False,
        include_usage: bool = False,
    ) -> HTTPResponse | SSEResponse:
        auto = 0
        if kind == "verifier":
            try:
                response = simulate_reward_response(self.verifier, request)
            except ConfigError as exc:
                raise _APIError(str(exc), param="messages") from None
        else:
            auto = next(self._auto_seeds) if request.seed is None else 0
            response = simulate_response(self.model, request, auto_seed=auto)
        first, per_token = simulated_timing(
            request,
            first_token_seconds=self.first_token_seconds,
            seconds_per_token=self.seconds_per_token,
            jitter=self.jitter,
            auto_seed=auto,
        )
        answer = _Answer(response, request, kind, chat, name)
        if stream:
            return SSEResponse(answer.events(first, per_token, include_usage))
        longest = max((c.completion_tokens or 0 for c in response.completions), default=0)
        await _sleep(first + per_token * longest)
        return HTTPResponse.json(answer.body())


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
) -> AsyncIterator[RunningServer]:
    """Serve the simulated models over HTTP while the block runs (port 0 picks a free port).

    The OpenAI base URL is `server.url + "/v1"`. The server stops, and its connections close,
    when the block exits.

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
    async with serve(sim.app, host, port) as server:
        yield server


def run_sim_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    seed: int = 0,
    first_token_seconds: float = 0.0,
    seconds_per_token: float = 0.0,
    on_ready: Callable[[RunningServer, SimServer], None] | None = None,
) -> None:
    """Serve the simulated models until interrupted (what `python -m adaptive serve-sim` runs).

    Args:
        host: Interface to listen on (keep 127.0.0.1 unless you mean to expose it).
        port: TCP port (0 picks a free one).
        seed: Seeds the simulated model's quirks and the verifier's noise.
        first_token_seconds: Simulated time to the first token.
        seconds_per_token: Simulated decoding time per token.
        on_ready: Called once the port is bound, e.g. to print the URL.
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

    serve_forever(sim.app, host, port, on_ready=ready)
