"""`adaptive batch`: a JSONL dataset answered under one total budget (`Client.run_many`).

Input: one JSON object a line, `{"id", "prompt"}` or `{"id", "messages"}`, optional `"gold"`.
Bad lines are all reported with their line numbers and the run aborts before spending
anything (`--skip-bad-lines` skips them instead, saying so). Output: one JSON object a line
per question (`id`, `answer`, `samples`, `cost_usd`, `stop_reason`, `votes`, `draws`, and
`gold` / `correct`), rewritten as the run goes, so re-running with the same `--out` resumes:
drawn samples are kept and never paid for again.

`--workers N` (N > 1, needs `--redis URL`) runs N processes, each a share of the questions,
all held against one run account in Redis, so the total still holds; their outputs are
merged into `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

from .._batch import BatchItem, BatchReport, as_batch_item, run_many
from .._client import Client
from .._exceptions import ConfigError
from ._args import positive_float, positive_int

__all__ = ["add_batch_parser", "batch_command"]


def add_batch_parser(sub: Any) -> None:
    """Declare `adaptive batch` and its arguments on the command line's subparsers."""
    p = sub.add_parser(
        "batch",
        help="answer a JSONL dataset under one total budget, samples where they pay",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
    )
    p.add_argument("input", help="JSONL file: {id, prompt | messages, gold?} per line")
    p.add_argument("--budget-usd", type=positive_float, required=True, metavar="USD", help="the total budget")
    p.add_argument(
        "--strategy", default="adaptive", choices=["adaptive"], help="allocation (gain per dollar)"
    )
    p.add_argument("--out", required=True, help="results JSONL (resumed from when it exists)")
    p.add_argument(
        "--workers", type=positive_int, default=1, help="processes sharing the budget (needs --redis)"
    )
    p.add_argument("--redis", metavar="URL", help="Redis for the run's shared account")
    p.add_argument("--concurrency", type=positive_int, default=16, help="calls in flight per process")
    p.add_argument("--first-round", type=positive_int, default=2, help="samples every question gets first")
    p.add_argument("--max-samples", type=positive_int, default=16, help="most samples for one question")
    p.add_argument("--max-tokens", type=positive_int, default=None, help="max_tokens per sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-bad-lines", action="store_true", help="skip bad input lines instead of aborting")
    p.add_argument("--base-url", help="an OpenAI-compatible API root (default: the offline simulator)")
    p.add_argument("--model", help="model name (required with --base-url)")
    p.add_argument("--api-key", help="API key (default: env OPENAI_API_KEY)")
    p.add_argument("--price-in", type=positive_float, metavar="USD", help="$ per million input tokens")
    p.add_argument("--price-out", type=positive_float, metavar="USD", help="$ per million output tokens")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the summary")
    p.add_argument(
        "--sim-first-token-ms", type=float, default=0.0, metavar="MS", help="simulated latency (offline only)"
    )
    # A worker of --workers N (internal): its share, the run's account name and limit.
    p.add_argument("--shard", default=None, help=argparse.SUPPRESS)
    p.add_argument("--run-name", default=None, help=argparse.SUPPRESS)
    p.add_argument("--limit-usd", type=float, default=None, help=argparse.SUPPRESS)


