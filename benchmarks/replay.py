"""Replay benchmark: our controller against the published stopping rules, on recorded samples.

For every file, over R seeded shuffles of each question's recorded samples, it compares

- ``SC@N``: majority vote over all N recorded samples;
- ``AC-Beta-0.95``: Adaptive-Consistency's Beta rule, one sample at a time;
- ``ESC-5``: Early-Stopping Self-Consistency, windows of 5;
- ``controller``: adaptive's `AdaptiveConsistency` at its default stop rule, batches sized
  with `latency="cheap"` (the fewest samples that could stop: samples, not rounds, are what
  a replay measures; the default "balanced" trades some for fewer rounds, see
  benchmarks/latency.py), its prior learned prequentially (each question sees only the
  questions answered before it in that shuffle, as a live system would);

plus each method's threshold sweep (accuracy against mean samples). Mean tokens count the
completion tokens of the samples drawn: hard questions have longer samples. The controller's
accuracy is also differenced against SC@N's and AC's on the very same question-runs, with a
standard error clustered by question (a question's runs in different shuffles are not
independent draws): on a 30-question run one question-run is 0.17 point, and the error is
several of them.

As a yardstick it also prints the best any vote-count stopping rule could do on the same
shuffles, found in hindsight by dynamic programming (`_bound.py`): once maximising accuracy
with the gold labels, once maximising agreement with the full majority (label-free, what a
rule could learn from unlabelled logs). No rule that reads only votes can beat the first.
Both are fitted on the shuffles they are scored on; a third, "held out", is the label-free
rule fitted on the other four fifths of the questions and scored on the fifth it never saw
(each fifth in turn): it shows how much of the label-free bound is over-fitting.

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
import logging
import random
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np

# A sibling module: run as a script, the script's folder is on sys.path.
from _bound import count_paths, fewest_samples, held_out_bound, hull_at, vote_count_bound
from adaptive_strategies import AdaptiveConsistency
from numpy.typing import NDArray

from adaptive import AnswerSpec, Client, ControllerConfig, ReplayEndpoint, State, StopRule, majority_vote
from adaptive._controller import GAIN_TARGETS, Controller
from adaptive._extractors import FunctionExtractor
from adaptive._multiway import POSTERIORS, Posterior
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
# The held-out bound's folds: each fold's questions are scored with the rule fitted on the rest.
HELD_OUT_FOLDS = 5


@dataclass
class Prepared:
    """A question's answers and tokens in the order one shuffle hands them out.

    `codes` numbers the answers by first appearance in this order (-1: abstained), so "ties
    go to the first seen" is "ties go to the smaller code"; `gold_code` is the gold answer's
    code (-2 when it never appears, or there is no gold).
    """

    qid: str
    answers: list[str | None]
    tokens: list[int]
    gold: str | None
    codes: list[int]
    gold_code: int


def _code(answers: Sequence[str | None], gold: str | None) -> tuple[list[int], int]:
    seen: dict[str, int] = {}
    codes = [-1 if a is None else seen.setdefault(a, len(seen)) for a in answers]
    return codes, seen.get(gold, -2) if gold is not None else -2


def parse(questions: Sequence[RecordedQuestion], spec: AnswerSpec) -> dict[str, list[str | None]]:
    """Each question's answers in recorded order, read once (every shuffle reuses them)."""
    parsed: dict[str, list[str | None]] = {}
    for q in questions:
        if q.id not in parsed:
            parsed[q.id] = [spec.read(s.text, s.answer) for s in q.samples]
    return parsed


def prepare(
    questions: Sequence[RecordedQuestion],
    spec: AnswerSpec,
    seed: int,
    parsed: dict[str, list[str | None]] | None = None,
) -> list[Prepared]:
    """The questions (in the order given) with their samples in shuffle `seed`'s order."""
    ep = ReplayEndpoint(questions, seed=seed)
    parsed = parsed if parsed is not None else parse(questions, spec)
    out = []
    for q in questions:
        order = ep.order(q.id)
        gold = spec.normalizer.normalize(q.gold) if q.gold is not None else None
        answers = [parsed[q.id][i] for i in order]
        codes, gold_code = _code(answers, gold)
        out.append(Prepared(q.id, answers, [q.samples[i].tokens() for i in order], gold, codes, gold_code))
    return out


def agreement(answers: Sequence[str | None]) -> float:
    """The share of all of a question's samples that give its most frequent answer (label-free)."""
    votes = _votes(answers)
    return max(votes.values()) / len(answers) if votes else 0.0


