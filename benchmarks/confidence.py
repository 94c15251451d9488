"""Confidence benchmark: do token-logprob confidence (DeepConf style) and sample length help the vote?

For a pool of samples per question (the simulator's, or a recorded JSONL file's), over R
seeded shuffles, and for each budget N (samples per question), it compares

- ``majority``: the plain vote over N samples (self-consistency);
- ``conf-weighted``: each vote weighted by `exp(trace confidence)` (`weighting="confidence"`);
- ``conf-top-X%``: only the X% most confident traces vote (`keep_top=X/100`);
- ``len-weighted`` / ``len-short-50%`` / ``len-long-wtd``: weight by 1/length
  (`weighting="shorter"`), keep the shorter half, or weight by length (`weighting="longer"`,
  the opposite hypothesis): is a long trace on a question less often right, or more?
- ``online-keep-X%``: DeepConf online: the first `--warmup` traces run to the end and set a
  threshold (the 1-X quantile of their lowest group confidence); every later trace is cut
  as soon as a full window of its tokens falls below it, is charged only the tokens generated
  until then, and does not vote. Accuracy and tokens are what that would give, computed from
  each trace's full token logprobs (a stream cut at token t has produced exactly tokens 1..t).

Confidence methods need per-sample `logprobs` (a list of token logprobs); a file without them
(both shared files) gets the length methods only, and the report says so. It also prints the
AUROC of each signal (how often a right trace outranks a wrong one on the same question set):
0.5 is no signal.

Usage:
    python benchmarks/confidence.py --sim [--questions 200] [--difficulty D]
    python benchmarks/confidence.py FILE.jsonl [FILE=EXTRACTOR ...] [--shuffles 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from adaptive import AnswerSpec, majority_vote, weighted_vote
from adaptive._confidence import ConfidenceMonitor, TraceConfidence, threshold_from, top_share
from adaptive._extractors import FunctionExtractor
from adaptive._models import TokenLogprob
from adaptive.endpoints import load_recorded

BUDGETS = (4, 8, 16, 32)
KEEPS = (0.9, 0.5, 0.1)


@dataclass(frozen=True)
class Trace:
    """One sample: its normalized answer, completion tokens and token logprobs (if recorded)."""

    answer: str | None
    tokens: int
    logprobs: tuple[float, ...] | None


@dataclass(frozen=True)
class Question:
    gold: str | None
    traces: tuple[Trace, ...]


# -- loading ---------------------------------------------------------------------------------
def _letters_after_answer_is(text: str) -> str | None:
    i = text.lower().rfind("answer is")
    if i < 0:
        return None
    return "".join(ch for ch in text[i + 9 :].lower() if "a" <= ch <= "z") or None


def _spec(extract: str) -> AnswerSpec:
    if extract == "letters":
        return AnswerSpec(extractor=FunctionExtractor(fn=_letters_after_answer_is))
    return AnswerSpec(extractor=extract)


def load_file(path: str, extract: str) -> list[Question]:
    """A recorded file (see /work/shared/data/README.md), answers read and normalized."""
    spec = _spec(extract)
    out = []
    for q in load_recorded(path):
        gold = spec.normalizer.normalize(q.gold) if q.gold is not None else None
        traces = tuple(Trace(spec.read(s.text, s.answer), s.tokens(), s.logprobs) for s in q.samples)
        out.append(Question(gold, traces))
    return out


def load_sim(questions: int, pool: int, seed: int, difficulty: float | None) -> list[Question]:
    """The simulator's samples (temperature 0.7) for generated problems, with their logprobs."""
    from adaptive.sim import SimModel, demo_problems, make_problems

    model = SimModel(seed=seed)
    problems = (
        demo_problems(questions, seed=seed)
        if difficulty is None
        else make_problems(questions, seed=seed, difficulty=difficulty)
    )
    out = []
    for i, p in enumerate(problems):
        traces = []
        for j in range(pool):
            s = model.sample(p.question, seed=seed * 1_000_003 + i * 1009 + j, temperature=0.7)
            traces.append(Trace(s.answer, s.completion_tokens, s.token_logprobs))
        out.append(Question(p.answer, tuple(traces)))
    return out


# -- methods ---------------------------------------------------------------------------------
Outcome = tuple[str | None, int, int]  # answer, full traces voting, tokens generated
Method = Callable[[Sequence[Trace]], Outcome]


def _tokens(ts: Sequence[Trace]) -> int:
    return sum(t.tokens for t in ts)


def majority(ts: Sequence[Trace]) -> Outcome:
    return majority_vote([t.answer for t in ts]).winner, len(ts), _tokens(ts)


def conf_weighted(tc: TraceConfidence) -> Method:
    def run(ts: Sequence[Trace]) -> Outcome:
        w = [tc.weight(tc.of_values(t.logprobs)) if t.logprobs else 0.0 for t in ts]
        return weighted_vote([t.answer for t in ts], w).winner, len(ts), _tokens(ts)

    return run


