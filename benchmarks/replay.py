"""Replay benchmark: our controller against the published stopping rules, on recorded samples.

For every file, over R seeded shuffles of each question's recorded samples, it compares

- ``SC@N``: majority vote over all N recorded samples;
- ``AC-Beta-0.95``: Adaptive-Consistency's Beta rule, one sample at a time;
- ``ESC-5``: Early-Stopping Self-Consistency, windows of 5;
- ``controller``: adaptive's `AdaptiveConsistency` at its default setting, its prior learned
  prequentially (each question sees only the questions answered before it in that shuffle,
  as a live system would);

plus each method's threshold sweep (accuracy against mean samples). Mean tokens count the
completion tokens of the samples drawn: hard questions have longer samples.

As a yardstick it also prints the best any vote-count stopping rule could do on the same
shuffles, found in hindsight by dynamic programming (`_bound.py`): once maximising accuracy
with the gold labels, once maximising agreement with the full majority (label-free, what a
rule could learn from unlabelled logs). No rule that reads only votes can beat the first.

The controller is driven through its own pure decision functions (`Controller.assess`,
`Controller.next_batch`, the stop rules) for speed; `--check K` also runs the first K questions
of the first shuffle through the real stack (`Client` + `ReplayEndpoint`) and verifies that
every answer and sample count is identical.

Usage: python benchmarks/replay.py FILE.jsonl [FILE.jsonl ...] [--shuffles 20] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio
import numpy as np

# A sibling module: run as a script, the script's folder is on sys.path.
from _bound import count_paths, fewest_samples, hull_at, vote_count_bound
from adaptive_strategies import AdaptiveConsistency

from adaptive import AnswerSpec, Client, ControllerConfig, ReplayEndpoint, State, StopRule, majority_vote
from adaptive._controller import Controller
from adaptive._extractors import FunctionExtractor
from adaptive._posterior import beta_confidence
from adaptive.endpoints import load_recorded
from adaptive.endpoints.replay import RecordedQuestion

AC_SWEEP = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
ESC_SWEEP = (2, 3, 4, 5, 6, 8)
# The controller's two knobs: the confidence to stop at, and the smallest worthwhile gain per
# extra sample (the one that moves it most). Swept one at a time around the default.
CONTROLLER_GAIN_SWEEP = (0.0, 0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008)
CONTROLLER_CONF_SWEEP = (0.9, 0.95, 0.98, 0.995)
# Per-sample costs for the hindsight bound's policies (from "sample to the end" to "stop early").
BOUND_COSTS = tuple(float(c) for c in np.geomspace(1e-4, 5e-2, 19))


@dataclass
class Prepared:
    """A question's answers and tokens in the order one shuffle hands them out."""

    answers: list[str | None]
    tokens: list[int]
    gold: str | None


def prepare(questions: Sequence[RecordedQuestion], spec: AnswerSpec, seed: int) -> list[Prepared]:
    ep = ReplayEndpoint(questions, seed=seed)
    parsed = {}
    out = []
    for q in questions:
        if q.id not in parsed:
            parsed[q.id] = [spec.read(s.text, s.answer) for s in q.samples]
        order = ep.order(q.id)
        gold = spec.normalizer.normalize(q.gold) if q.gold is not None else None
        out.append(Prepared([parsed[q.id][i] for i in order], [q.samples[i].tokens() for i in order], gold))
    return out


Outcome = tuple[str | None, int, int]  # answer, samples drawn, tokens drawn


def sc_all(p: Prepared) -> Outcome:
    return majority_vote(p.answers).winner, len(p.answers), sum(p.tokens)


def _votes(answers: Sequence[str | None]) -> dict[str, int]:
    votes: dict[str, int] = {}
    for a in answers:
        if a is not None:
            votes[a] = votes.get(a, 0) + 1
    return votes