def select_runs(
    questions: Sequence[RecordedQuestion],
    parsed: dict[str, list[str | None]],
    shuffles: int,
    *,
    hardest: int | None = None,
    subset: int | None = None,
    order: str = "file",
) -> list[list[RecordedQuestion]]:
    """The questions each shuffle runs, in the order it runs them: the hard situations, seeded.

    `hardest` keeps the K questions of lowest agreement (label-free: the share of the
    majority answer in all samples; ties broken by a seeded draw). `subset` draws a
    different K of those for each shuffle (a seeded draw), as many small, separate runs.
    `order` is "file" (as recorded), "random" (a seeded shuffle per run), "adversarial"
    (lowest agreement first: the prior learns from the hard questions before the easy ones)
    or "easy-first" (the reverse: a prior learned on easy questions meets the hard ones last).
    """
    pool = list(questions)
    rng = random.Random(20_261_202)
    tiebreak = {q.id: rng.random() for q in pool}
    hardness = {q.id: (agreement(parsed[q.id]), tiebreak[q.id]) for q in pool}
    if hardest is not None:
        pool = sorted(pool, key=lambda q: hardness[q.id])[:hardest]
        pool.sort(key=lambda q: questions.index(q))
    runs = []
    for r in range(shuffles):
        rnd = random.Random(1_000_003 * (r + 1))
        chosen = list(pool)
        if subset is not None and subset < len(pool):
            keep = set(rnd.sample(range(len(pool)), subset))
            chosen = [q for i, q in enumerate(pool) if i in keep]
        if order == "random":
            rnd.shuffle(chosen)
        elif order == "adversarial":
            chosen.sort(key=lambda q: hardness[q.id])
        elif order == "easy-first":
            chosen.sort(key=lambda q: hardness[q.id], reverse=True)
        runs.append(chosen)
    return runs


Outcome = tuple[str | None, int, int]  # answer, samples drawn, tokens drawn


def _votes(answers: Sequence[str | None]) -> dict[str, int]:
    votes: dict[str, int] = {}
    for a in answers:
        if a is not None:
            votes[a] = votes.get(a, 0) + 1
    return votes


# -- the published rules, vectorized over every shuffled question ------------------------------
# Paths of one length n are stacked into (paths, n) arrays; each rule is then a few numpy
# operations per step instead of a Python loop per question. `tests/test_replay_bench.py`
# checks them against the one-question-at-a-time definitions.


@dataclass
class Paths:
    """Equal-length shuffled questions as arrays, with the vote counts after every sample."""

    n: int
    codes: NDArray[np.int64]  # (paths, n)
    gold_code: NDArray[np.int64]  # (paths,)
    tokens: NDArray[np.float64]  # (paths, n) completion tokens drawn up to and including each sample
    leader: NDArray[np.int64]  # (paths, n) majority leader after each sample (-1: none yet)
    v1: NDArray[np.int64]  # (paths, n) the leader's votes
    v2: NDArray[np.int64]  # (paths, n) the runner-up's votes
    index: NDArray[np.int64]  # (paths,) each path's position in the list given to `stack`


def stack(prepared: Sequence[Prepared]) -> list[Paths]:
    """Group the shuffled questions by length and compute every prefix's counts and leader."""
    groups: dict[int, list[Prepared]] = {}
    where: dict[int, list[int]] = {}
    for i, p in enumerate(prepared):
        groups.setdefault(len(p.codes), []).append(p)
        where.setdefault(len(p.codes), []).append(i)
    out = []
    for n, ps in sorted(groups.items()):
        codes = np.array([p.codes for p in ps], dtype=np.int64).reshape(len(ps), n)
        rows = np.arange(len(ps))
        width = int(codes.max(initial=-1)) + 2  # one column more: abstentions land in the last
        counts = np.zeros((len(ps), width), dtype=np.int64)
        leader = np.full((len(ps), n), -1, dtype=np.int64)
        v1 = np.zeros((len(ps), n), dtype=np.int64)
        v2 = np.zeros((len(ps), n), dtype=np.int64)
        lead = np.full(len(ps), -1, dtype=np.int64)
        for k in range(n):
            c = codes[:, k]
            voted = c >= 0
            counts[rows[voted], c[voted]] += 1
            mine = counts[rows, np.maximum(c, 0)]
            theirs = np.where(lead >= 0, counts[rows, np.maximum(lead, 0)], -1)
            take = voted & ((mine > theirs) | ((mine == theirs) & (c < lead)))
            lead = np.where(take, c, lead)
            leader[:, k] = lead
            real = counts[:, :-1]
            if real.shape[1] >= 2:
                top2 = np.partition(real, real.shape[1] - 2, axis=1)[:, -2:]
                v1[:, k], v2[:, k] = top2[:, 1], top2[:, 0]
            else:
                v1[:, k] = real[:, 0] if real.shape[1] else 0
        tokens = np.cumsum(np.array([p.tokens for p in ps], dtype=np.float64).reshape(len(ps), n), axis=1)
        gold = np.array([p.gold_code for p in ps], dtype=np.int64)
        out.append(Paths(n, codes, gold, tokens, leader, v1, v2, np.array(where[n], dtype=np.int64)))
    return out


