"""The proxy's overhead: the official openai client through `adaptive serve` vs straight to the upstream.

Every server runs in its own subprocess: the upstream is `adaptive serve-sim`, the proxies are
`adaptive serve --upstream <it>` (single-sample passthrough: the request names the upstream
model). This process sends N requests per round, `--concurrency` at a time, with one
`AsyncOpenAI` client per side; the sides are interleaved (the order rotates each round), so a
machine whose load drifts affects them alike. Two upstreams, each with its own set of sides:

* zero latency  serve-sim answers at once: everything is CPU-bound (client, proxy, upstream
                share the cores), the worst case for a proxy;
* realistic     serve-sim waits `--first-token-ms` + `--ms-per-token` per token (default
                200 ms + 2 ms/token), as a real model does.

Sides: `direct` (the client talks to serve-sim), `proxy` (uvicorn's default parser: httptools
when installed, else h11), `proxy/h11` (the pure-Python parser forced, zero-latency set only,
when httptools is installed), `proxy+events` (the proxy logging at DEBUG: every event of every
call through a handler, to /dev/null), `proxy+tracing` (`--otel console`: a server span, the
call span and its request span per request, exported as JSON to /dev/null; needs
opentelemetry-sdk).

Reported per side: wall time summed over rounds, its ratio to `direct` in the same set (goal
<= 1.10 for the plain proxy), and the proxy process's CPU per request (utime + stime from
/proc/PID/stat). The machine may be shared: read the ratios, not the absolute times.

    python benchmarks/proxy.py                  # 512 per side per round, 64 concurrent, 4 rounds
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
from typing import Any

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
            raise SystemExit(f"{' '.join(args)} did not start")
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


async def burst(base: str, n: int, concurrency: int, errors: list[str]) -> float:
    """Wall time of `n` requests; a failed request is counted in `errors` (and reported), not retried."""
    client = openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0)
    limiter = anyio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            try:
                r = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": QUESTION}], seed=i
                )
            except openai.APIError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
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


def proxy_sides(stack: contextlib.ExitStack, sim: str, zero: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The proxies in front of `sim`: name -> (url, pid), and the sides skipped with why."""
    sides: dict[str, Any] = {"direct": (sim, None)}
    skipped: dict[str, str] = {}
    base = ("serve", "--upstream", sim, "--port", "0")
    proc, url = stack.enter_context(spawn(*base))
    sides["proxy"] = (url, proc.pid)
    if zero:
        if importlib.util.find_spec("httptools") is not None:
            proc, url = stack.enter_context(spawn(*base, "--http", "h11"))
            sides["proxy/h11"] = (url, proc.pid)
        else:
            skipped["proxy/h11"] = "httptools is not installed: the 'proxy' row is already h11"
    proc, url = stack.enter_context(spawn(*base, "--log-level", "DEBUG"))
    sides["proxy+events"] = (url, proc.pid)
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        skipped["proxy+tracing"] = "opentelemetry-sdk is not installed"
    else:
        proc, url = stack.enter_context(spawn(*base, "--otel", "console"))
        sides["proxy+tracing"] = (url, proc.pid)
    return sides, skipped


def measure(sides: dict[str, Any], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    wall = dict.fromkeys(sides, 0.0)
    cpu = dict.fromkeys(sides, 0.0)
    errors: dict[str, list[str]] = {name: [] for name in sides}
    names = list(sides)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            base, pid = sides[name]
            before = cpu_seconds(pid) if pid else 0.0
            wall[name] += anyio.run(burst, base, args.requests, args.concurrency, errors[name])
            if pid:
                cpu[name] += cpu_seconds(pid) - before
    total = args.requests * args.rounds
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        per = cpu[name] / total * 1000 if sides[name][1] else None
        rows[name] = {
            "wall_s": round(wall[name], 3),
            "ratio": round(wall[name] / wall["direct"], 3),
            "cpu_ms_per_request": round(per, 3) if per is not None else None,
            "errors": len(errors[name]),
            "first_error": errors[name][0] if errors[name] else None,
        }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=512, help="requests per side per round")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--first-token-ms", type=float, default=200.0, help="the realistic upstream's")
    ap.add_argument("--ms-per-token", type=float, default=2.0, help="the realistic upstream's")
    ap.add_argument("--only", choices=("zero", "realistic"), help="run one of the two sets")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sets = {
        "zero latency": (),
        f"realistic ({args.first_token_ms:g} ms + {args.ms_per_token:g} ms/token)": (
            "--first-token-ms",
            str(args.first_token_ms),
            "--latency-ms-per-token",
            str(args.ms_per_token),
        ),
    }
    if args.only:
        sets = {k: v for k, v in sets.items() if k.startswith(args.only)}
    out: dict[str, Any] = {}
    total = args.requests * args.rounds
    print(f"{total} requests per side ({args.rounds} interleaved rounds, {args.concurrency} concurrent)")
    for label, latency in sets.items():
        with contextlib.ExitStack() as stack:
            _, sim = stack.enter_context(spawn("serve-sim", "--port", "0", *latency))
            sides, skipped = proxy_sides(stack, sim, zero=not latency)
            rows = measure(sides, args)
        print(f"\nupstream: {label}")
        print(f"  {'side':<14} {'wall s':>8} {'ratio':>7} {'proxy CPU ms/req':>17}")
        for name, row in rows.items():
            per = row["cpu_ms_per_request"]
            shown = f"{per:.3f}" if per is not None else "-"
            failed = f"  {row['errors']} failed, e.g. {row['first_error']}" if row["errors"] else ""
            print(f"  {name:<14} {row['wall_s']:>8.2f} {row['ratio']:>7.3f} {shown:>17}{failed}")
        for name, why in skipped.items():
            print(f"  {name:<14} skipped: {why}")
        out[label] = {"sides": rows, "skipped": skipped}
    if args.json:
        print(json.dumps({"requests": total, "concurrency": args.concurrency, "sets": out}))


if __name__ == "__main__":
    main()
