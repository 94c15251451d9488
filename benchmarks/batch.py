"""`adaptive batch` allocation against uniform N and the per-question controller, and workers.

Part 1, on recorded-samples files, over every question and R seeded shuffles of each question's
samples, at total budgets of B = 3 and 5 samples a question on average (B is k times the
expected cost of one sample of every question: its prompt plus its mean recorded sample):

- batch: the allocation of `Client.run_many` (`adaptive._allocation.Allocator`, the very
  object `run_many` consults) driven here without I/O, the ledger's refusal included (a
  sample is refused once its worst case no longer fits what is left);
- uniform N: self-consistency with N samples for every question (one request with `n`), the
  largest N whose total fits B in that shuffle;
- controller: `AdaptiveConsistency` per question (the default controller, its prior learned
  as it goes) over a sweep of settings (confidence x min_gain), at the setting whose total
  spend comes closest to B without exceeding it in every shuffle.

Differences are paired over questions: each question's accuracy (mean over shuffles) under
batch minus under the other method; the standard error is that of the mean difference.
`--check K` also runs the first K questions of the first shuffle through the real stack
(`Client.run_many` on a `ReplayEndpoint`, one call at a time) and verifies that every
question's samples, cost and answer are what the simulation gives.

Part 2 (needs `--redis URL`): throughput of `run_many` with 1 and 4 worker processes sharing
one run account in Redis, on the simulator with 200 ms simulated latency: each worker starts,
says "ready", and is timed from a common "go" to its last answer, so process start-up is
excluded (and reported separately); 1 and 4 workers alternate, the median of
`--throughput-repeats` runs each. `--cli` also times `adaptive batch --workers N` end to end,
start-up included.

    python benchmarks/batch.py FILE.jsonl [FILE.jsonl ...] [--shuffles 10] [--check 40] \
        [--redis redis://127.0.0.1:6379/0] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adaptive_strategies import AdaptiveConsistency
from replay import Prepared, parse, prepare, spec_for  # the replay benchmark's loaders (a sibling script)

from adaptive import AnswerSpec, Client, ControllerConfig, Price, ReplayEndpoint, State
from adaptive._allocation import Allocator
from adaptive._batching import ordered
from adaptive._controller import Controller
from adaptive.endpoints import load_recorded
from adaptive.endpoints.replay import RecordedQuestion

PRICE = Price(input=0.15, output=0.6)
MAX_TOKENS = 4096  # above every recorded sample: nothing is cut
POOL = 40
SWEEP = [(c, g) for c in (0.9, 0.95, 0.99, 0.999) for g in (0.0, 0.001, 0.004, 0.016)]


def usd(prompt_tokens: int, completion_tokens: int) -> float:
    return PRICE.worst_case_pico(prompt_tokens, completion_tokens) / 1e12


async def prompt_tokens_of(qs: Sequence[RecordedQuestion]) -> list[int]:
    """Each question's billed prompt tokens, as the real stack bills them (one call each)."""
    ep = ReplayEndpoint(qs, price=PRICE)
    out = []
    async with Client(ep, controller=ControllerConfig(calibrate=False)) as client:
        for q in qs:
            r = await client.run(ReplayEndpoint.prompt_for(q), strategy="single", max_tokens=MAX_TOKENS)
            out.append(r.usage.prompt_tokens)
    return out


def billed_prepare(
    qs: Sequence[RecordedQuestion], spec: AnswerSpec, seed: int, parsed: Any = None
) -> list[Prepared]:
    """`replay.prepare`, with each sample's tokens as the ledger bills them.

    A recorded sample without a token count is billed at its upper bound (its UTF-8 bytes
    plus one, as the ledger books a response without reported usage), not at the estimate.
    """
    ps = prepare(qs, spec, seed, parsed)
    ep = ReplayEndpoint(qs, seed=seed)
    for q, p in zip(qs, ps, strict=True):
        p.tokens = [_billed(q.samples[i]) for i in ep.order(q.id)]
    return ps


def _billed(sample: Any) -> int:
    if sample.completion_tokens is not None:
        return min(MAX_TOKENS, int(sample.completion_tokens))
    return min(MAX_TOKENS, len(sample.text.encode()) + 1)


def unit_cost(qs: Sequence[RecordedQuestion], prompt: Sequence[int]) -> float:
    """The expected cost of one sample of every question (its prompt, its mean billed sample)."""
    return sum(
        usd(pt, round(np.mean([_billed(s) for s in q.samples]))) for q, pt in zip(qs, prompt, strict=True)
    )


