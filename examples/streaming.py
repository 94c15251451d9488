"""Streaming from an OpenAI-compatible server, and the whole client stack over real HTTP.

`OpenAIChat.stream(request)` yields text deltas as the server produces them, then a "done"
event with the assembled `Response` (usage included). Leaving the block early closes the
connection, so the server stops generating; `events.partial()` then says what arrived and
what it counted, which is what you are billed for.

Runs offline: the simulated reasoner is served over HTTP on 127.0.0.1 (a free port) for the
length of the script, with a simulated decoding speed. The same server runs standalone with
`python -m adaptive serve-sim`. For a real server, build the endpoint as
`OpenAIChat("gpt-4o-mini")` (key from OPENAI_API_KEY) or
`OpenAIChat("my-model", base_url="http://localhost:8000/v1", price=Price(...))`.
"""

from __future__ import annotations

import anyio
from adaptive_strategies import AdaptiveConsistency

from adaptive import Budget, Client, ControllerConfig, OpenAIChat, Request
from adaptive.sim import SimModel, demo_problems, serve_sim


async def main() -> None:
    problem = demo_problems(1)[0]
    price = SimModel().price  # a local server's model has no public price: give it
    async with serve_sim(seconds_per_token=0.0005) as server:
        base_url = server.url + "/v1"
        # The simulator needs no key; a dummy one keeps OPENAI_API_KEY from being sent to it.
        chat = OpenAIChat("sim-reasoner", base_url=base_url, api_key="sim", price=price)
        request = Request(messages=[{"role": "user", "content": problem.question}], max_tokens=512, seed=1)

        # 1. Stream a whole answer, printing text as it arrives.
        print(f"question: {problem.question}\n")
        deltas = 0
        async with chat.stream(request) as events:
            async for event in events:
                if event.kind == "delta":
                    deltas += 1
                    print(event.text, end="", flush=True)
                elif event.response is not None:
                    usage = event.response.usage
                    cost = price.cost_usd(usage)
                    print(f"\n\nstreamed {deltas} deltas; {usage.total_tokens} tokens, ${cost:.6f}")

        # 2. Stop reading part-way: the connection closes and only what arrived is counted.
        async with chat.stream(request) as events:
            async for event in events:
                if event.kind == "delta" and len(events.partial().completions[0].text) >= 120:
                    break
            partial = events.partial()
        text = partial.completions[0].text
        print(
            f"stopped after {len(text)} characters: {partial.usage.completion_tokens} completion "
            f"tokens counted, ${price.cost_usd(partial.usage):.6f}"
        )

        # 3. The client over HTTP, streaming each request. A wide first batch (8, for latency)
        #    sent as parallel single requests (not one request with n): once the answers that
        #    arrived first settle the vote, the requests still running are cancelled, and what
        #    they had produced is charged.
        streaming = OpenAIChat("sim-reasoner", base_url=base_url, api_key="sim", price=price, stream=True)
        async with Client(streaming, controller=ControllerConfig(first_batch=8, batch_as_n=False)) as client:
            budget = Budget(usd=0.003)
            result = await client.run(
                problem.question, strategy=AdaptiveConsistency(), budget=budget, seed=1, max_tokens=512
            )
        print(f"\nadaptive over HTTP (expected {problem.answer}):")
        print(result.receipt())
        for charge in result.charges:
            how = " (estimated: the server sent no usage before the cancel)" if charge.estimated else ""
            print(f"  {charge.status:<9} {charge.usage.total_tokens:>4} tokens  ${charge.usd:.6f}{how}")
        print(f"spent ${result.cost_usd:.6f} of ${budget.usd:.6f}")
        await chat.aclose()


if __name__ == "__main__":
    anyio.run(main)
