"""SDK overhead: the same requests through OpenAIChat (+ ledger) and through raw httpx.

A loopback OpenAI-compatible server runs in a separate process (so its CPU is not counted);
this process sends N requests, `concurrency` at a time, through each of:

* sdk         `Request` -> `Ledger.reserve` -> `OpenAIChat.request` -> `Ledger.settle`, with the
              endpoint's own HTTP clients (as users get it);
* sdk+client  the same, but the endpoint is given one `httpx.AsyncClient` built exactly like
              the raw side's, which isolates the SDK's own cost from how it uses httpx;
* raw httpx   one `httpx.AsyncClient` (same timeout, `max_connections=concurrency`), the same
              JSON body, `json` parse and text read.

The sides alternate (the order rotates every round, and each side re-warms its connections
before it is measured), and wall time and process CPU time are summed per side. A last,
network-free section runs the sdk and raw paths over `httpx.MockTransport` one at a time,
which measures the SDK's own CPU per call with little noise.

    python benchmarks/overhead.py                 # N=2000, 64 concurrent, 4 rounds
    python benchmarks/overhead.py --json          # last line: one JSON object
    python benchmarks/overhead.py --profile       # also cProfile one sdk round (to stderr)
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from adaptive import Budget, Message, OpenAIChat, Price, Request
from adaptive._ledger import Ledger

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _rawserver import response_body  # noqa: E402

MODEL = "bench-model"
API_KEY = "sk-bench-not-a-secret"
MESSAGES = (
    Message(role="system", content="You are a careful assistant. Answer with one number."),
    Message(role="user", content="What is six times seven?"),
)
RAW_MESSAGES = [{"role": m.role, "content": m.content} for m in MESSAGES]
MAX_TOKENS = 64
TEMPERATURE = 0.7
PRICE = Price(input=0.15, output=0.6)
EXPECTED = "The answer is 42."

One = Callable[[], Awaitable[None]]


@dataclasses.dataclass
class Side:
    name: str
    one: One
    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0
    rounds: list[float] = dataclasses.field(default_factory=list)

    def cpu_ms(self) -> float:
        return 1000.0 * self.cpu / self.calls


def start_server() -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_rawserver.py")], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"benchmark server did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


async def run_workers(n: int, concurrency: int, one: One) -> None:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    async with anyio.create_task_group() as tg:
        for _ in range(min(n, concurrency)):
            tg.start_soon(worker)


async def measure(side: Side, n: int, concurrency: int) -> None:
    c0, t0 = time.process_time(), time.perf_counter()
    await run_workers(n, concurrency, side.one)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    side.wall += wall
    side.cpu += cpu
    side.calls += n
    side.rounds.append(wall)


class Paths:
    """The per-call work of each side, over the given endpoints and client."""

    def __init__(self, raw: httpx.AsyncClient, raw_url: str) -> None:
        self.raw, self.raw_url = raw, raw_url
        self.ledger = Ledger(Budget(usd=1_000.0))
        self.bad = 0

    def sdk(self, chat: OpenAIChat) -> One:
        async def one() -> None:
            request = Request(messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=TEMPERATURE)
            reservation = self.ledger.reserve(request, chat.price, endpoint=chat.name)
            response = await chat.request(request)
            self.ledger.settle(reservation, response)
            if response.completions[0].text != EXPECTED:
                self.bad += 1

        return one

    async def raw_one(self) -> None:
        body = {
            "model": MODEL,
            "messages": RAW_MESSAGES,
            "n": 1,
            "max_tokens": MAX_TOKENS,
            "temperature": TEMPERATURE,
        }
        resp = await self.raw.post(self.raw_url, json=body)
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}")
        if json.loads(resp.content)["choices"][0]["message"]["content"] != EXPECTED:
            self.bad += 1


def raw_client(concurrency: int, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    return httpx.AsyncClient(timeout=60.0, limits=limits, headers=headers, transport=transport)


async def loopback(url: str, n: int, concurrency: int, rounds: int, profile: bool) -> dict[str, Side]:
    raw = raw_client(concurrency)
    given = raw_client(concurrency)  # the sdk+client side's own copy of the raw settings
    own = OpenAIChat(MODEL, base_url=url + "/v1", api_key=API_KEY, price=PRICE, max_concurrency=concurrency)
    injected = OpenAIChat(
        MODEL,
        base_url=url + "/v1",
        api_key=API_KEY,
        price=PRICE,
        max_concurrency=concurrency,
        http_client=given,
    )
    paths = Paths(raw, url + "/v1/chat/completions")
    sides = [
        Side("sdk", paths.sdk(own)),
        Side("sdk+client", paths.sdk(injected)),
        Side("raw httpx", paths.raw_one),
    ]
    warm = min(n, 4 * concurrency)
    async with own, injected, raw, given:
        for r in range(rounds):
            for side in sides[r % 3 :] + sides[: r % 3]:
                # Re-warm this side's (idle) connections first, so no side pays for the switch.
                await run_workers(warm, concurrency, side.one)
                paths.ledger = Ledger(Budget(usd=1_000.0))
                await measure(side, n, concurrency)
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            await run_workers(n, concurrency, sides[0].one)
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    if paths.bad:
        raise RuntimeError(f"{paths.bad} answers were wrong")
    return {s.name: s for s in sides}


async def in_process(calls: int) -> tuple[float, float]:
    """CPU microseconds per call of the sdk and raw paths over MockTransport, one at a time."""
    body = response_body(1)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    url = "http://bench.invalid/v1"
    raw = raw_client(1, httpx.MockTransport(handler))
    given = raw_client(1, httpx.MockTransport(handler))
    chat = OpenAIChat(MODEL, base_url=url, api_key=API_KEY, price=PRICE, http_client=given)
    paths = Paths(raw, url + "/chat/completions")
    sdk_one = paths.sdk(chat)
    best = {"sdk": float("inf"), "raw": float("inf")}
    async with raw, given:
        for _ in range(5):  # best of 5 alternating runs: the least disturbed estimate
            for name, one in (("sdk", sdk_one), ("raw", paths.raw_one)):
                paths.ledger = Ledger(Budget(usd=1_000.0))
                c0 = time.process_time()
                for _ in range(calls):
                    await one()
                best[name] = min(best[name], (time.process_time() - c0) / calls * 1e6)
    if paths.bad:
        raise RuntimeError(f"{paths.bad} answers were wrong")
    return best["sdk"], best["raw"]


async def tracing_cost(calls: int) -> dict[str, float]:
    """CPU microseconds per whole `Client.run` (one sample) with tracing absent / API only / SDK.

    Over MockTransport, one call at a time, best of 5 alternating runs. "absent" is a process
    without opentelemetry (simulated: the cached import says it failed); "api_no_sdk" has the
    API but no SDK tracer provider (every span would be a no-op: nothing is built); "sdk" has an
    SDK provider exporting to memory (a call span and one request span per call).
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import adaptive._tracing as tracing
    from adaptive import Client

    body = response_body(1)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    modes = {"absent": (False, None), "api_no_sdk": (trace, None), "sdk": (trace, provider)}
    best = dict.fromkeys(modes, float("inf"))
    given = raw_client(1, httpx.MockTransport(handler))
    chat = OpenAIChat(
        MODEL, base_url="http://bench.invalid/v1", api_key=API_KEY, price=PRICE, http_client=given
    )
    async with given, Client(chat) as client:
        for _ in range(5):
            for name, (otel, tp) in modes.items():
                tracing._otel = otel
                trace._TRACER_PROVIDER = tp  # type: ignore[attr-defined]  # swapped for the benchmark only
                c0 = time.process_time()
                for _ in range(calls):
                    result = await client.run(MESSAGES, max_tokens=MAX_TOKENS, temperature=TEMPERATURE)
                    if result.answer is None:
                        raise RuntimeError("no answer")
                best[name] = min(best[name], (time.process_time() - c0) / calls * 1e6)
                exporter.clear()
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    return {k: round(v, 1) for k, v in best.items()}