def batch_sim(
    ps: Sequence[Prepared], prompt: Sequence[int], budget: float, first_round: int = 2, **kw: Any
) -> tuple[list[int], float, list[int]]:
    """(correct per question, spend, samples per question) of `run_many`'s allocation."""
    alloc = Allocator(len(ps), first_round=first_round, max_samples=POOL, **kw)
    spent = 0.0
    while (choice := alloc.next()) is not None:
        q, k = choice
        if spent + usd(prompt[q], k * MAX_TOKENS) > budget:
            # The run account refuses the hold: single samples from now on, then the end.
            alloc.release(q)
            if alloc.max_batch == 1:
                break
            alloc.max_batch = 1
            continue
        at = alloc.samples[q]
        cost = usd(prompt[q], sum(ps[q].tokens[at : at + k]))
        spent += cost
        alloc.add(q, ps[q].answers[at : at + k], cost, usd(prompt[q], 0))
    hits = []
    for p, votes in zip(ps, alloc.votes, strict=True):
        top = max(votes.values(), default=0)
        lead = next((a for a in votes if votes[a] == top), None)  # ties: the first seen
        hits.append(int(lead is not None and lead == p.gold))
    return hits, spent, list(alloc.samples)


def uniform(ps: Sequence[Prepared], prompt: Sequence[int], n: int) -> tuple[list[int], float]:
    hits, spent = [], 0.0
    for p, pt in zip(ps, prompt, strict=True):
        votes = ordered({a: p.answers[:n].count(a) for a in p.answers[:n] if a is not None})
        lead = next(iter(votes), None)
        hits.append(int(lead is not None and lead == p.gold))
        spent += usd(pt, sum(p.tokens[:n]))
    return hits, spent