def read_items(path: Path, *, skip: bool) -> tuple[list[BatchItem], list[str]]:
    """The questions of `path` and one message per bad line (with its line number).

    Raises:
        ConfigError: A bad line without `skip`, or the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    items: list[BatchItem] = []
    bad: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = as_batch_item(json.loads(line), line=n)
        except json.JSONDecodeError as exc:
            bad.append(f"line {n}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        except ConfigError as exc:
            bad.append(str(exc))
            continue
        if item.id in seen:
            bad.append(f"line {n}: id {item.id!r} repeats an earlier line")
            continue
        seen.add(item.id)
        items.append(item)
    if bad and not skip:
        shown = "\n  ".join(bad[:20]) + (f"\n  ... {len(bad) - 20} more" if len(bad) > 20 else "")
        raise ConfigError(
            f"{path}: {len(bad)} bad line(s); nothing was spent (fix them, or --skip-bad-lines):\n  {shown}"
        )
    return items, bad


def read_previous(path: Path) -> dict[str, dict[str, Any]]:
    """The records of an earlier run's output, by id (empty when there is none)."""
    if not path.exists():
        return {}
    out: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: line {n} is not JSON; it is not a results file to resume") from None
        if isinstance(rec, dict) and "id" in rec:
            out[str(rec["id"])] = rec
    return out


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Write `records` to `path` atomically (a crash leaves the last complete file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def _endpoint(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    from ._run import _endpoint as endpoint

    if args.sim_first_token_ms:
        if args.base_url is not None:
            parser.error("--sim-first-token-ms is for the offline simulator, not --base-url")
        from ..sim import SimEndpoint

        return SimEndpoint(first_token_seconds=args.sim_first_token_ms / 1000)
    return endpoint(parser, args)


def _summary_table(report: BatchReport, console: Any) -> None:
    from rich.table import Table

    s = report.summary
    tokens = sum(int(d.get("tokens", 0)) for r in report.records for d in r["draws"])
    table = Table(title="adaptive batch")
    for col in ("questions", "settled", "accuracy", "mean samples", "tokens", "spent $", "budget $"):
        table.add_column(col, justify="right")
    acc = "-" if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}%"
    table.add_row(
        str(s["questions"]),
        str(s["settled"]),
        acc,
        f"{s['mean_samples']:.2f}",
        f"{tokens:,}",
        f"{s['spent_usd']:.6f}",
        f"{s['budget_usd']:.6f}",
    )
    console.print(table)
    hist = Table(title="samples per question")
    hist.add_column("samples", justify="right")
    hist.add_column("questions", justify="right")
    for k, v in report.histogram().items():
        hist.add_row(str(k), str(v))
    console.print(hist)


def batch_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run `adaptive batch` with parsed arguments; returns the exit status."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    if args.workers > 1 and not args.redis:
        parser.error("--workers N > 1 shares the budget through Redis: give --redis URL")
    items, bad = read_items(Path(args.input), skip=args.skip_bad_lines)
    for line in bad:
        console.print(f"[yellow]skipped[/] {line}")
    out = Path(args.out)
    previous = read_previous(out)
    if args.workers > 1 and args.shard is None:
        return _run_workers(args, items, previous, out, console)
    if args.shard is not None:
        i, n = (int(x) for x in args.shard.split("/"))
        items = [it for k, it in enumerate(items) if k % n == i]
    endpoint = _endpoint(parser, args)
    live = console.is_terminal and not args.json and args.shard is None
    last = [0.0]

    def checkpoint(report: BatchReport) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            write_records(out, report.records)

    async def main() -> BatchReport:
        backend = None
        if args.redis:
            from ..ledger import RedisBackend

            backend = RedisBackend(args.redis)
        try:
            async with Client(endpoint) as client:
                kwargs: dict[str, Any] = {
                    "budget_usd": args.budget_usd,
                    "first_round": args.first_round,
                    "max_samples": max(args.max_samples, args.first_round),
                    "concurrency": args.concurrency,
                    "max_tokens": args.max_tokens,
                    "seed": args.seed,
                    "previous": previous,
                    "backend": backend,
                    "run_name": args.run_name,
                    "limit_usd": args.limit_usd,
                }
                if not live:
                    return await run_many(client, items, on_update=checkpoint, **kwargs)
                from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

                with Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TextColumn("{task.fields[spent]}"),
                    TimeRemainingColumn(),
                    console=console,
                ) as progress:
                    task = progress.add_task("questions settled", total=len(items), spent="")

                    def update(report: BatchReport) -> None:
                        s = report.summary
                        progress.update(
                            task,
                            completed=s["settled"],
                            spent=f"${s['spent_usd']:.4f} of ${s['budget_usd']:.4f}",
                        )
                        checkpoint(report)

                    return await run_many(client, items, on_update=update, **kwargs)
        finally:
            if backend is not None:
                await backend.aclose()

    report = anyio.run(main)
    write_records(out, report.records)
    if args.shard is None:
        if not args.json:
            _summary_table(report, console)
        else:
            print(json.dumps(report.summary))
    return 0


def _run_workers(
    args: argparse.Namespace,
    items: list[BatchItem],
    previous: dict[str, dict[str, Any]],
    out: Path,
    console: Any,
) -> int:
    """Run `args.workers` worker processes on shares of `items`, then merge their outputs."""
    n = args.workers
    spent_before = sum(float(r.get("cost_usd", 0.0)) for r in previous.values())
    limit = args.budget_usd - spent_before
    run_name = f"batch:{uuid.uuid4().hex}"
    shards = [out.with_name(f"{out.name}.worker{i}") for i in range(n)]
    for i, shard in enumerate(shards):
        mine = [previous[it.id] for k, it in enumerate(items) if k % n == i and it.id in previous]
        write_records(shard, mine)
    procs = []
    for i, shard in enumerate(shards):
        cmd = [sys.executable, "-m", "adaptive", *_worker_argv(args, str(shard))]
        cmd += ["--shard", f"{i}/{n}", "--run-name", run_name, "--limit-usd", repr(limit)]
        procs.append(subprocess.Popen(cmd))
    codes = [p.wait() for p in procs]
    merged: dict[str, dict[str, Any]] = {}
    for shard in shards:
        merged.update(read_previous(shard))
    records = [merged.get(it.id) or previous.get(it.id) for it in items]
    write_records(out, [r for r in records if r is not None])
    for shard in shards:
        shard.unlink(missing_ok=True)
    report = BatchReport(
        [r for r in records if r is not None],
        args.budget_usd,
        sum(float(r.get("cost_usd", 0.0)) for r in records if r is not None),
    )
    if args.json:
        print(json.dumps(report.summary))
    else:
        _summary_table(report, console)
    return 0 if all(c == 0 for c in codes) else 1


def _worker_argv(args: argparse.Namespace, out: str) -> list[str]:
    """The command line of one worker: the same options, its own --out, one process."""
    argv = ["batch", args.input, "--budget-usd", repr(args.budget_usd), "--out", out, "--workers", "1"]
    argv += ["--redis", args.redis, "--concurrency", str(args.concurrency), "--seed", str(args.seed)]
    argv += ["--first-round", str(args.first_round), "--max-samples", str(args.max_samples)]
    for flag, value in (
        ("--max-tokens", args.max_tokens),
        ("--base-url", args.base_url),
        ("--model", args.model),
        ("--api-key", args.api_key),
        ("--price-in", args.price_in),
        ("--price-out", args.price_out),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if args.skip_bad_lines:
        argv.append("--skip-bad-lines")
    if args.sim_first_token_ms:
        argv += ["--sim-first-token-ms", str(args.sim_first_token_ms)]
    return argv