def summarize(
    sides: dict[str, Side], sdk_us: float, raw_us: float, args: argparse.Namespace
) -> dict[str, Any]:
    sdk, same, raw = sides["sdk"], sides["sdk+client"], sides["raw httpx"]

    def r4(x: float) -> float:
        return round(x, 4)

    return {
        "n": args.n,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "sdk_over_raw_wall_ratio": r4(sdk.wall / raw.wall),
        "sdk_over_raw_cpu_ratio": r4(sdk.cpu / raw.cpu),
        "sdk_cpu_ms_per_call": r4(sdk.cpu_ms()),
        "raw_cpu_ms_per_call": r4(raw.cpu_ms()),
        "sdk_same_client_over_raw_wall_ratio": r4(same.wall / raw.wall),
        "sdk_same_client_cpu_ms_per_call": r4(same.cpu_ms()),
        "sdk_own_cpu_us_per_call": round(sdk_us - raw_us, 1),
        "in_process_sdk_cpu_us_per_call": round(sdk_us, 1),
        "in_process_raw_cpu_us_per_call": round(raw_us, 1),
        "calls_per_s": {s.name: round(s.calls / s.wall, 1) for s in sides.values()},
        "wall_s": {s.name: r4(s.wall) for s in sides.values()},
        "cpu_s": {s.name: r4(s.cpu) for s in sides.values()},
        "per_round_wall_s": {s.name: [r4(w) for w in s.rounds] for s in sides.values()},
    }


