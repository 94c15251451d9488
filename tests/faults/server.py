"""The fault server: OpenAI chat / completions and Anthropic Messages, with seeded faults.

A Starlette app served by uvicorn in a background thread on 127.0.0.1 (port 0).
`FaultServer` is a context manager: it starts the server, waits until it accepts
connections, and always stops it (bounded in time). Every server answers all three routes:

- `POST /v1/chat/completions` and `POST /v1/completions` (OpenAI; `n`, `stream`,
  `stream_options.include_usage`);
- `POST /v1/messages` (Anthropic Messages; `stream`).

A request names its trial in the `x-fault-trial` header; the trial's plan (registered with
`register`) picks the fault of each of its requests in arrival order. The answers are
deterministic, seeded per request: steps, then "The answer is N." with N usually 42, so
votes converge or split. A judge prompt ("Score: N") gets a rating and a one-token request
(a reward model / PRM call) a score. Tokens are the server's own: words, digits one by one,
punctuation runs (about 2.3 UTF-8 bytes a token, denser than the SDK's 4-byte estimate).

The server's bill (`faults.bill`) records each request as it is handled, streamed tokens
one by one as they are sent, so a stream the client cuts is billed what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from adaptive.sim import RunningServer, ServerLimits, run_app_in_thread

from .bill import RequestBill, TrialBill
from .plans import FAULTS, Fault, Trial
from .tap import tick

__all__ = ["FaultServer", "tokenize"]

_TOKEN = re.compile(r" ?[A-Za-z]+| ?\d| ?[^\sA-Za-z\d]+|\s+")
# What the SDK's ledger adds to the byte count of a chat prompt (see adaptive._ledger).
_PER_MESSAGE, _PER_REQUEST = 8, 16


class InjectedReset(Exception):
    """Raised inside a response to make uvicorn drop the connection mid-answer."""


def tokenize(text: str) -> list[str]:
    """The server's tokens of `text` (they join back to `text`)."""
    return _TOKEN.findall(text)


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class _Parsed:
    """What the server reads from a request body."""

    def __init__(self, route: str, body: dict[str, Any]) -> None:
        self.route = route
        self.body = body
        self.stream = bool(body.get("stream"))
        self.n = int(body.get("n", 1)) if route != "messages" else 1
        self.max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        stop = body.get("stop") or body.get("stop_sequences") or ()
        self.stop: list[str] = [stop] if isinstance(stop, str) else list(stop)
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        texts: list[str] = []
        self.continuation = ""
        if route == "completions":
            prompt = str(body.get("prompt", ""))
            texts.append(prompt)
            self.user = prompt
            self.continuation = prompt
            self.bound = len(prompt.encode()) + _PER_REQUEST
        else:
            messages = list(body.get("messages") or [])
            if route == "messages" and body.get("system"):
                messages.insert(0, {"role": "system", "content": str(body["system"])})
            contents = [str(m.get("content", "")) for m in messages]
            texts.extend(contents)
            users = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
            self.user = users[-1] if users else ""
            if messages and messages[-1].get("role") == "assistant":
                self.continuation = contents[-1]
            self.bound = sum(len(c.encode()) + _PER_MESSAGE for c in contents) + _PER_REQUEST
        self.prompt_tokens = sum(len(tokenize(t)) for t in texts)


def _answer_text(parsed: _Parsed, rng: random.Random) -> str:
    """The full deterministic answer (before stop sequences and max_tokens)."""
    if parsed.max_tokens == 1:  # a reward model / PRM call
        return f"0.{rng.randint(1, 9)}"
    if "Score: N" in parsed.user:  # an LLM judge's rating prompt
        return f"Looks fine.\nScore: {rng.randint(3, 10)}"
    value = rng.choices((42, 41, 43, 24), weights=(6, 2, 1, 1))[0]
    steps = [
        f"Step 1: multiply 6 by {value - 35}.",
        f"Step 2: 6 times {value - 35} is {value}.",
        f"The answer is {value}.",
    ]
    done = parsed.continuation.count("Step ")
    return "\n\n".join(steps[min(done, len(steps) - 1) :])


