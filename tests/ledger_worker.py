"""A worker process of the shared-ledger concurrency proof (tests/test_shared_ledger_procs.py).

Run as `python ledger_worker.py JSON`, where JSON says:

- `redis`, `prefix`, `lease_seconds`: the shared Redis backend;
- `worker`: this worker's index; `mode`: "run" or "hang";
- `trials`: a list of `{"account", "cap_usd", "seed"}`: for each, 32 concurrent calls share the
  account (and every other worker's calls of the same trial) on the simulated reasoner with
  random latencies and on a fault server that answers with seeded honest faults.

"run" prints one JSON line per trial: what the worker's calls recorded (`spent_usd`, from
each result's or error receipt's cost), `calls`, `refused` (a shared account refused before
anything was sent) and `errors`. "hang" starts 8 calls whose answers take a minute, prints
`{"ready": true}`, and waits to be killed.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faults.bill import INPUT_PICO, OUTPUT_PICO
from faults.plans import FAULTS, Trial
from faults.server import FaultServer

from adaptive import AdaptiveError, Budget, BudgetExceededError, Client, OpenAIChat, Price
from adaptive.endpoints import RetryPolicy
from adaptive.ledger import Account, RedisBackend
from adaptive.sim import SimEndpoint

CALLS = 32
PRICE = Price(input=INPUT_PICO / 1e6, output=OUTPUT_PICO / 1e6)
RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05)
HONEST = tuple(n for n, f in FAULTS.items() if f.family == "flaky")
QUESTIONS = ("What is 6 * 7?", "What is 12 + 30?", "Tom has 5 boxes of 8 pens and loses 3. How many?")


async def run_trial(spec: dict[str, Any], worker: int, backend: RedisBackend, server: FaultServer) -> dict:
    rng = random.Random(spec["seed"] * 7919 + worker)
    trial_id = f"w{worker}-{spec['account']}"
    faults = tuple(rng.choice(HONEST) if rng.random() < 0.5 else "ok" for _ in range(rng.randint(4, 24)))
    trial = Trial(
        seed=spec["seed"],
        endpoint="openai-chat",
        stream=rng.random() < 0.5,
        strategy="adaptive",
        verifier="function",
        budget_kind="usd",
        budget=1.0,
        max_tokens=32,
        family="flaky",
        faults=faults,
    )
    server.app.trials[trial_id] = trial
    cap = Account(spec["account"], Budget(usd=spec["cap_usd"]), backend=backend)
    mine = Account(f"{spec['account']}:w{worker}", backend=backend)  # this worker's share, unlimited
    sim = SimEndpoint(
        first_token_seconds=rng.uniform(0.0, 0.01), seconds_per_token=rng.uniform(0, 2e-4), jitter=0.9
    )
    chat = OpenAIChat(
        "fault-chat",
        base_url=server.url + "/v1",
        api_key="sk-fault-injection",
        price=PRICE,
        stream=trial.stream,
        headers={"x-fault-trial": trial_id},
        retry=RETRY,
        timeout=5.0,
        max_concurrency=16,
    )
    out = {"account": spec["account"], "spent_usd": 0.0, "calls": 0, "refused": 0, "errors": 0}

    async def one(i: int) -> None:
        client = clients[i % 2]
        strategy = {"name": "adaptive", "max_samples": rng.randint(2, 6)}
        try:
            result = await client.run(
                rng.choice(QUESTIONS),
                strategy=strategy,
                seed=rng.randint(0, 10**6),
                max_tokens=rng.choice((16, 32, 64)),
                accounts=[cap, mine],
            )
            out["spent_usd"] += result.cost_usd
        except BudgetExceededError as exc:
            assert exc.account is not None, exc
            out["refused"] += 1
            out["spent_usd"] += exc.receipt.cost_usd if exc.receipt is not None else 0.0
        except AdaptiveError as exc:  # an honest fault on every request of a round
            out["errors"] += 1
            out["spent_usd"] += exc.receipt.cost_usd if exc.receipt is not None else 0.0
        out["calls"] += 1

    clients = (Client(sim), Client(chat))
    async with clients[0], clients[1], anyio.create_task_group() as tg:
        for i in range(CALLS):
            tg.start_soon(one, i)
    return out


async def hang(spec: dict[str, Any], backend: RedisBackend) -> None:
    cap = Account(spec["account"], Budget(usd=spec["cap_usd"]), backend=backend)
    sim = SimEndpoint(first_token_seconds=60.0, jitter=0.0)
    async with Client(sim, accounts=[cap]) as client, anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(lambda i=i: client.run("What is 6 * 7?", strategy="single", seed=i, max_tokens=256))
        await anyio.sleep(0.5)
        print(json.dumps({"ready": True}), flush=True)


async def main(args: dict[str, Any]) -> None:
    async with RedisBackend(
        args["redis"], prefix=args["prefix"], lease_seconds=args["lease_seconds"]
    ) as backend:
        if args["mode"] == "hang":
            await hang(args["trials"][0], backend)
            return
        with FaultServer() as server:
            for spec in args["trials"]:
                print(json.dumps(await run_trial(spec, args["worker"], backend, server)), flush=True)


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