def conf_top(tc: TraceConfidence, keep: float) -> Method:
    def run(ts: Sequence[Trace]) -> Outcome:
        kept = top_share([tc.of_values(t.logprobs) if t.logprobs else None for t in ts], keep)
        return (
            majority_vote([t.answer for t, k in zip(ts, kept, strict=True) if k]).winner,
            len(ts),
            _tokens(ts),
        )

    return run


def _kept_vote(ts: Sequence[Trace], kept: Sequence[bool]) -> str | None:
    return majority_vote([t.answer for t, k in zip(ts, kept, strict=True) if k]).winner


def len_weighted(ts: Sequence[Trace]) -> Outcome:
    w = [1.0 / max(1, t.tokens) for t in ts]
    return weighted_vote([t.answer for t in ts], w).winner, len(ts), _tokens(ts)


def len_long_weighted(ts: Sequence[Trace]) -> Outcome:
    w = [float(t.tokens) for t in ts]
    return weighted_vote([t.answer for t in ts], w).winner, len(ts), _tokens(ts)


def len_short(keep: float) -> Method:
    def run(ts: Sequence[Trace]) -> Outcome:
        kept = top_share([-float(t.tokens) for t in ts], keep)
        return (
            majority_vote([t.answer for t, k in zip(ts, kept, strict=True) if k]).winner,
            len(ts),
            _tokens(ts),
        )

    return run


def online(tc: TraceConfidence, window: int, warmup: int, keep: float) -> Method:
    """DeepConf online: warmup traces set the threshold, later ones are cut below it."""

    def run(ts: Sequence[Trace]) -> Outcome:
        first = list(ts[:warmup])
        confs = [tc.of_values(t.logprobs) for t in first if t.logprobs]
        if not confs:
            return majority(ts)
        threshold = threshold_from(confs, keep)
        voters, tokens = list(first), _tokens(first)
        for t in ts[warmup:]:
            assert t.logprobs is not None
            m = ConfidenceMonitor(threshold=threshold, window=window)
            if m.push(TokenLogprob(token="", logprob=x) for x in t.logprobs):
                assert m.cut_at is not None
                tokens += m.cut_at  # charged what was streamed until the cut
            else:
                voters.append(t)
                tokens += t.tokens
        return majority_vote([t.answer for t in voters]).winner, len(voters), tokens

    return run


def _mann_whitney(scores: Sequence[tuple[float, bool]]) -> tuple[float, int]:
    """(right-over-wrong pair count, ties counted half; number of right-wrong pairs)."""
    pos = sum(1 for _, y in scores if y)
    neg = len(scores) - pos
    if not pos or not neg:
        return 0.0, 0
    ranked = sorted(scores, key=lambda sy: sy[0])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid = (i + j + 1) / 2  # 1-based average rank of the tie block
        rank_sum += mid * sum(1 for _, y in ranked[i:j] if y)
        i = j
    return rank_sum - pos * (pos + 1) / 2, pos * neg


def auroc(scores: Sequence[tuple[float, bool]]) -> float | None:
    """P(a right trace scores above a wrong one), ties counted half (Mann-Whitney)."""
    u, pairs = _mann_whitney(scores)
    return u / pairs if pairs else None


def within_auroc(groups: Sequence[Sequence[tuple[float, bool]]]) -> float | None:
    """AUROC over right-wrong pairs of the same question only (what a vote can use)."""
    u, pairs = 0.0, 0
    for g in groups:
        gu, gp = _mann_whitney(g)
        u, pairs = u + gu, pairs + gp
    return u / pairs if pairs else None


# -- running ---------------------------------------------------------------------------------
def evaluate(
    questions: Sequence[Question],
    methods: dict[str, Method],
    budgets: Sequence[int],
    shuffles: int,
    seed: int,
) -> dict[str, dict[str, dict[str, float]]]:
    """Accuracy, mean voting traces and mean tokens per method and budget."""
    pool = min(len(q.traces) for q in questions)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for n in budgets:
        if n > pool:
            continue
        sums = {name: [0.0, 0.0, 0.0] for name in methods}
        runs = 0
        for s in range(shuffles):
            rng = random.Random(seed * 7919 + s)
            for q in questions:
                order = list(q.traces)
                rng.shuffle(order)
                ts = order[:n]
                runs += 1
                for name, method in methods.items():
                    answer, voted, tokens = method(ts)
                    acc = sums[name]
                    acc[0] += answer is not None and answer == q.gold
                    acc[1] += voted
                    acc[2] += tokens
        out[str(n)] = {
            name: {"accuracy": a / runs, "mean_voting": v / runs, "mean_tokens": t / runs}
            for name, (a, v, t) in sums.items()
        }
    return out