def _choice_tokens(parsed: _Parsed, fault: Fault, rng: random.Random) -> tuple[list[str], str]:
    """(tokens, finish_reason) of one choice, with stop sequences, max_tokens and the fault."""
    text = _answer_text(parsed, rng)
    finish = "stop"
    for stop in parsed.stop:
        if stop and stop in text:
            text = text[: text.index(stop)]
    tokens = tokenize(text)
    if len(tokens) > parsed.max_tokens:
        tokens, finish = tokens[: parsed.max_tokens], "length"
    if fault.extra_tokens:
        tokens = tokens + [" more"] * (parsed.max_tokens - len(tokens) + fault.extra_tokens)
        finish = "length"
    return tokens, finish


class FaultApp:
    """The ASGI app and its state: registered trials, their request counters and bills."""

    def __init__(self) -> None:
        self.trials: dict[str, Trial] = {}
        self.bills: dict[str, TrialBill] = {}
        self.ports: dict[int, str] = {}  # client port -> the trial that last used it
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
            ]
        )

    async def chat(self, request: Request) -> Response:
        return await self._handle(request, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._handle(request, "completions")

    async def messages(self, request: Request) -> Response:
        return await self._handle(request, "messages")

    # -- one request ----------------------------------------------------------------------
    async def _handle(self, request: Request, route: str) -> Response:
        trial_id = request.headers.get("x-fault-trial", "anonymous")
        if request.client is not None:
            self.ports[request.client.port] = trial_id
        try:
            parsed = _Parsed(route, json.loads(await request.body()))
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": {"message": f"bad request: {exc}", "type": "invalid"}}, 400)
        bill = self.bills.setdefault(trial_id, TrialBill())
        index = len(bill.requests)
        trial = self.trials.get(trial_id)
        fault = trial.fault_for(index) if trial is not None else FAULTS["ok"]
        record = RequestBill(
            trial=trial_id,
            index=index,
            fault=fault.name,
            route=route,
            stream=parsed.stream,
            n=parsed.n,
            max_tokens=parsed.max_tokens,
            prompt_bound=parsed.bound,
            true_prompt=parsed.prompt_tokens,
            sent=int(request.headers.get("x-fault-sent", "0")),
            arrived=tick(),
        )
        bill.requests.append(record)
        response = await self._answer(parsed, fault, record, trial_id)
        # The SDK side's tap (`faults.tap`) learns which request an answer belongs to.
        response.headers["x-fault-index"] = str(index)
        if not isinstance(response, StreamingResponse):
            record.size = len(response.body)
        return response

    async def _answer(self, parsed: _Parsed, fault: Fault, record: RequestBill, trial_id: str) -> Response:
        index = record.index
        route = parsed.route
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            record.ended, record.finished = time.monotonic(), True
            headers = {"retry-after": f"{fault.retry_after}"} if fault.retry_after is not None else None
            kind = "rate_limit_error" if fault.status == 429 else "overloaded_error"
            return JSONResponse(
                {"type": "error", "error": {"message": f"injected {fault.name}", "type": kind}},
                status_code=fault.status,
                headers=headers,
            )
        rng = random.Random(zlib.crc32(f"{trial_id}/{index}/{parsed.body.get('seed')}".encode()))
        count = parsed.n + fault.choice_delta if route != "messages" else 1 + fault.choice_delta
        choices = [_choice_tokens(parsed, fault, rng) for _ in range(max(0, count))]
        if fault.duplicate_index and choices:
            choices.append(choices[0])
        # Anthropic has one choice: extra text blocks are more output of it, not more choices.
        record.lied_choices = route != "messages" and bool(fault.choice_delta or fault.duplicate_index)
        record.billed_prompt = (
            3 * parsed.bound + 100 if fault.usage == "inflate_prompt" else parsed.prompt_tokens
        )
        if parsed.stream:
            gen = self._stream(parsed, fault, record, choices)
            return StreamingResponse(gen, media_type="text/event-stream")
        return self._plain(parsed, fault, record, choices)

    def _usage(self, fault: Fault, record: RequestBill, completion: int) -> tuple[int, int] | None:
        """(prompt, completion) to report, recording the claim; None when usage is omitted."""
        if fault.usage == "omit":
            return None
        if fault.usage == "negative":
            prompt, completion = -record.billed_prompt, -completion
        else:
            prompt = record.billed_prompt
        record.claimed_prompt, record.claimed_completion = prompt, completion
        return prompt, completion

    # -- complete answers -----------------------------------------------------------------
    def _plain(
        self, parsed: _Parsed, fault: Fault, record: RequestBill, choices: list[tuple[list[str], str]]
    ) -> Response:
        completion = sum(len(t) for t, _ in choices)
        if fault.error_body:
            record.ended, record.finished = time.monotonic(), True
            return JSONResponse(
                {"type": "error", "error": {"message": "injected error in a 200", "type": "api_error"}}
            )
        record.sent_completion = completion
        record.choices = len(choices) if parsed.route != "messages" else min(1, len(choices))
        usage = self._usage(fault, record, completion)
        model = parsed.body.get("model", "fault-model")
        if parsed.route == "messages":
            content = [{"type": "text", "text": "".join(t)} for t, _ in choices]
            data: dict[str, Any] = {
                "id": f"msg_{record.trial}_{record.index}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": "end_turn" if choices and choices[0][1] == "stop" else "max_tokens",
                "stop_sequence": None,
            }
            if usage is not None:
                data["usage"] = {"input_tokens": usage[0], "output_tokens": usage[1]}
        else:
            items = []
            for i, (tokens, finish) in enumerate(choices):
                index = 0 if fault.duplicate_index and i == len(choices) - 1 else i
                text = "".join(tokens)
                body = (
                    {"message": {"role": "assistant", "content": text}}
                    if parsed.route == "chat"
                    else {"text": text}
                )
                items.append({"index": index, "finish_reason": finish, **body})
            data = {"id": f"cmpl-{record.trial}-{record.index}", "model": model, "choices": items}
            if usage is not None:
                data["usage"] = {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": usage[0] + usage[1],
                }
        raw = json.dumps(data).encode()
        if fault.malformed or fault.truncate_after is not None:
            raw = raw[: len(raw) // 2]  # cut JSON: the server generated it, the body broke
        if fault.reset_after is not None:
            return StreamingResponse(
                self._cut_body(raw, record),
                media_type="application/json",
                headers={"content-length": str(len(raw))},
            )
        record.ended, record.finished = time.monotonic(), True
        return Response(raw, media_type="application/json")

    async def _cut_body(self, raw: bytes, record: RequestBill) -> AsyncIterator[bytes]:
        yield raw[: len(raw) // 2]
        await asyncio.sleep(0)
        raise InjectedReset("connection reset mid-body")

    # -- streams --------------------------------------------------------------------------
    async def _stream(
        self, parsed: _Parsed, fault: Fault, record: RequestBill, choices: list[tuple[list[str], str]]
    ) -> AsyncIterator[bytes]:
        events = self._anthropic_events if parsed.route == "messages" else self._openai_events
        size = 0
        try:
            for chunk in events(parsed, fault, record, choices):
                if chunk is _TOKEN_MARK:
                    if fault.chunk_delay:
                        await asyncio.sleep(fault.chunk_delay)
                    continue
                size += len(chunk)
                yield chunk
            record.finished, record.size = True, size
        finally:
            record.ended = time.monotonic()

    def _faulted(self, fault: Fault, record: RequestBill, sent: int, error: bytes) -> Iterator[bytes]:
        """Mid-stream faults, checked before each token; yields what to send instead."""
        if fault.reset_after is not None and sent >= fault.reset_after:
            raise InjectedReset("connection reset mid-stream")
        if fault.truncate_after is not None and sent >= fault.truncate_after:
            raise _EndStream
        if fault.malformed and sent >= 2:
            yield b'data: {"choices": [{"index": 0, "delta": {"content": "bro\n\n'
            raise _EndStream
        if fault.error_body and sent >= 1:
            yield error
            raise _EndStream

    def _openai_events(
        self, parsed: _Parsed, fault: Fault, record: RequestBill, choices: list[tuple[list[str], str]]
    ) -> Iterator[Any]:
        chat = parsed.route == "chat"
        model = parsed.body.get("model", "fault-model")
        rid = f"cmpl-{record.trial}-{record.index}"
        error = _sse({"error": {"message": "injected error event", "type": "server_error"}})

        def chunk(i: int, text: str, finish: str | None) -> bytes:
            index = 0 if fault.duplicate_index and i == len(choices) - 1 else i
            part = {"delta": {"content": text}} if chat else {"text": text}
            return _sse(
                {"id": rid, "model": model, "choices": [{"index": index, "finish_reason": finish, **part}]}
            )

        try:
            sent, started = 0, set()
            longest = max((len(t) for t, _ in choices), default=0)
            for step in range(longest):  # interleave the choices, token by token
                for i, (tokens, _) in enumerate(choices):
                    if step >= len(tokens):
                        continue
                    yield from self._faulted(fault, record, sent, error)
                    yield _TOKEN_MARK
                    record.sent_completion += 1
                    if i not in started:
                        started.add(i)
                        record.choices += 1
                    sent += 1
                    yield chunk(i, tokens[step], None)
            yield from self._faulted(fault, record, sent, error)
            for i, (_, finish) in enumerate(choices):
                yield chunk(i, "", finish)
            usage = self._usage(fault, record, record.sent_completion)
            if parsed.include_usage and usage is not None:
                u = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
                yield _sse({"id": rid, "model": model, "choices": [], "usage": u})
            yield _sse("[DONE]")
        except _EndStream:
            return

    def _anthropic_events(
        self, parsed: _Parsed, fault: Fault, record: RequestBill, choices: list[tuple[list[str], str]]
    ) -> Iterator[Any]:
        model = parsed.body.get("model", "fault-model")
        error = _sse({"type": "error", "error": {"type": "api_error", "message": "injected"}}, "error")
        try:
            # The input usage goes out first (message_start): record the claim at once.
            claim = self._usage(fault, record, 0)
            start_usage = None if claim is None else {"input_tokens": claim[0], "output_tokens": 1}
            message: dict[str, Any] = {
                "id": f"msg_{record.trial}_{record.index}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
            }
            if start_usage is not None:
                message["usage"] = start_usage
            yield _sse({"type": "message_start", "message": message}, "message_start")
            sent = 0
            for block, (tokens, _) in enumerate(choices):
                index = 0 if fault.duplicate_index else block
                start = {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
                yield _sse(start, "content_block_start")
                for token in tokens:
                    yield from self._faulted(fault, record, sent, error)
                    yield _TOKEN_MARK
                    record.sent_completion += 1
                    record.choices = max(record.choices, 1)
                    sent += 1
                    delta = {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": token},
                    }
                    yield _sse(delta, "content_block_delta")
                yield _sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            yield from self._faulted(fault, record, sent, error)
            finish = choices[0][1] if choices else "stop"
            usage = self._usage(fault, record, record.sent_completion)
            delta_event: dict[str, Any] = {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "end_turn" if finish == "stop" else "max_tokens",
                    "stop_sequence": None,
                },
            }
            if usage is not None:
                delta_event["usage"] = {"output_tokens": usage[1]}
            yield _sse(delta_event, "message_delta")
            yield _sse({"type": "message_stop"}, "message_stop")
        except _EndStream:
            return


class _EndStream(Exception):
    """Ends a stream cleanly (no end marker)."""


_TOKEN_MARK = object()


class FaultServer:
    """Run a `FaultApp` on uvicorn in a background thread (127.0.0.1, port 0).

    Started and stopped by `adaptive.sim.run_app_in_thread`, like every loopback server.

    Example:
        >>> with FaultServer() as server:  # doctest: +SKIP
        ...     server.register(trial); base = server.url + "/v1"

    Attributes:
        app: The `FaultApp` (trials and bills).
        url: `http://127.0.0.1:PORT` once started.
    """

    # Trials hold many keep-alive connections at once, and some faults stall a stream.
    LIMITS = ServerLimits(keep_alive=30, graceful_shutdown=2, max_connections=100_000)

    def __init__(self) -> None:
        self.app = FaultApp()
        self.url = ""
        self._running: RunningServer | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> FaultServer:
        # Injected resets are exceptions out of the app by design: uvicorn need not log them.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        self._running = self._stack.enter_context(run_app_in_thread(self.app.app, limits=self.LIMITS))
        self.url = self._running.url
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._running = None

    # -- the driver's side ------------------------------------------------------------------
    def register(self, trial: Trial) -> None:
        """Apply `trial`'s plan to the requests that carry its id."""
        self.app.trials[trial.id] = trial

    def bill(self, trial_id: str) -> TrialBill:
        """What the server would charge the trial so far."""
        return self.app.bills.get(trial_id, TrialBill())

    def open_connections(self) -> list[tuple[int, str]]:
        """(client port, trial) of every connection the server still holds open."""
        if self._running is None:
            return []
        return [(port, self.app.ports.get(port, "?")) for _, port in self._running.connections()]

    def requests_handled(self) -> int:
        """Requests received (every route)."""
        return sum(len(b.requests) for b in self.app.bills.values())


@contextlib.contextmanager
def fault_servers(count: int) -> Iterator[list[FaultServer]]:
    """`count` running fault servers, all stopped on exit."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(FaultServer()) for _ in range(count)]