def controller(
    ps: Sequence[Prepared], prompt: Sequence[int], conf: float, gain: float
) -> tuple[list[int], float]:
    """`client.run(strategy=AdaptiveConsistency(...))` per question, step for step (as replay.py)."""
    strategy = AdaptiveConsistency(confidence=conf, min_gain=gain, max_samples=POOL)
    rule = strategy.default_stop()
    assert rule is not None
    c = Controller(ControllerConfig(max_samples=POOL))
    hits, spent = [], 0.0
    for p, pt in zip(ps, prompt, strict=True):
        drawn = rnd = 0
        while True:
            answers = p.answers[:drawn]
            votes = ordered({a: answers.count(a) for a in answers if a is not None})
            confidence, g = c.assess(votes)
            state = State(
                round=rnd,
                samples=drawn,
                votes=votes,
                abstentions=sum(a is None for a in answers),
                history=tuple(answers),
                confidence=confidence,
                marginal_gain=g,
            )
            if drawn >= POOL or (rnd > 0 and rule(state)):
                break
            k = c.next_batch(state, rule, cap=min(c.config.max_batch, POOL - drawn), first=rnd == 0)
            if k < 1:
                break
            spent += usd(pt, sum(p.tokens[drawn : drawn + k]))  # one request of n = k
            drawn += k
            rnd += 1
        lead = next(iter(votes), None)
        hits.append(int(lead is not None and lead == p.gold))
        if votes:
            v = list(votes.values())
            c.prior.observe(v[0], v[1] if len(v) > 1 else 0)
            c.prior.refit(iterations=10)
    return hits, spent


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean difference a - b in points and its standard error, paired over questions."""
    d = (a - b) * 100
    return {"diff_pt": round(float(d.mean()), 3), "se_pt": round(float(d.std(ddof=1) / math.sqrt(len(d))), 3)}


def allocation(
    qs: list[RecordedQuestion], spec: AnswerSpec, shuffles: int, first_round: int
) -> list[dict[str, Any]]:
    parsed = parse(qs, spec)
    prompt = anyio.run(prompt_tokens_of, qs)
    runs = [billed_prepare(qs, spec, s, parsed) for s in range(shuffles)]
    unit = unit_cost(qs, prompt)
    rows = []
    for k in (3, 5):
        budget = k * unit
        b_hits, b_spent, b_samples = [], [], []
        for ps in runs:
            h, sp, n = batch_sim(ps, prompt, budget, first_round)
            b_hits.append(h)
            b_spent.append(sp)
            b_samples.append(n)
        u_hits, u_spent, u_n = [], [], []
        for ps in runs:
            n = max(n for n in range(1, POOL + 1) if uniform(ps, prompt, n)[1] <= budget)
            h, sp = uniform(ps, prompt, n)
            u_hits.append(h)
            u_spent.append(sp)
            u_n.append(n)
        best: tuple[float, Any, list[list[int]], list[float]] | None = None
        for conf, gain in SWEEP:
            res = [controller(ps, prompt, conf, gain) for ps in runs]
            spends = [r[1] for r in res]
            if max(spends) <= budget and (best is None or np.mean(spends) > best[0]):
                best = (float(np.mean(spends)), (conf, gain), [r[0] for r in res], spends)
        bq = np.mean(np.array(b_hits, dtype=float), axis=0)
        uq = np.mean(np.array(u_hits, dtype=float), axis=0)
        row: dict[str, Any] = {
            "samples_per_question": k,
            "budget_usd": round(budget, 6),
            "batch": {
                "accuracy": round(float(bq.mean()), 4),
                "spent_usd": round(float(np.mean(b_spent)), 6),
                "max_spent_usd": round(max(b_spent), 6),
                "over_budget": sum(s > budget for s in b_spent),
                "mean_samples": round(float(np.mean(b_samples)), 3),
            },
            "uniform": {
                "n": sorted(set(u_n)),
                "accuracy": round(float(uq.mean()), 4),
                "spent_usd": round(float(np.mean(u_spent)), 6),
            },
            "batch_minus_uniform": paired(bq, uq),
        }
        if best is not None:
            cq = np.mean(np.array(best[2], dtype=float), axis=0)
            row["controller"] = {
                "setting": best[1],
                "accuracy": round(float(cq.mean()), 4),
                "spent_usd": round(best[0], 6),
            }
            row["batch_minus_controller"] = paired(bq, cq)
        rows.append(row)
    return rows


async def check(qs: list[RecordedQuestion], spec: AnswerSpec, k: int, first_round: int) -> dict[str, Any]:
    """The simulation against the real `run_many` on the first k questions (shuffle 0)."""
    qs = qs[:k]
    prompt = await prompt_tokens_of(qs)
    ps = billed_prepare(qs, spec, 0)
    unit = unit_cost(qs, prompt)
    budget = 3 * unit
    hits, spent, samples = batch_sim(ps, prompt, budget, first_round)
    ep = ReplayEndpoint(qs, seed=0, price=PRICE)
    items = [{"id": q.id, "prompt": ReplayEndpoint.prompt_for(q), "gold": q.gold} for q in qs]
    async with Client(ep) as client:
        report = await client.run_many(
            items,
            budget_usd=budget,
            max_samples=POOL,
            concurrency=1,
            first_round=first_round,
            answer=spec,
            max_tokens=MAX_TOKENS,
        )
    real_samples = [r["samples"] for r in report.records]
    real_hits = [int(bool(r.get("correct"))) for r in report.records]
    return {
        "questions": k,
        "same_samples": real_samples == samples,
        "same_correct": real_hits == hits,
        "sim_spent_usd": round(spent, 9),
        "real_spent_usd": round(report.spent_usd, 9),
    }


def _items(questions: int) -> list[dict[str, str]]:
    from adaptive.sim._problems import make_problems

    return [{"id": p.id, "prompt": p.question, "gold": p.answer} for p in make_problems(questions, seed=7)]


def worker(argv: Sequence[str]) -> None:
    """One timed worker: start up, say "ready", wait for "go", run its share, print its timing."""
    from adaptive.ledger import RedisBackend
    from adaptive.sim import SimEndpoint

    redis, run_name, budget, shard, n, questions, latency_ms, concurrency = argv
    i, count = int(shard), int(n)
    items = [it for k, it in enumerate(_items(int(questions))) if k % count == i]

    async def main() -> dict[str, Any]:
        backend = RedisBackend(redis)
        try:
            async with Client(SimEndpoint(first_token_seconds=float(latency_ms) / 1000)) as client:
                calls = [0]
                inner = client.run

                async def counted(*a: Any, **k: Any) -> Any:
                    calls[0] += 1
                    return await inner(*a, **k)

                client.run = counted  # type: ignore[method-assign]
                print("ready", flush=True)
                await anyio.to_thread.run_sync(sys.stdin.readline)
                t = time.perf_counter()
                report = await client.run_many(
                    items,
                    budget_usd=float(budget),
                    first_round=2,
                    max_samples=4,
                    concurrency=int(concurrency),
                    backend=backend,
                    run_name=run_name,
                    limit_usd=float(budget),
                    seed=i,
                )
                return {
                    "elapsed_s": time.perf_counter() - t,
                    "spent_usd": report.spent_usd,
                    "samples": sum(r["samples"] for r in report.records),
                    "calls": calls[0],
                }
        finally:
            await backend.aclose()

    print(json.dumps(anyio.run(main)), flush=True)


def timed_workers(
    redis: str, workers: int, questions: int, latency_ms: int, concurrency: int
) -> dict[str, Any]:
    """Questions per second of `workers` processes sharing one run account, start-up excluded."""
    import uuid

    run = f"bench:{uuid.uuid4().hex}"
    budget = questions * 0.0004
    cmd = [sys.executable, __file__, "--worker", redis, run, repr(budget)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*cmd, str(i), str(workers), str(questions), str(latency_ms), str(concurrency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    startup = time.perf_counter() - t0
    t = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    wall = time.perf_counter() - t
    return {
        "workers": workers,
        "startup_s": round(startup, 2),
        "wall_s": round(wall, 3),
        "questions_per_s": round(questions / wall, 2),
        "samples": sum(o["samples"] for o in outs),
        "calls": sum(o["calls"] for o in outs),
        # The wall time if only the simulated latency counted: each worker's calls, `concurrency`
        # at a time, 200 ms each (the slowest worker's share decides).
        "latency_floor_s": round(max(o["calls"] for o in outs) / concurrency * latency_ms / 1000, 2),
        "spent_usd": round(sum(o["spent_usd"] for o in outs), 6),
        "budget_usd": budget,
    }


def throughput(
    redis: str, questions: int, latency_ms: int, concurrency: int, repeats: int = 3
) -> dict[str, Any]:
    """1 against 4 workers, alternating, `repeats` times each; the median of each."""
    runs: dict[int, list[dict[str, Any]]] = {1: [], 4: []}
    for _ in range(repeats):
        for w in (1, 4):
            runs[w].append(timed_workers(redis, w, questions, latency_ms, concurrency))
    med = {w: sorted(r, key=lambda x: x["wall_s"])[len(r) // 2] for w, r in runs.items()}
    return {
        "latency_ms": latency_ms,
        "concurrency_per_worker": concurrency,
        "questions": questions,
        "workers_1": med[1],
        "workers_4": med[4],
        "speedup": round(med[1]["wall_s"] / med[4]["wall_s"], 2),
        "all_wall_s": {w: [x["wall_s"] for x in r] for w, r in runs.items()},
    }


def cli_throughput(redis: str, questions: int, latency_ms: int, concurrency: int) -> dict[str, float]:
    """The same through `adaptive batch --workers N` end to end (process start-up included)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        src.write_text("".join(json.dumps(it) + "\n" for it in _items(questions)))
        for workers in (1, 4):
            res = Path(tmp) / f"out{workers}.jsonl"
            cmd = [sys.executable, "-m", "adaptive", "batch", str(src), "--out", str(res), "--json"]
            cmd += ["--budget-usd", str(questions * 0.0004), "--first-round", "2", "--max-samples", "4"]
            cmd += ["--sim-first-token-ms", str(latency_ms), "--concurrency", str(concurrency)]
            cmd += ["--workers", str(workers), "--redis", redis]
            t = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            out[f"workers_{workers}_questions_per_s"] = round(questions / wall, 2)
            out[f"workers_{workers}_spent_usd"] = summary["spent_usd"]
    out["speedup"] = round(out["workers_4_questions_per_s"] / out["workers_1_questions_per_s"], 2)
    return out


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="*")
    parser.add_argument("--questions", type=int, default=None, help="the first K only (default: all)")
    parser.add_argument("--shuffles", type=int, default=10)
    parser.add_argument("--first-round", type=int, default=2)
    parser.add_argument("--check", type=int, default=0, metavar="K", help="verify on the real stack")
    parser.add_argument("--redis", default=None)
    parser.add_argument("--throughput-questions", type=int, default=512)
    parser.add_argument("--throughput-concurrency", type=int, default=4, help="calls in flight per worker")
    parser.add_argument("--throughput-repeats", type=int, default=2)
    parser.add_argument("--skip-allocation", action="store_true")
    parser.add_argument("--cli", action="store_true", help="also time `adaptive batch` end to end")
    parser.add_argument(
        "--extract", default="answer-is", help="extractor name, or 'letters' (last-letters files)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("adaptive").setLevel(logging.ERROR)
    spec = spec_for(args.extract)
    result: dict[str, Any] = {"files": {}}
    for file in args.files:
        qs = load_recorded(file)[: args.questions]
        one: dict[str, Any] = {"questions": len(qs)}
        result["files"][file] = one
        if args.check:
            one["check"] = anyio.run(check, qs, spec, args.check, args.first_round)
            print(json.dumps(one["check"]))
        if not args.skip_allocation:
            t = time.perf_counter()
            one["allocation"] = allocation(qs, spec, args.shuffles, args.first_round)
            one["allocation_s"] = round(time.perf_counter() - t, 1)
            for row in one["allocation"]:
                print(json.dumps(row))
    if args.redis:
        result["throughput"] = throughput(
            args.redis, args.throughput_questions, 200, args.throughput_concurrency, args.throughput_repeats
        )
        print(json.dumps(result["throughput"]))
        if args.cli:
            result["cli_throughput"] = cli_throughput(
                args.redis, args.throughput_questions, 200, args.throughput_concurrency
            )
            print(json.dumps(result["cli_throughput"]))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
