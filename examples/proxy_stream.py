"""One streamed response through `adaptive serve`, exactly as the official openai client yields it.

The simulator is served on 127.0.0.1 as the upstream, the proxy in front of it (both in this
process, on background threads); the openai client streams one request that runs the
`adaptive` strategy under a dollar budget. Every chunk the client yields is printed as JSON:
first progress chunks (empty `choices`, an `adaptive` object with the event), then the answer
as standard `chat.completion.chunk`s, then one chunk with the receipt and `usage`.

    python examples/proxy_stream.py
"""

from __future__ import annotations

import json

import openai
from anyio.from_thread import start_blocking_portal

from adaptive.server import ServerConfig, start_proxy
from adaptive.sim import serve_sim

QUESTION = "Mia has 12 apples. She buys 5 more apples. How many apples does Mia have now?"


def main() -> None:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve_sim()) as upstream,
        start_proxy(ServerConfig(upstream={"url": upstream.url + "/v1"})) as proxy,
    ):
        client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="sim-reasoner",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
            seed=7,
            extra_body={"adaptive": {"strategy": "adaptive", "budget": {"usd": 0.002}}},
        )
        text = []
        for i, chunk in enumerate(stream):
            # What the client parsed: the standard fields, plus the extension field it kept.
            shown = chunk.model_dump(exclude_none=True)
            if "adaptive" in shown and "charges" in shown["adaptive"]:  # the receipt: shortened
                shown["adaptive"]["charges"] = f"[{len(shown['adaptive']['charges'])} charges]"
            print(f"chunk {i}: {json.dumps(shown, default=str)}")
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
        print("answer text:", "".join(text).strip().splitlines()[-1])
        client.close()


if __name__ == "__main__":
    main()
