"""`adaptive batch` allocation against uniform N and the per-question controller, and workers.

Part 1, on a recorded-samples file (a `ReplayEndpoint` serving every question, shuffled by
seed), at total budgets of B = 3 and 5 samples a question on average (B is k times what one
sample of every question costs, measured by a first pass):

- batch: `Client.run_many(budget_usd=B)`;
- uniform N: self-consistency with N samples for every question, the largest N whose
  total fits B (N = k when the costs are even);
- controller: `AdaptiveConsistency` per question over a sweep of settings (confidence and
  min_gain), at the setting whose total spend comes closest to B without exceeding it.

Part 2: throughput of `adaptive batch` with 1 and 4 worker processes on the simulator with
200 ms simulated latency (needs `--redis URL`; questions per second, side by side), each
worker with `--throughput-concurrency` calls in flight (default 4: latency-bound, which is
where more processes help; at high concurrency a 2-core machine is CPU-bound either way).

    python benchmarks/batch.py /work/shared/data/consol-gpt4omini-gsm8k/samples.jsonl \
        [--questions 300] [--shuffles 2] [--redis redis://127.0.0.1:6379/0] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import AnswerSpec, Client, ControllerConfig, Price, ReplayEndpoint, answers_equivalent
from adaptive._extractors import FunctionExtractor
from adaptive.endpoints import load_recorded
from adaptive.endpoints.replay import RecordedQuestion

PRICE = Price(input=0.15, output=0.6)
SWEEP = [(c, g) for c in (0.8, 0.9, 0.95, 0.99) for g in (0.0005, 0.002, 0.008, 0.02)]


def _letters_after_answer_is(text: str) -> str | None:
    # The last-letters reference rule of the shared data README.
    i = text.lower().rfind("answer is")
    if i < 0:
        return None
    return "".join(ch for ch in text[i + 9 :].lower() if "a" <= ch <= "z") or None


def spec_for(extract: str) -> AnswerSpec:
    if extract == "letters":
        return AnswerSpec(extractor=FunctionExtractor(fn=_letters_after_answer_is))
    return AnswerSpec(extractor=extract)


def correct(answer: str | None, gold: str | None) -> bool:
    return answer is not None and gold is not None and answers_equivalent(answer, gold)


async def per_question(qs: list[RecordedQuestion], seed: int, strategy: Any) -> tuple[float, float]:
    """(accuracy, spend) of one strategy run on every question."""
    ep = ReplayEndpoint(qs, seed=seed, price=PRICE)
    hits, spent = 0, 0.0
    async with Client(ep, controller=ControllerConfig(max_samples=40, calibrate=False)) as client:
        for q in qs:
            r = await client.run(ReplayEndpoint.prompt_for(q), strategy=strategy)
            hits += correct(r.answer, q.gold)
            spent += r.cost_usd
    return hits / len(qs), spent


async def batch(
    qs: list[RecordedQuestion], seed: int, budget: float, spec: AnswerSpec
) -> tuple[float, float]:
    ep = ReplayEndpoint(qs, seed=seed, price=PRICE)
    items = [{"id": q.id, "prompt": ReplayEndpoint.prompt_for(q), "gold": q.gold} for q in qs]
    async with Client(ep) as client:
        report = await client.run_many(
            items, budget_usd=budget, max_samples=40, concurrency=8, seed=seed, answer=spec
        )
    acc = sum(correct(r["answer"], r.get("gold")) for r in report.records) / len(qs)
    return acc, report.spent_usd


async def allocation(qs: list[RecordedQuestion], shuffles: int, spec: AnswerSpec) -> list[dict[str, Any]]:
    rows = []
    one = [(await per_question(qs, s, SelfConsistency(n=1, answer=spec)))[1] for s in range(shuffles)]
    unit = sum(one) / len(one)
    for k in (3, 5):
        budget = k * unit
        b_acc, b_spent, u_acc, u_spent, c_acc, c_spent = [], [], [], [], [], []
        uniform_n, setting = 0, None
        for s in range(shuffles):
            acc, spent = await batch(qs, s, budget, spec)
            b_acc.append(acc)
            b_spent.append(spent)
            for n in range(k + 2, 0, -1):  # the largest N that fits
                acc, spent = await per_question(qs, s, SelfConsistency(n=n, answer=spec))
                if spent <= budget:
                    u_acc.append(acc)
                    u_spent.append(spent)
                    uniform_n = n
                    break
            best: tuple[float, float, tuple[float, float]] | None = None
            for conf, gain in SWEEP:
                acc, spent = await per_question(
                    qs, s, AdaptiveConsistency(answer=spec, confidence=conf, min_gain=gain, max_samples=40)
                )
                if spent <= budget and (best is None or spent > best[1]):
                    best = (acc, spent, (conf, gain))
            if best is not None:
                c_acc.append(best[0])
                c_spent.append(best[1])
                setting = best[2]

        def mean(x: list[float]) -> float | None:
            return round(sum(x) / len(x), 4) if x else None

        rows.append(
            {
                "samples_per_question": k,
                "budget_usd": round(budget, 6),
                "batch": {"accuracy": mean(b_acc), "spent_usd": mean(b_spent), "max_spent": max(b_spent)},
                "uniform": {"n": uniform_n, "accuracy": mean(u_acc), "spent_usd": mean(u_spent)},
                "controller": {"setting": setting, "accuracy": mean(c_acc), "spent_usd": mean(c_spent)},
            }
        )
    return rows


def throughput(redis: str, questions: int, latency_ms: int, concurrency: int) -> dict[str, float]:
    from adaptive.sim._problems import make_problems

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        src.write_text(
            "".join(
                json.dumps({"id": p.id, "prompt": p.question, "gold": p.answer}) + "\n"
                for p in make_problems(questions, seed=7)
            )
        )
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--shuffles", type=int, default=2)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--throughput-questions", type=int, default=128)
    parser.add_argument("--throughput-concurrency", type=int, default=4, help="calls in flight per worker")
    parser.add_argument("--skip-allocation", action="store_true")
    parser.add_argument(
        "--extract", default="answer-is", help="extractor name, or 'letters' (last-letters files)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("adaptive").setLevel(logging.ERROR)
    qs = load_recorded(args.file)[: args.questions]
    result: dict[str, Any] = {"file": args.file, "questions": len(qs)}
    if not args.skip_allocation:
        result["allocation"] = anyio.run(allocation, qs, args.shuffles, spec_for(args.extract))
        for row in result["allocation"]:
            print(json.dumps(row))
    if args.redis:
        result["throughput"] = throughput(
            args.redis, args.throughput_questions, 200, args.throughput_concurrency
        )
        print(json.dumps(result["throughput"]))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
