"""A minimal OpenAI-compatible chat server for the overhead benchmark, run as a subprocess.

Answers every POST /v1/chat/completions with the same small completion (n choices), so the
client side (SDK or raw httpx) is what the benchmark measures. Prints "READY <url>" when
listening. Usage: python benchmarks/_rawserver.py [--port 0]
"""

from __future__ import annotations

import argparse
import json
import sys

from adaptive.sim._httpserver import HTTPRequest, HTTPResponse, HTTPServer, RunningServer, serve_forever

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


async def chat(req: HTTPRequest) -> HTTPResponse:
    n = json.loads(req.body).get("n", 1)
    return HTTPResponse(body=response_body(n))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    def ready(server: RunningServer) -> None:
        print(f"READY {server.url}", flush=True)

    app = HTTPServer({("POST", "/v1/chat/completions"): chat})
    serve_forever(app, "127.0.0.1", args.port, on_ready=ready)
    sys.exit(0)


if __name__ == "__main__":
    main()