def print_table(res: dict[str, Any]) -> None:
    print(
        f"loopback: N={res['n']} per round and side, {res['concurrency']} concurrent, {res['rounds']} rounds"
    )
    print(f"{'side':<12}{'wall s':>9}{'cpu s':>9}{'calls/s':>9}{'cpu ms/call':>13}  per-round wall s")
    for name in res["wall_s"]:
        cpu_ms = 1000 * res["cpu_s"][name] / (res["n"] * res["rounds"])
        rounds = " ".join(f"{w:.2f}" for w in res["per_round_wall_s"][name])
        print(
            f"{name:<12}{res['wall_s'][name]:>9.2f}{res['cpu_s'][name]:>9.2f}"
            f"{res['calls_per_s'][name]:>9.0f}{cpu_ms:>13.3f}  {rounds}"
        )
    print(
        f"sdk/raw wall {res['sdk_over_raw_wall_ratio']:.3f} (cpu {res['sdk_over_raw_cpu_ratio']:.3f}); "
        f"sdk+client/raw wall {res['sdk_same_client_over_raw_wall_ratio']:.3f}"
    )
    print(
        f"in-process (MockTransport, sequential): sdk {res['in_process_sdk_cpu_us_per_call']:.1f} us/call, "
        f"raw {res['in_process_raw_cpu_us_per_call']:.1f} us/call -> the SDK's own cost "
        f"{res['sdk_own_cpu_us_per_call']:.1f} us/call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="requests per side per round")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--profile", action="store_true", help="cProfile one extra sdk round (to stderr)")
    parser.add_argument(
        "--tracing-only", action="store_true", help="only the tracing section (needs opentelemetry-sdk)"
    )
    args = parser.parse_args()
    if args.n < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--n, --concurrency and --rounds must be >= 1")
    try:
        traced = anyio.run(tracing_cost, 500)
    except ImportError:  # without opentelemetry-sdk there is nothing to compare
        traced = None
    if traced is not None:
        print(
            "tracing, CPU per whole client.run (one sample, MockTransport): "
            f"absent {traced['absent']:.1f} us, "
            f"API without SDK {traced['api_no_sdk']:.1f} us, SDK exporting to memory {traced['sdk']:.1f} us"
        )
    if args.tracing_only:
        if args.json:
            print(json.dumps({"tracing_cpu_us_per_run": traced}))
        return
    proc, url = start_server()
    try:
        sides = anyio.run(loopback, url, args.n, args.concurrency, args.rounds, args.profile)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    sdk_us, raw_us = anyio.run(in_process, 2000)
    res = summarize(sides, sdk_us, raw_us, args)
    res["tracing_cpu_us_per_run"] = traced
    print_table(res)
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