def ac_beta(p: Prepared, threshold: float) -> Outcome:
    n = len(p.answers)
    for k in range(1, n + 1):
        counts = sorted(_votes(p.answers[:k]).values(), reverse=True)
        if counts:
            v1, v2 = counts[0], counts[1] if len(counts) > 1 else 0
            if beta_confidence(v1, v2) >= threshold:
                return majority_vote(p.answers[:k]).winner, k, sum(p.tokens[:k])
    return majority_vote(p.answers).winner, n, sum(p.tokens)


def esc(p: Prepared, window: int) -> Outcome:
    n = len(p.answers)
    k = 0
    while k < n:
        k = min(n, k + window)
        w = p.answers[k - window : k] if k >= window else p.answers[:k]
        if len(w) == window and w[0] is not None and len(set(w)) == 1:
            break
    return majority_vote(p.answers[:k]).winner, k, sum(p.tokens[:k])


def controller_run(p: Prepared, controller: Controller, rule: StopRule, max_samples: int) -> Outcome:
    """What `Client.run(strategy=AdaptiveConsistency(...))` does on a replay, step for step."""
    from adaptive._batching import ordered  # the same ordering the controller uses

    drawn = 0
    rnd = 0
    cap_total = min(max_samples, len(p.answers), controller.config.max_samples)
    while True:
        answers = p.answers[:drawn]
        votes = ordered(_votes(answers))
        conf, g = controller.assess(votes)
        state = State(
            round=rnd,
            samples=drawn,
            votes=votes,
            abstentions=sum(a is None for a in answers),
            history=tuple(answers),
            confidence=conf,
            marginal_gain=g,
        )
        if drawn >= cap_total:
            break
        if rnd > 0 and rule(state):
            break
        cap = min(controller.config.max_batch, cap_total - drawn)
        k = controller.next_batch(state, rule, cap=cap, first=rnd == 0)
        if k < 1:
            break
        drawn += k
        rnd += 1
    winner = majority_vote(p.answers[:drawn]).winner
    if controller.config.calibrate and votes:
        v = list(votes.values())
        controller.prior.observe(v[0], v[1] if len(v) > 1 else 0)
        controller.prior.refit(iterations=10)
    return winner, drawn, sum(p.tokens[:drawn])


def evaluate(
    runs: list[list[Prepared]], method: Callable[[Prepared], Outcome], fresh: Callable[[], None] | None = None
) -> dict[str, float]:
    correct = samples = tokens = total = 0
    for prepared in runs:
        if fresh is not None:
            fresh()
        for p in prepared:
            answer, n, t = method(p)
            correct += answer is not None and answer == p.gold
            samples += n
            tokens += t
            total += 1
    return {"accuracy": correct / total, "mean_samples": samples / total, "mean_tokens": tokens / total}


def controller_method(
    strategy: AdaptiveConsistency, max_samples: int
) -> tuple[Callable[[Prepared], Outcome], Callable[[], None]]:
    rule = strategy.default_stop()
    assert rule is not None
    holder: dict[str, Controller] = {}

    def fresh() -> None:
        holder["c"] = Controller(ControllerConfig(max_samples=max_samples))

    def run(p: Prepared) -> Outcome:
        return controller_run(p, holder["c"], rule, max_samples)

    return run, fresh


async def full_stack(
    questions: Sequence[RecordedQuestion], spec: AnswerSpec, seed: int, k: int, max_samples: int
) -> list[Outcome]:
    ep = ReplayEndpoint(questions, seed=seed)
    out = []
    async with Client(ep, controller=ControllerConfig(max_samples=max_samples)) as client:
        for q in questions[:k]:
            r = await client.run(
                ReplayEndpoint.prompt_for(q),
                strategy=AdaptiveConsistency(answer=spec, max_samples=max_samples),
            )
            out.append((r.answer, r.generated, r.usage.completion_tokens))
    return out


def _letters_after_answer_is(text: str) -> str | None:
    # The last-letters reference rule (shared data README): the letters after the last
    # "answer is", lower-cased.
    i = text.lower().rfind("answer is")
    if i < 0:
        return None
    return "".join(ch for ch in text[i + 9 :].lower() if "a" <= ch <= "z") or None