def score(groups: Sequence[Paths], stop_at: Callable[[Paths], NDArray[np.int64]]) -> dict[str, float]:
    """Accuracy, mean samples and mean tokens when each path stops after `stop_at(paths)` samples."""
    correct = samples = tokens = total = 0.0
    for g in groups:
        k = stop_at(g)
        rows = np.arange(len(k))
        lead = g.leader[rows, k - 1]
        correct += float(np.sum((lead >= 0) & (lead == g.gold_code)))
        samples += float(k.sum())
        tokens += float(g.tokens[rows, k - 1].sum())
        total += len(k)
    return {"accuracy": correct / total, "mean_samples": samples / total, "mean_tokens": tokens / total}


def correctness(groups: Sequence[Paths], stop_at: Callable[[Paths], NDArray[np.int64]]) -> NDArray[np.bool_]:
    """Whether each path's answer is right, in the order the paths were given to `stack`."""
    out = np.zeros(sum(len(g.index) for g in groups), dtype=np.bool_)
    for g in groups:
        k = stop_at(g)
        lead = g.leader[np.arange(len(k)), k - 1]
        out[g.index] = (lead >= 0) & (lead == g.gold_code)
    return out


def paired(mine: NDArray[np.bool_], theirs: NDArray[np.bool_], questions: Sequence[str]) -> dict[str, float]:
    """Accuracy difference on the same question-runs, with its standard error.

    The runs of one question in different shuffles are not independent (a hard question is
    hard in every shuffle), so the error is clustered by question: the spread of the
    per-question sums of differences, not of the single runs.
    """
    d = mine.astype(np.float64) - theirs.astype(np.float64)
    mean = float(d.mean())
    _, group = np.unique(np.asarray(questions), return_inverse=True)
    sums = np.bincount(group, weights=d - mean)
    clusters = len(sums)
    se = float(np.sqrt(np.sum(sums**2) * clusters / max(clusters - 1, 1))) / len(d)
    return {"difference": mean, "se": se, "question_runs": len(d), "questions": clusters}


def sc_stop(g: Paths) -> NDArray[np.int64]:
    """SC@N: every sample."""
    return np.full(len(g.codes), g.n, dtype=np.int64)


_BETA: dict[int, NDArray[np.float64]] = {}


def _beta_table(n: int) -> NDArray[np.float64]:
    table = _BETA.get(n)
    if table is None:
        table = np.zeros((n + 1, n + 1))
        for a in range(1, n + 1):
            for b in range(0, min(a, n - a) + 1):
                table[a, b] = beta_confidence(a, b)
        _BETA[n] = table
    return table


def ac_stop(threshold: float) -> Callable[[Paths], NDArray[np.int64]]:
    """AC's Beta rule, checked after every sample: the first k where it is `threshold` sure."""

    def stop(g: Paths) -> NDArray[np.int64]:
        conf = _beta_table(g.n)[g.v1, g.v2]
        hit = (g.v1 > 0) & (conf >= threshold)
        first = np.argmax(hit, axis=1) + 1
        return np.where(hit.any(axis=1), first, g.n).astype(np.int64)

    return stop


def esc_stop(window: int) -> Callable[[Paths], NDArray[np.int64]]:
    """ESC: windows of `window` samples; stop after the first window whose answers all agree."""

    def stop(g: Paths) -> NDArray[np.int64]:
        k = np.full(len(g.codes), g.n, dtype=np.int64)
        done = np.zeros(len(g.codes), dtype=np.bool_)
        for end in range(window, g.n, window):  # the last window (ending at n) stops anyway
            w = g.codes[:, end - window : end]
            same = (w[:, :1] >= 0) & (w == w[:, :1]).all(axis=1, keepdims=True)
            now = same[:, 0] & ~done
            k[now] = end
            done |= now
        return k

    return stop


