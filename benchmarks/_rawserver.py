"""A minimal OpenAI-compatible chat server (Starlette on uvicorn) for the overhead benchmark.

Run as a subprocess.

Answers every POST /v1/chat/completions with the same small completion (n choices), so the
client side (SDK or raw httpx) is what the benchmark measures. Prints "READY <url>" when
listening. Usage: python benchmarks/_rawserver.py [--port 0]
"""

from __future__ import annotations

import argparse
import json
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adaptive.sim import RunningServer, ServerLimits, serve_app_forever

_cache: dict[int, bytes] = {}


def response_body(n: int) -> bytes:
    if n not in _cache:
        _cache[n] = json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": "bench-model",
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": "The answer is 42."},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                    for i in range(n)
                ],
                "usage": {
                    "prompt_tokens": 25,
                    "completion_tokens": 6 * n,
                    "total_tokens": 25 + 6 * n,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            },
            separators=(",", ":"),
        ).encode()
    return _cache[n]


async def chat(req: Request) -> Response:
    n = json.loads(await req.body()).get("n", 1)
    return Response(response_body(n), media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    def ready(server: RunningServer) -> None:
        print(f"READY {server.url}", flush=True)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    # The benchmark's clients hold many keep-alive connections at once: let them all in.
    limits = ServerLimits(max_connections=10_000, keep_alive=60)
    serve_app_forever(app, "127.0.0.1", args.port, limits=limits, on_ready=ready)
    sys.exit(0)


if __name__ == "__main__":
    main()