def spec_for(extract: str) -> AnswerSpec:
    """How answers are read: pre-extracted answers are only normalized; texts are extracted."""
    if extract == "letters":
        return AnswerSpec(extractor=FunctionExtractor(fn=_letters_after_answer_is))
    return AnswerSpec(extractor=extract)


def _interpolate(curve: list[list[float]], x: float) -> float:
    """Accuracy of a (mean_samples, accuracy) curve at x, linearly between swept points.

    Outside the swept range the curve is extended flat (its nearest point's accuracy).
    """
    pts = sorted(curve)
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def run_file(path: str, shuffles: int, check: int, extract: str) -> dict[str, object]:
    questions = load_recorded(path)
    spec = spec_for(extract)
    n = max(len(q.samples) for q in questions)
    t0 = time.perf_counter()
    runs = [prepare(questions, spec, seed) for seed in range(shuffles)]
    methods: dict[str, dict[str, float]] = {}
    frontier: dict[str, list[list[float]]] = {}
    methods[f"SC@{n}"] = evaluate(runs, sc_all)
    full = methods[f"SC@{n}"]["mean_samples"]
    frontier["AC-Beta"] = []
    for t in AC_SWEEP:
        r = evaluate(runs, lambda p, t=t: ac_beta(p, t))
        frontier["AC-Beta"].append([r["mean_samples"], r["accuracy"]])
        if t == 0.95:
            methods["AC-Beta-0.95"] = r
    frontier["ESC"] = []
    for w in ESC_SWEEP:
        r = evaluate(runs, lambda p, w=w: esc(p, w))
        frontier["ESC"].append([r["mean_samples"], r["accuracy"]])
        if w == 5:
            methods["ESC-5"] = r
    default = AdaptiveConsistency(max_samples=n)
    settings = [default.model_copy(update={"min_gain": g}) for g in CONTROLLER_GAIN_SWEEP]
    settings += [default.model_copy(update={"confidence": c, "min_gain": 0.0}) for c in CONTROLLER_CONF_SWEEP]
    points = []
    for setting in settings:
        run, fresh = controller_method(setting, n)
        r = evaluate(runs, run, fresh)
        points.append([r["mean_samples"], r["accuracy"]])
        if setting == default:
            methods["controller"] = r
    frontier["controller"] = sorted(points)
    for m in methods.values():
        m["reduction_vs_full"] = full / m["mean_samples"]
    gaps = {
        rival: [round(a - _interpolate(frontier[rival], s), 5) for s, a in frontier["controller"]]
        for rival in ("AC-Beta", "ESC")
    }
    paths = count_paths([(p.answers, p.tokens, p.gold) for prepared in runs for p in prepared])
    bound: dict[str, list[list[float]]] = {}
    room: dict[str, dict[str, float]] = {}
    for reward in ("gold", "majority"):
        pts = vote_count_bound(paths, reward, BOUND_COSTS)
        bound[reward] = [[p.mean_samples, p.accuracy, p.mean_tokens] for p in pts]
        curve = [(p.mean_samples, p.accuracy) for p in pts]
        # How far the bound lies above each method at that method's mean samples, and where
        # it stands at a twelfth of the full samples and at AC-Beta-0.95's samples / 1.5.
        room[reward] = {
            name: round(hull_at(curve, m["mean_samples"]) - m["accuracy"], 5) for name, m in methods.items()
        }
        for x in (full / 12, methods["AC-Beta-0.95"]["mean_samples"] / 1.5):
            room[reward][f"at {x:.2f} samples"] = round(hull_at(curve, x), 5)
    # Fewest mean samples within 0.2 points of the full vote, on each curve's upper hull.
    target = methods[f"SC@{n}"]["accuracy"] - 0.002
    curves = {name: [(x, y) for x, y in pts] for name, pts in frontier.items()}
    curves |= {f"bound-{reward}": [(x, y) for x, y, _ in pts] for reward, pts in bound.items()}
    within = {name: fewest_samples(pts, target) for name, pts in curves.items()}
    result: dict[str, object] = {
        "methods": methods,
        "frontier": frontier,
        # controller accuracy minus the rival's (interpolated) at each controller point's
        # mean samples (the rival extended flat outside its swept range)
        "frontier_gap": gaps,
        # the hindsight bound: [mean_samples, accuracy, mean_tokens] per per-sample cost
        "bound": bound,
        # bound accuracy minus each method's at its mean samples, and the bound's accuracy at
        # N/12 samples and at AC-Beta-0.95's samples / 1.5
        "bound_room": room,
        # fewest mean samples within 0.2 points of SC@N on each frontier and bound (None: never)
        "within_0.2pt": within,
        "questions": len(questions),
        "shuffles": shuffles,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if check:
        run, fresh = controller_method(default, n)
        fresh()
        fast = [run(p) for p in runs[0][:check]]
        slow = anyio.run(full_stack, questions, spec, 0, check, n)
        mismatches = sum(a[:2] != b[:2] for a, b in zip(fast, slow, strict=True))
        result["full_stack_check"] = {"questions": check, "mismatches": mismatches}
        if mismatches:
            print(f"full-stack check FAILED: {mismatches} of {check} differ", file=sys.stderr)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--shuffles", type=int, default=20)
    ap.add_argument("--check", type=int, default=100, help="questions to cross-check through the full stack")
    ap.add_argument(
        "--extract",
        default="answer-is",
        help="answer extractor for text samples: an extractor name (answer-is, boxed, last-number, ...) "
        "or 'letters' (letters after the last 'answer is', the last-letters reference rule); "
        "FILE=NAME sets it per file",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    report: dict[str, dict[str, object]] = {}
    for arg in args.files:
        f, _, extract = arg.partition("=")
        report[f] = run_file(f, args.shuffles, args.check, extract or args.extract)
        res = report[f]
        full_n = next(m["mean_samples"] for k, m in res["methods"].items() if k.startswith("SC@"))  # type: ignore[union-attr]
        print(f"\n{f}  ({res['questions']} questions x {args.shuffles} shuffles, {res['seconds']}s)")
        print(f"{'method':<16}{'accuracy':>10}{'samples':>10}{'tokens':>10}{'reduction':>11}")
        for name, m in res["methods"].items():  # type: ignore[union-attr]
            print(
                f"{name:<16}{m['accuracy']:>10.4f}{m['mean_samples']:>10.2f}{m['mean_tokens']:>10.1f}{m['reduction_vs_full']:>10.1f}x"
            )
        for name, pts in res["frontier"].items():  # type: ignore[union-attr]
            print(f"  frontier {name:<11}" + "  ".join(f"{s:.2f}:{a:.4f}" for s, a in pts))
        for rival, gap in res["frontier_gap"].items():  # type: ignore[union-attr]
            print(f"  controller minus {rival:<8}" + "  ".join(f"{g:+.4f}" for g in gap))
        for reward, pts in res["bound"].items():  # type: ignore[union-attr]
            label = "bound (gold labels)" if reward == "gold" else "bound (label-free)"
            print(f"  {label:<21}" + "  ".join(f"{s:.2f}:{a:.4f}" for s, a, _ in pts))
        for reward, gaps_ in res["bound_room"].items():  # type: ignore[union-attr]
            label = "gold labels" if reward == "gold" else "label-free"
            print(
                f"  bound ({label}) above method at its samples: "
                + ", ".join(
                    f"{k} {v:.4f}" if k.startswith("at ") else f"{k} {v:+.4f}" for k, v in gaps_.items()
                )
            )
        print(
            "  fewest samples within 0.2 pt of the full vote: "
            + ", ".join(
                f"{k} " + ("never" if v is None else f"{v:.2f} ({full_n / v:.1f}x)")
                for k, v in res["within_0.2pt"].items()  # type: ignore[union-attr]
            )
        )
        if "full_stack_check" in res:
            print(f"  full-stack check: {res['full_stack_check']}")
    if args.json:
        print(json.dumps({"files": report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