def sc_all(p: Prepared) -> Outcome:
    """SC@N on one question (the definition the vectorized `sc_stop` is checked against)."""
    return majority_vote(p.answers).winner, len(p.answers), sum(p.tokens)


def ac_beta(p: Prepared, threshold: float) -> Outcome:
    """AC-Beta on one question (the definition `ac_stop` is checked against)."""
    n = len(p.answers)
    for k in range(1, n + 1):
        counts = sorted(_votes(p.answers[:k]).values(), reverse=True)
        if counts:
            v1, v2 = counts[0], counts[1] if len(counts) > 1 else 0
            if beta_confidence(v1, v2) >= threshold:
                return majority_vote(p.answers[:k]).winner, k, sum(p.tokens[:k])
    return majority_vote(p.answers).winner, n, sum(p.tokens)


def esc(p: Prepared, window: int) -> Outcome:
    """ESC on one question (the definition `esc_stop` is checked against)."""
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
        abstentions = sum(a is None for a in answers)
        draws_left = cap_total - drawn
        conf, g = controller.assess(votes, abstentions, draws_left)
        state = State(
            round=rnd,
            samples=drawn,
            votes=votes,
            abstentions=abstentions,
            history=tuple(answers),
            draws_left=draws_left,
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
    runs: list[list[Prepared]],
    method: Callable[[Prepared], Outcome],
    fresh: Callable[[], None] | None = None,
    record: list[bool] | None = None,
) -> dict[str, float]:
    """Accuracy, mean samples and mean tokens; `record` gets each run's rightness in order."""
    correct = samples = tokens = total = 0
    for prepared in runs:
        if fresh is not None:
            fresh()
        for p in prepared:
            answer, n, t = method(p)
            right = answer is not None and answer == p.gold
            if record is not None:
                record.append(right)
            correct += right
            samples += n
            tokens += t
            total += 1
    return {"accuracy": correct / total, "mean_samples": samples / total, "mean_tokens": tokens / total}


def controller_config(
    max_samples: int,
    posterior: Posterior | None = None,
    gain_horizon: int | None = None,
    gain_target: str | None = None,
) -> ControllerConfig:
    """The controller's settings in this benchmark (the config's defaults where not given)."""
    extra: dict[str, Any] = {} if gain_horizon is None else {"gain_horizon": gain_horizon}
    if gain_target is not None:
        extra["gain_target"] = gain_target
    if posterior is not None:
        extra["posterior"] = posterior
    return ControllerConfig(max_samples=max_samples, **extra)


def controller_method(
    strategy: AdaptiveConsistency,
    max_samples: int,
    posterior: Posterior | None = None,
    gain_horizon: int | None = None,
    gain_target: str | None = None,
) -> tuple[Callable[[Prepared], Outcome], Callable[[], None]]:
    rule = strategy.default_stop()
    assert rule is not None
    holder: dict[str, Controller] = {}

    def fresh() -> None:
        config = controller_config(max_samples, posterior, gain_horizon, gain_target)
        holder["c"] = Controller(config)

    def run(p: Prepared) -> Outcome:
        return controller_run(p, holder["c"], rule, max_samples)

    return run, fresh


async def full_stack(
    questions: Sequence[RecordedQuestion],
    spec: AnswerSpec,
    seed: int,
    k: int,
    max_samples: int,
    posterior: Posterior | None = None,
    gain_horizon: int | None = None,
    gain_target: str | None = None,
    min_gain: float | None = None,
) -> list[tuple[str | None, int, int, int]]:
    """The first k questions through the whole client, as (answer, samples, tokens, estimated).

    `estimated` counts the requests booked at an upper bound because the file records no
    completion tokens (text-only samples): the check reports their total once instead of the
    client's per-request WARNING line (raised to ERROR here, restored after).
    """
    ep = ReplayEndpoint(questions, seed=seed)
    out = []
    log = logging.getLogger("adaptive")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        config = controller_config(max_samples, posterior, gain_horizon, gain_target)
        extra = {} if min_gain is None else {"min_gain": min_gain}
        async with Client(ep, controller=config) as client:
            for q in questions[:k]:
                r = await client.run(
                    ReplayEndpoint.prompt_for(q),
                    # "cheap": the sizing `controller_run` mirrors (the default "balanced" also
                    # cancels part-way through later rounds; see benchmarks/latency.py).
                    strategy=AdaptiveConsistency(
                        answer=spec, max_samples=max_samples, latency="cheap", **extra
                    ),
                )
                estimated = sum(1 for e in r.trace if e.kind == "done" and e.data.get("estimated"))
                out.append((r.answer, r.generated, r.usage.completion_tokens, estimated))
    finally:
        log.setLevel(level)
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