def signals(questions: Sequence[Question], tc: TraceConfidence) -> dict[str, float | None]:
    """AUROC of each per-trace signal, right vs wrong traces (None: not available).

    Plain: traces compared across questions (confounded by difficulty: hard questions have
    longer, less sure traces); "_within": only traces of the same question, which is what a
    vote can use.
    """
    conf: list[list[tuple[float, bool]]] = []
    short: list[list[tuple[float, bool]]] = []
    for q in questions:
        cq, sq = [], []
        for t in q.traces:
            right = t.answer is not None and t.answer == q.gold
            sq.append((-float(t.tokens), right))
            if t.logprobs:
                cq.append((tc.of_values(t.logprobs), right))
        conf.append(cq)
        short.append(sq)
    has_conf = any(conf)
    return {
        "confidence": auroc([x for g in conf for x in g]) if has_conf else None,
        "confidence_within": within_auroc(conf) if has_conf else None,
        "shortness": auroc([x for g in short for x in g]),
        "shortness_within": within_auroc(short),
    }


def run(questions: Sequence[Question], args: argparse.Namespace) -> dict[str, object]:
    t0 = time.perf_counter()
    tc = TraceConfidence(measure=args.measure, window=args.window)
    has_lps = all(t.logprobs for q in questions for t in q.traces)
    methods: dict[str, Method] = {
        "majority": majority,
        "len-weighted": len_weighted,
        "len-short-50%": len_short(0.5),
        "len-long-wtd": len_long_weighted,
    }
    if has_lps:
        methods["conf-weighted"] = conf_weighted(tc)
        for keep in KEEPS:
            methods[f"conf-top-{round(keep * 100)}%"] = conf_top(tc, keep)
        window = int(args.window) if args.window >= 1 else 32
        online_tc = TraceConfidence(measure="lowest", window=window)
        for keep in (0.9, 0.5):
            methods[f"online-keep-{round(keep * 100)}%"] = online(online_tc, window, args.warmup, keep)
    results = evaluate(questions, methods, args.budgets, args.shuffles, args.seed)
    return {
        "questions": len(questions),
        "logprobs": has_lps,
        "note": None if has_lps else "no per-sample logprobs in this file: confidence methods skipped",
        "auroc": signals(questions, tc),
        "budgets": results,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _print(title: str, res: dict[str, object]) -> None:
    print(f"\n{title}  ({res['questions']} questions, {res['seconds']}s)")
    if res["note"]:
        print(f"  {res['note']}")
    print(
        "  AUROC (right vs wrong traces): "
        + ", ".join(
            f"{k} {'n/a' if v is None else f'{v:.3f}'}"
            for k, v in res["auroc"].items()  # type: ignore[attr-defined]
        )
    )
    for n, methods in res["budgets"].items():  # type: ignore[attr-defined]
        base = methods["majority"]
        print(f"  N={n:<4}{'method':<16}{'accuracy':>10}{'voting':>9}{'tokens':>10}{'tok ratio':>11}")
        for name, m in methods.items():
            ratio = m["mean_tokens"] / base["mean_tokens"] if base["mean_tokens"] else float("nan")
            figures = f"{m['accuracy']:>10.4f}{m['mean_voting']:>9.2f}{m['mean_tokens']:>10.1f}"
            print(f"        {name:<16}{figures}{ratio:>10.2f}x")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--sim", action="store_true", help="benchmark the simulator's samples")
    ap.add_argument("--questions", type=int, default=200, help="simulated questions")
    ap.add_argument("--pool", type=int, default=32, help="simulated samples per question")
    ap.add_argument("--difficulty", type=float, default=None, help="simulated problems at this difficulty")
    ap.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    ap.add_argument("--shuffles", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--measure", default="bottom10", choices=["lowest", "bottom10", "tail", "mean"])
    ap.add_argument(
        "--window", type=float, default=32, help="group window in tokens (below 1: share of a trace)"
    )
    ap.add_argument("--warmup", type=int, default=4, help="online: traces run in full to set the threshold")
    ap.add_argument("--extract", default="answer-is", help="answer extractor for text samples (or 'letters')")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not args.sim and not args.files:
        ap.error("give recorded files, --sim, or both")
    if args.warmup < 1 or math.isnan(args.window) or args.window <= 0:
        ap.error("--warmup must be at least 1 and --window positive")
    report: dict[str, dict[str, object]] = {}
    if args.sim:
        sim = load_sim(args.questions, args.pool, args.seed, args.difficulty)
        report["sim"] = run(sim, args)
        _print(f"simulator (difficulty {args.difficulty or 'demo mix'}, pool {args.pool})", report["sim"])
    for arg in args.files:
        f, _, extract = arg.partition("=")
        report[f] = run(load_file(f, extract or args.extract), args)
        _print(f, report[f])
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
