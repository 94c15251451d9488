"""One cap shared by four processes through Redis, and a worker killed mid-call (issue 12).

Four worker processes (tests/ledger_worker.py) each run 32 concurrent calls per trial against
the trial's one shared dollar cap, on the simulated reasoner with random latencies and on a
fault server answering with seeded honest faults (errors, resets, slow streams). For every
trial: Redis's recorded spend is within the cap, nothing is left reserved, the per-worker
accounts (booked in the same scripts) add up to it, and it equals what the workers' own
receipts recorded, so nothing was charged twice or lost. `ADAPTIVE_LEDGER_TRIALS` sets the
trials per worker (default 50: 200 trials over the four processes).

Then a worker is killed with SIGKILL while its calls are in flight: its leases hold their
worst case until their TTL, are then booked at it (never refunded), and the cap still holds
for a live worker that spends what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from adaptive.ledger import Account, Amount, RedisBackend

WORKER = Path(__file__).resolve().parent / "ledger_worker.py"
PROCESSES = 4
TRIALS = int(os.environ.get("ADAPTIVE_LEDGER_TRIALS", "50"))
SEED = int(os.environ.get("ADAPTIVE_LEDGER_SEED", "12"))


def _spawn(args: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 600) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def _totals(url: str, prefix: str, names: list[str]) -> dict[str, Any]:
    async with RedisBackend(url, prefix=prefix) as backend:
        return {n: await Account(n, backend=backend).totals() for n in names}


def test_four_processes_never_pass_a_shared_cap(redis: str) -> None:
    import random

    rng = random.Random(SEED)
    prefix = f"procs-{uuid.uuid4().hex[:10]}"
    # Caps from a few calls' worth to more than the 128 calls can use: some bind, some do not.
    specs = [
        {"account": f"cap{k}", "cap_usd": round(rng.uniform(2e-5, 6e-4), 7), "seed": k} for k in range(TRIALS)
    ]
    common = {"redis": redis, "prefix": prefix, "lease_seconds": 10.0, "mode": "run", "trials": specs}
    procs = [_spawn({**common, "worker": w}) for w in range(PROCESSES)]
    reports = [_finish(p) for p in procs]
    names = [s["account"] for s in specs]
    names += [f"{n}:w{w}" for n in names for w in range(PROCESSES)]
    totals = anyio.run(_totals, redis, prefix, names)
    checked = refused = bound = 0
    for k, spec in enumerate(specs):
        cap = totals[spec["account"]]
        limit = Account("x", {"usd": spec["cap_usd"]}).limits.pico
        assert cap.spent.pico <= limit, (spec, cap)
        assert cap.reserved == Amount(), (spec, cap)
        shares = [totals[f"{spec['account']}:w{w}"] for w in range(PROCESSES)]
        assert sum(s.spent.pico for s in shares) == cap.spent.pico
        assert all(s.reserved == Amount() for s in shares)
        recorded = sum(r[k]["spent_usd"] for r in reports)
        assert abs(recorded - cap.spent_usd) < 1e-9, (spec, recorded, cap.spent_usd)
        assert sum(r[k]["calls"] for r in reports) == PROCESSES * 32
        refused += sum(r[k]["refused"] for r in reports)
        bound += any(r[k]["refused"] for r in reports)
        checked += PROCESSES
    assert checked >= 200 or TRIALS < 50
    assert refused > 0 and bound >= TRIALS // 4, (refused, bound)  # the cap bound in many trials


def test_a_killed_workers_leases_are_booked_at_their_worst_case(redis: str) -> None:
    prefix = f"kill-{uuid.uuid4().hex[:10]}"
    lease = 1.0
    spec = {"account": "shared", "cap_usd": 0.002, "seed": 0}
    args = {"redis": redis, "prefix": prefix, "lease_seconds": lease, "worker": 0, "trials": [spec]}
    dead = _spawn({**args, "mode": "hang"})
    try:
        assert dead.stdout is not None
        line = dead.stdout.readline()
        assert json.loads(line) == {"ready": True}, dead.stderr.read() if dead.stderr else ""
        held = anyio.run(_totals, redis, prefix, ["shared"])["shared"]
        assert held.reserved.samples == 8 and held.spent == Amount()
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(10)
    finally:
        if dead.poll() is None:
            dead.kill()
            dead.wait(10)
        for pipe in (dead.stdout, dead.stderr):
            if pipe is not None:
                pipe.close()
    # A live worker spends what is left while the dead leases still hold their worst case.
    live = _finish(_spawn({**args, "mode": "run", "worker": 1}))
    deadline = time.monotonic() + 30 * lease
    while True:  # bounded: the leases are booked once their TTL has passed
        after = anyio.run(_totals, redis, prefix, ["shared", "shared:w1"])
        if after["shared"].reserved == Amount() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    total = after["shared"]
    assert total.reserved == Amount()
    assert total.spent.pico <= Account("x", {"usd": spec["cap_usd"]}).limits.pico
    # The dead worker's holds were booked at their worst case, once; the live one's as recorded.
    assert total.spent.pico - after["shared:w1"].spent.pico == held.reserved.pico
    assert total.spent.samples - after["shared:w1"].spent.samples == 8
    assert abs(after["shared:w1"].spent_usd - live[0]["spent_usd"]) < 1e-9
