"""The proxy's overhead: the official openai client through `adaptive serve` vs straight to the upstream.

Both servers run in subprocesses: the upstream is `adaptive serve-sim` with zero latency, the
proxies are `adaptive serve --upstream <it>` (single-sample passthrough: the request names the
upstream model). This process sends N requests per round, `--concurrency` at a time, with one
`AsyncOpenAI` client per side, and the sides are interleaved (the order rotates each round):

* direct        the client talks to serve-sim;
* proxy         through the proxy at its default log level (INFO: one line per request);
* proxy+events  through a proxy logging at DEBUG (every event of every call through a handler);
* proxy+tracing through a proxy with OpenTelemetry tracing on, when `adaptive._tracing` exists
                (skipped with the reason printed otherwise).

Reported: wall time per side summed over rounds, the wall ratio to direct (goal <= 1.10 for
the plain proxy), and the proxy process's CPU per request (utime + stime from /proc/PID/stat).
The machine this runs on may be shared: read the ratios, not the absolute times.

    python benchmarks/proxy.py                  # N=512 per round, 64 concurrent, 4 rounds
    python benchmarks/proxy.py --json           # last line: one JSON object
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import openai

QUESTION = (
    "Ana has 48 stamps. She buys 3 boxes with 12 stamps in each box. She gives away 19 stamps. "
    "How many stamps does Ana have now?"
)
MODEL = "sim-reasoner"
TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def spawn(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptive", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise SystemExit(f"{args[0]} did not start")
        yield proc, url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def burst(base: str, n: int, concurrency: int) -> float:
    client = openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0)
    limiter = anyio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            r = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": QUESTION}], seed=i
            )
            assert r.choices[0].message.content

    try:
        await one(-1)  # warm the connection
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        return time.perf_counter() - start
    finally:
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=512, help="requests per side per round")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    skipped: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        _, sim = stack.enter_context(spawn("serve-sim", "--port", "0"))
        sides: dict[str, tuple[str, int | None]] = {"direct": (sim, None)}
        proc, url = stack.enter_context(spawn("serve", "--upstream", sim, "--port", "0"))
        sides["proxy"] = (url, proc.pid)
        proc, url = stack.enter_context(
            spawn("serve", "--upstream", sim, "--port", "0", "--log-level", "DEBUG")
        )
        sides["proxy+events"] = (url, proc.pid)
        if importlib.util.find_spec("adaptive._tracing") is None:
            skipped["proxy+tracing"] = "adaptive._tracing is not in this tree (tracing not merged yet)"
        elif importlib.util.find_spec("opentelemetry") is None:
            skipped["proxy+tracing"] = "OpenTelemetry is not installed"
        else:
            skipped["proxy+tracing"] = "the proxy has no switch for tracing yet"
        wall = dict.fromkeys(sides, 0.0)
        cpu = dict.fromkeys(sides, 0.0)
        names = list(sides)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                base, pid = sides[name]
                before = cpu_seconds(pid) if pid else 0.0
                wall[name] += anyio.run(burst, base, args.requests, args.concurrency)
                if pid:
                    cpu[name] += cpu_seconds(pid) - before
    total = args.requests * args.rounds
    rows = {}
    print(f"{total} requests per side ({args.rounds} interleaved rounds, {args.concurrency} concurrent)")
    print(f"{'side':<14} {'wall s':>8} {'ratio':>7} {'proxy CPU ms/req':>17}")
    for name in names:
        ratio = wall[name] / wall["direct"]
        per = cpu[name] / total * 1000 if sides[name][1] else None
        rows[name] = {"wall_s": round(wall[name], 3), "ratio": round(ratio, 3), "cpu_ms_per_request": per}
        shown = f"{per:.3f}" if per is not None else "-"
        print(f"{name:<14} {wall[name]:>8.2f} {ratio:>7.3f} {shown:>17}")
    for name, why in skipped.items():
        print(f"{name:<14} skipped: {why}")
    if args.json:
        print(
            json.dumps(
                {"requests": total, "concurrency": args.concurrency, "sides": rows, "skipped": skipped}
            )
        )


if __name__ == "__main__":
    main()