def _curve(points: Sequence[Sequence[float]], x: int, y: int = 1) -> list[tuple[float, float]]:
    return [(float(p[x]), float(p[y])) for p in points]


def run_file(
    path: str,
    shuffles: int,
    check: int,
    extract: str,
    *,
    sweep: bool = False,
    bound: bool = True,
    hardest: int | None = None,
    subset: int | None = None,
    order: str = "file",
    posterior: Posterior | None = None,
    gain_horizon: int | None = None,
    gain_target: str | None = None,
    min_gain: float | None = None,
) -> dict[str, object]:
    questions = load_recorded(path)
    spec = spec_for(extract)
    n = max(len(q.samples) for q in questions)
    t0 = time.perf_counter()
    parsed = parse(questions, spec)
    chosen = select_runs(questions, parsed, shuffles, hardest=hardest, subset=subset, order=order)
    runs = [prepare(qs, spec, seed, parsed) for seed, qs in enumerate(chosen)]
    groups = stack([p for prepared in runs for p in prepared])
    methods: dict[str, dict[str, float]] = {}
    # Per method: [mean_samples, accuracy, mean_tokens] per swept setting.
    swept: dict[str, list[list[float]]] = {}
    methods[f"SC@{n}"] = score(groups, sc_stop)
    full = methods[f"SC@{n}"]["mean_samples"]
    swept["AC-Beta"] = []
    for t in AC_SWEEP:
        r = score(groups, ac_stop(t))
        swept["AC-Beta"].append([r["mean_samples"], r["accuracy"], r["mean_tokens"]])
        if t == 0.95:
            methods["AC-Beta-0.95"] = r
    swept["ESC"] = []
    for w in ESC_SWEEP:
        r = score(groups, esc_stop(w))
        swept["ESC"].append([r["mean_samples"], r["accuracy"], r["mean_tokens"]])
        if w == 5:
            methods["ESC-5"] = r
    default = AdaptiveConsistency(max_samples=n, **({} if min_gain is None else {"min_gain": min_gain}))
    settings = [default]
    if sweep:  # the controller runs one question at a time: its sweep is the slow part
        settings = [default.model_copy(update={"min_gain": g}) for g in CONTROLLER_GAIN_SWEEP]
        settings += [
            default.model_copy(update={"confidence": c, "min_gain": 0.0}) for c in CONTROLLER_CONF_SWEEP
        ]
        if default not in settings:  # a --min-gain off the sweep's grid is the reported row
            settings.append(default)
    points = []
    rights: list[bool] = []
    for setting in settings:
        run, fresh = controller_method(setting, n, posterior, gain_horizon, gain_target)
        record: list[bool] = []
        r = evaluate(runs, run, fresh, record)
        points.append([r["mean_samples"], r["accuracy"], r["mean_tokens"]])
        if setting == default:
            methods["controller"] = r
            rights = record
    swept["controller"] = sorted(points)
    for m in methods.values():
        m["reduction_vs_full"] = full / m["mean_samples"]
    # The controller against SC@N and AC on the very same question-runs: a difference of a
    # question-run or two on a small run is noise, and this says how much.
    qids = [p.qid for prepared in runs for p in prepared]
    ctrl_right = np.array(rights, dtype=np.bool_)
    result_paired = {
        f"SC@{n}": paired(ctrl_right, correctness(groups, sc_stop), qids),
        "AC-Beta-0.95": paired(ctrl_right, correctness(groups, ac_stop(0.95)), qids),
    }
    frontier = {name: [[s, a] for s, a, _ in pts] for name, pts in swept.items()}
    tokens_frontier = {name: sorted([t, a] for _, a, t in pts) for name, pts in swept.items()}
    gaps = {
        rival: [round(a - _interpolate(frontier[rival], s), 5) for s, a in frontier["controller"]]
        for rival in ("AC-Beta", "ESC")
    }
    result: dict[str, object] = {
        "methods": methods,
        # [mean_samples, accuracy] per swept setting (the controller: its default alone
        # unless --sweep)
        "frontier": frontier,
        # [mean_tokens, accuracy] per swept setting
        "tokens_frontier": tokens_frontier,
        # controller accuracy minus the rival's (interpolated) at each controller point's
        # mean samples (the rival extended flat outside its swept range)
        "frontier_gap": gaps,
        # controller accuracy minus each rival's on the same question-runs, with the standard
        # error clustered by question
        "paired": result_paired,
    }
    target = methods[f"SC@{n}"]["accuracy"] - 0.002
    curves = {name: _curve(pts, 0) for name, pts in frontier.items()}
    ctrl, ac = methods["controller"], methods["AC-Beta-0.95"]
    if bound:
        paths = count_paths([(p.answers, p.tokens, p.gold) for prepared in runs for p in prepared])
        bounds: dict[str, list[list[float]]] = {}
        token_bounds: dict[str, list[list[float]]] = {}
        room: dict[str, dict[str, float]] = {}
        mean_tokens = float(paths.tokens[:, -1].mean()) / max(1, paths.tokens.shape[1])
        for reward in ("gold", "majority"):
            pts = vote_count_bound(paths, reward, BOUND_COSTS)
            bounds[reward] = [[p.mean_samples, p.accuracy, p.mean_tokens] for p in pts]
            # The same DP charged per token (the next sample's own length): the best a
            # vote-count rule can do for the tokens it spends. Costs are per token, scaled
            # so the sweep spans the same range as the per-sample one.
            tpts = vote_count_bound(paths, reward, [c / mean_tokens for c in BOUND_COSTS], per_token=True)
            token_bounds[reward] = [[p.mean_tokens, p.accuracy, p.mean_samples] for p in tpts]
        # The label-free rule fitted on the other folds' questions, scored on each held-out
        # fold: what unlabelled logs of fully sampled calls could teach a rule about new ones.
        folds = [zlib.crc32(p.qid.encode()) % HELD_OUT_FOLDS for prepared in runs for p in prepared]
        hpts = held_out_bound(paths, folds, BOUND_COSTS)
        bounds["held-out"] = [[p.mean_samples, p.accuracy, p.mean_tokens] for p in hpts]
        for reward, pts in bounds.items():
            curve = _curve(pts, 0)
            # How far the bound lies above each method at that method's mean samples, and where
            # it stands at a twelfth of the full samples and at AC-Beta-0.95's samples / 1.5.
            room[reward] = {
                name: round(hull_at(curve, m["mean_samples"]) - m["accuracy"], 5)
                for name, m in methods.items()
            }
            for x in (full / 12, ac["mean_samples"] / 1.5):
                room[reward][f"at {x:.2f} samples"] = round(hull_at(curve, x), 5)
        held = _curve(bounds["held-out"], 0)
        curves |= {f"bound-{reward}": _curve(pts, 0) for reward, pts in bounds.items()}
        free = _curve(bounds["majority"], 0)
        free_tokens = _curve(token_bounds["majority"], 0)
        # the hindsight bound: [mean_samples, accuracy, mean_tokens] per per-sample cost
        result["bound"] = bounds
        # the bound charged per token: [mean_tokens, accuracy, mean_samples] per per-token cost
        result["bound_tokens"] = token_bounds
        # bound accuracy minus each method's at its mean samples, and the bound's accuracy at
        # N/12 samples and at AC-Beta-0.95's samples / 1.5
        result["bound_room"] = room
        result["bound_tokens_room"] = {
            name: round(hull_at(free_tokens, m["mean_tokens"]) - m["accuracy"], 5)
            for name, m in methods.items()
        }
    # fewest mean samples within 0.2 points of SC@N on each frontier and bound (None: never)
    result["within_0.2pt"] = {name: fewest_samples(pts, target) for name, pts in curves.items()}
    # The targets, each with the figures behind it.
    floor = min(methods[f"SC@{n}"]["accuracy"], ac["accuracy"]) - 0.002
    weaker = f"SC@{n}" if methods[f"SC@{n}"]["accuracy"] <= ac["accuracy"] else "AC-Beta-0.95"
    targets: dict[str, object] = {
        "accuracy": {
            "controller": ctrl["accuracy"],
            "floor": floor,
            "holds": ctrl["accuracy"] >= floor,
            # the floor's method, and the controller minus it on the same question-runs with
            # its standard error: how much of a miss (or a pass) is noise
            "against": weaker,
            "paired": result_paired[weaker],
        },
        "samples": {
            "ratio_vs_ac": ac["mean_samples"] / ctrl["mean_samples"],
            "holds": ac["mean_samples"] / ctrl["mean_samples"] >= 1.5,
        },
        "tokens": {
            "ratio_vs_ac": ac["mean_tokens"] / ctrl["mean_tokens"],
            "holds": ac["mean_tokens"] / ctrl["mean_tokens"] >= 1.3,
        },
    }
    if bound:
        reachable = hull_at(free, ac["mean_samples"] / 1.5) >= methods[f"SC@{n}"]["accuracy"] - 0.002
        targets["samples"]["applies"] = reachable  # type: ignore[index]
        # The same test on the held-out bound: could a rule learned from other questions' logs
        # reach AC's samples / 1.5 within 0.2 point of SC@N on new ones?
        learnable = hull_at(held, ac["mean_samples"] / 1.5) >= methods[f"SC@{n}"]["accuracy"] - 0.002
        targets["samples"]["applies_held_out"] = learnable  # type: ignore[index]
        gap = hull_at(free, ctrl["mean_samples"]) - ctrl["accuracy"]
        targets["bound_gap"] = {"label_free_above_controller": gap, "holds": gap <= 0.003}
    result["targets"] = targets
    result["questions"] = len(runs[0])
    result["shuffles"] = shuffles
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if check:
        run, fresh = controller_method(default, n, posterior, gain_horizon, gain_target)
        fresh()
        fast = [run(p) for p in runs[0][:check]]
        slow = anyio.run(
            full_stack, chosen[0], spec, 0, check, n, posterior, gain_horizon, gain_target, min_gain
        )
        mismatches = sum(a[:2] != b[:2] for a, b in zip(fast, slow, strict=True))
        result["full_stack_check"] = {
            "questions": min(check, len(fast)),
            "mismatches": mismatches,
            # requests booked at an upper bound (the file records no completion tokens)
            "estimated_requests": sum(int(b[3]) for b in slow),
        }
        if mismatches:
            print(f"full-stack check FAILED: {mismatches} of {check} differ", file=sys.stderr)
    return result


