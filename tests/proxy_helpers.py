"""Loopback upstreams for the proxy's tests: the simulator, scripted failures, a Messages API."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from anyio.from_thread import start_blocking_portal
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from adaptive import Message, Request
from adaptive.sim import SimModel, serve_sim, simulate_response

QUESTION = (
    "Ana has 48 stamps. She buys 3 boxes with 12 stamps in each box. She gives away 19 stamps. "
    "How many stamps does Ana have now?"
)


@contextlib.contextmanager
def sim_upstream(**kwargs: Any) -> Iterator[str]:
    """`serve_sim()` on a loop in a background thread; yields its OpenAI base URL."""
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(serve_sim(**kwargs)) as server:
        yield server.url + "/v1"


@contextlib.contextmanager
def serve_app(app: Starlette) -> Iterator[str]:
    """Any ASGI app under uvicorn in a thread on 127.0.0.1; yields its root URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def failing_app() -> Starlette:
    """An OpenAI-shaped upstream whose model name says which status to fail with ("fail-429")."""

    async def chat(request: HTTPRequest) -> JSONResponse:
        body = await request.json()
        status = int(str(body["model"]).rsplit("-", 1)[1])
        return JSONResponse({"error": {"message": f"scripted {status}", "type": "x", "code": None}}, status)

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def messages_app(model: SimModel | None = None) -> Starlette:
    """A loopback Anthropic Messages API (`POST /v1/messages`, plain and streamed) around SimModel."""
    sim = model or SimModel()
    seen: list[dict[str, Any]] = []

    async def messages(request: HTTPRequest) -> JSONResponse | StreamingResponse:
        body = await request.json()
        seen.append({"headers": dict(request.headers), "body": body})
        if "x-api-key" not in request.headers:
            return JSONResponse(
                {"type": "error", "error": {"type": "authentication_error", "message": "no key"}}, 401
            )
        msgs = [Message(role=m["role"], content=m["content"]) for m in body["messages"]]
        if body.get("system"):
            msgs.insert(0, Message(role="system", content=body["system"]))
        req = Request(messages=tuple(msgs), max_tokens=body["max_tokens"], seed=body.get("seed"))
        resp = simulate_response(sim, req)
        c = resp.completions[0]
        usage = {"input_tokens": resp.usage.prompt_tokens, "output_tokens": resp.usage.completion_tokens}
        stop = "max_tokens" if c.finish_reason == "length" else "end_turn"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "msg_sim",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [{"type": "text", "text": c.text}],
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                }
            )

        def ev(name: str, data: dict[str, Any]) -> str:
            import json

            return f"event: {name}\ndata: {json.dumps(data)}\n\n"

        def events() -> Iterator[str]:
            start = {
                "id": "msg_sim",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [],
            }
            start["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": 1}
            yield ev("message_start", {"type": "message_start", "message": start})
            yield ev(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            yield ev(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c.text}},
            )
            yield ev("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield ev(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
            yield ev("message_stop", {"type": "message_stop"})

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    app.state.seen = seen
    return app
