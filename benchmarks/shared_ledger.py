"""What shared accounts cost per call: none, a memory account, a Redis account.

The same `client.run` calls (self-consistency, n=4 as four single requests, on a function
endpoint that answers at once, so only the SDK's own work is timed) are made without
accounts, with one `adaptive.ledger.Account` in memory, and with one on Redis (two accounts
per call: a tenant and a global cap, checked in one script). Sides alternate per round; the
figure is process CPU per call and wall time per call, as ratios to the side without accounts.

    python benchmarks/shared_ledger.py --redis redis://127.0.0.1:6379/0 [--calls 500] [--json]

Without `--redis` the Redis side is left out (said on the output).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid

import anyio
from adaptive_strategies import SelfConsistency

from adaptive import Budget, Client, FunctionEndpoint, Price, Request
from adaptive.ledger import Account, MemoryBackend, RedisBackend

PRICE = Price(input=1.0, output=2.0)


async def answer(request: Request) -> str:
    return "Six times seven. The answer is 42."


async def side(accounts: list[Account], calls: int) -> tuple[float, float]:
    ep = FunctionEndpoint(answer, name="fn", price=PRICE, in_thread=False)
    async with Client(ep, accounts=accounts) as client:
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(calls):
            await client.run("What is 6 * 7?", strategy=SelfConsistency(n=4), seed=i, max_tokens=32)
        return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


async def main(args: argparse.Namespace) -> dict[str, object]:
    logging.getLogger("adaptive").setLevel(logging.ERROR)  # the function endpoint reports no usage
    mem = MemoryBackend()
    sides: dict[str, list[Account]] = {
        "none": [],
        "memory": [Account("tenant", Budget(usd=1e6), backend=mem), Account("cap", backend=mem)],
    }
    redis = None
    if args.redis:
        redis = RedisBackend(args.redis, prefix=f"bench-{uuid.uuid4().hex[:8]}")
        sides["redis"] = [Account("tenant", Budget(usd=1e6), backend=redis), Account("cap", backend=redis)]
    totals = {k: [0.0, 0.0] for k in sides}
    for r in range(args.rounds):
        order = list(sides)[r % len(sides) :] + list(sides)[: r % len(sides)]
        for name in order:
            await side(sides[name], 20)  # warm
            cpu, wall = await side(sides[name], args.calls)
            totals[name][0] += cpu / args.rounds
            totals[name][1] += wall / args.rounds
    if redis is not None:
        await redis.aclose()
    base_cpu, base_wall = totals["none"]
    out: dict[str, object] = {
        name: {
            "cpu_us_per_call": round(cpu * 1e6, 1),
            "wall_us_per_call": round(wall * 1e6, 1),
            "cpu_ratio": round(cpu / base_cpu, 2),
            "wall_ratio": round(wall / base_wall, 2),
        }
        for name, (cpu, wall) in totals.items()
    }
    for name, row in out.items():
        print(f"{name:8s} {row}")  # type: ignore[str-format]
    if not args.redis:
        print("redis: left out (no --redis URL)")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis", default=None)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args()
    result = anyio.run(main, a)
    if a.json:
        print(json.dumps(result))