def _pts(pts: Sequence[Sequence[float]], fmt: str = "{:.2f}:{:.4f}") -> str:
    return "  ".join(fmt.format(p[0], p[1]) for p in pts)


# How each bound is named in the report.
BOUND_LABELS = {"gold": "gold labels", "majority": "label-free", "held-out": "label-free, held out"}


def print_report(f: str, res: dict[str, Any], shuffles: int) -> None:
    full_n = next(m["mean_samples"] for k, m in res["methods"].items() if k.startswith("SC@"))
    print(f"\n{f}  ({res['questions']} questions x {shuffles} shuffles, {res['seconds']}s)")
    print(f"{'method':<16}{'accuracy':>10}{'samples':>10}{'tokens':>10}{'reduction':>11}")
    for name, m in res["methods"].items():
        print(
            f"{name:<16}{m['accuracy']:>10.4f}{m['mean_samples']:>10.2f}{m['mean_tokens']:>10.1f}{m['reduction_vs_full']:>10.1f}x"
        )
    for name, pts in res["frontier"].items():
        print(f"  frontier {name:<11}" + _pts(pts))
    for name, pts in res["tokens_frontier"].items():
        print(f"  tokens frontier {name:<11}" + _pts(pts, "{:.0f}:{:.4f}"))
    for rival, gap in res["frontier_gap"].items():
        print(f"  controller minus {rival:<8}" + "  ".join(f"{g:+.4f}" for g in gap))
    if "paired" in res:
        print(
            "  controller minus, on the same question-runs (SE clustered by question): "
            + ", ".join(
                f"{k} {v['difference'] * 100:+.2f} pt (SE {v['se'] * 100:.2f})"
                for k, v in res["paired"].items()
            )
        )
    for key, unit in (("bound", "samples"), ("bound_tokens", "tokens")):
        for reward, pts in res.get(key, {}).items():
            label = f"bound in {unit} ({BOUND_LABELS[reward]})"
            print(f"  {label:<42}" + _pts(pts, "{:.2f}:{:.4f}" if unit == "samples" else "{:.0f}:{:.4f}"))
    for reward, gaps_ in res.get("bound_room", {}).items():
        print(
            f"  bound ({BOUND_LABELS[reward]}) above method at its samples: "
            + ", ".join(f"{k} {v:.4f}" if k.startswith("at ") else f"{k} {v:+.4f}" for k, v in gaps_.items())
        )
    if "bound_tokens_room" in res:
        print(
            "  bound in tokens (label-free) above method at its tokens: "
            + ", ".join(f"{k} {v:+.4f}" for k, v in res["bound_tokens_room"].items())
        )
    print(
        "  fewest samples within 0.2 pt of the full vote: "
        + ", ".join(
            f"{k} " + ("never" if v is None else f"{v:.2f} ({full_n / v:.1f}x)")
            for k, v in res["within_0.2pt"].items()
        )
    )
    t = res["targets"]
    applies = t["samples"].get("applies")
    held = t["samples"].get("applies_held_out")
    print(
        "  targets: accuracy >= min(SC, AC) - 0.2pt: "
        + ("yes" if t["accuracy"]["holds"] else "NO")
        + f" ({t['accuracy']['controller']:.4f} vs {t['accuracy']['floor']:.4f}"
        + (
            ""
            if "paired" not in t["accuracy"]
            else f"; {t['accuracy']['paired']['difference'] * 100:+.2f} pt against "
            f"{t['accuracy']['against']}, SE {t['accuracy']['paired']['se'] * 100:.2f}"
        )
        + "); "
        + f"samples AC/controller {t['samples']['ratio_vs_ac']:.2f}x (>= 1.5: "
        + ("yes" if t["samples"]["holds"] else "no")
        + ("" if applies is None else f"; the label-free bound {'allows it' if applies else 'rules it out'}")
        + ("" if held is None else f", held out {'allows it' if held else 'rules it out'}")
        + f"); tokens AC/controller {t['tokens']['ratio_vs_ac']:.2f}x (>= 1.3: "
        + ("yes" if t["tokens"]["holds"] else "no")
        + ")"
        + (
            ""
            if "bound_gap" not in t
            else f"; label-free bound {t['bound_gap']['label_free_above_controller'] * 100:+.2f} pt above "
            f"the controller (<= 0.3: {'yes' if t['bound_gap']['holds'] else 'no'})"
        )
    )
    if "full_stack_check" in res:
        print(f"  full-stack check: {res['full_stack_check']}")


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
    ap.add_argument("--sweep", action="store_true", help="also sweep the controller's settings (slow)")
    ap.add_argument("--no-bound", action="store_true", help="skip the hindsight bound")
    ap.add_argument(
        "--questions",
        type=int,
        default=None,
        help="each shuffle runs its own seeded draw of this many questions",
    )
    ap.add_argument("--hardest", type=int, default=None, help="keep only the K lowest-agreement questions")
    ap.add_argument(
        "--order",
        choices=("file", "random", "adversarial", "easy-first"),
        default="file",
        help="question order within a run: as recorded, a seeded shuffle, lowest agreement first, or last",
    )
    ap.add_argument(
        "--gain-target",
        choices=GAIN_TARGETS,
        default=None,
        help="the controller's ControllerConfig.gain_target (default: the config's default)",
    )
    ap.add_argument(
        "--min-gain",
        type=float,
        default=None,
        help="AdaptiveConsistency's min_gain for the controller row (default: the strategy's default)",
    )
    ap.add_argument(
        "--posterior",
        choices=POSTERIORS,
        default=None,
        help="the controller's ControllerConfig.posterior, how its confidence and gain read the "
        "votes (default: the config's default)",
    )
    ap.add_argument(
        "--gain-horizon",
        type=int,
        default=None,
        help="the controller's ControllerConfig.gain_horizon (default: the config's default)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    for name in ("questions", "hardest"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name} must be at least 1 (got {value})")
    report: dict[str, dict[str, object]] = {}
    for arg in args.files:
        f, _, extract = arg.partition("=")
        report[f] = run_file(
            f,
            args.shuffles,
            args.check,
            extract or args.extract,
            sweep=args.sweep,
            bound=not args.no_bound,
            hardest=args.hardest,
            subset=args.questions,
            order=args.order,
            gain_target=args.gain_target,
            posterior=args.posterior,
            gain_horizon=args.gain_horizon,
            min_gain=args.min_gain,
        )
        print_report(f, report[f], args.shuffles)
    if args.json:
        print(json.dumps({"files": report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
