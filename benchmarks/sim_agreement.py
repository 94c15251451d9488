"""Agreement statistics: the simulator's error structure next to real recorded samples.

Whether early stopping loses accuracy depends on a few label-aware statistics of a model's
samples, so the simulator behind the demo should match real files on them:

- ``single``: accuracy of one sample;
- ``first2 agree``: the first two samples give the same (non-abstaining) answer;
- ``agree wrong``: ... and that shared answer is wrong (what a stop-at-two rule would lose);
- ``overturned``: of the questions whose first two agree, the share whose majority over all
  N samples is a different answer;
- ``majority wrong``: the share of questions whose N-sample majority is not the gold answer;
- ``distinct``: mean number of different answers among the N samples.

Each statistic is averaged over seeded shuffles of every question's samples (the recorded
files keep their order; a shuffle makes "the first two" any two). The simulator is sampled
the way the demo samples it (temperature 0.7, each question seeded by its index).

Usage: python benchmarks/sim_agreement.py [FILE.jsonl=EXTRACT ...] [--questions 400] [--samples 40]
  [--shuffles 5] [--skews 1.2,1.6,2.0,2.4] [--json]

Without files it reads the two shared ones from ../shared/data (last-letters with the
letters-after-"answer is" rule, GSM8K with its pre-extracted answers).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# A sibling module: run as a script, the script's folder is on sys.path.
from replay import parse, spec_for

from adaptive.endpoints import load_recorded
from adaptive.sim import Problem, SimModel, SimSample, demo_problems
from adaptive.sim._problems import _DEMO_SKEW, _make

STATS = ("single", "first2 agree", "agree wrong", "overturned", "majority wrong", "distinct")
DEMO_TEMPERATURE = 0.7  # what the demo's strategies sample at (adaptive.cli._main)

Question = tuple[Sequence[str | None], str | None]
"""One question's answers (None: abstained) and its gold answer."""


def _majority(answers: Sequence[str | None]) -> str | None:
    """The most frequent answer, ties to the first seen; None when every sample abstained."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    top = max(votes.values())
    return next(a for a in answers if a is not None and votes[a] == top)


def agreement_stats(questions: Sequence[Question], *, shuffles: int = 1, seed: int = 0) -> dict[str, float]:
    """Compute `STATS` over questions, each shuffle drawing a fresh order of every question's samples.

    Args:
        questions: (answers, gold) per question; each needs at least two answers.
        shuffles: Orders to average over; 0 keeps the given order only.
        seed: Seeds the shuffles.

    Raises:
        ValueError: No questions, or a question with fewer than two answers.
    """
    if not questions:
        raise ValueError("no questions")
    if any(len(a) < 2 for a, _ in questions):
        raise ValueError("every question needs at least two answers")
    rng = random.Random(seed)
    single = agree = agree_wrong = overturned = 0.0
    runs = max(1, shuffles)
    for _ in range(runs):
        for answers, gold in questions:
            order = list(answers)
            if shuffles:
                rng.shuffle(order)
            a, b = order[0], order[1]
            single += a is not None and a == gold
            if a is not None and a == b:
                agree += 1
                agree_wrong += a != gold
                overturned += _majority(order) != a
    majority_wrong = sum(_majority(a) != g for a, g in questions)
    distinct = sum(len({x for x in a if x is not None}) for a, _ in questions)
    n = len(questions)
    return {
        "single": single / (n * runs),
        "first2 agree": agree / (n * runs),
        "agree wrong": agree_wrong / (n * runs),
        "overturned": overturned / agree if agree else 0.0,
        "majority wrong": majority_wrong / n,
        "distinct": distinct / n,
    }


def recorded_questions(path: str, extract: str) -> list[Question]:
    """A recorded file's questions, answers read by `extract` (see replay.py's --extract)."""
    spec = spec_for(extract)
    qs = load_recorded(path)
    parsed = parse(qs, spec)
    return [(parsed[q.id], spec.normalizer.normalize(q.gold) if q.gold is not None else None) for q in qs]


def sim_questions(
    count: int, samples: int, *, model: SimModel | None = None, seed: int = 0, skew: float | None = None
) -> list[Question]:
    """The demo's problems answered `samples` times each by the simulator, as the demo samples.

    `skew` replaces the demo set's difficulty mix (`_DEMO_SKEW`) to compare candidates.
    """
    # The demo set's generator, with the mix as a parameter: the same problems at the default.
    problems = demo_problems(count, seed=seed) if skew is None else _make(count, seed, None, skew, "demo")
    drawn = draw_samples(problems, samples, model=model)
    return [([s.answer for s in got], p.answer) for p, got in zip(problems, drawn, strict=True)]


def draw_samples(
    problems: Sequence[Problem], samples: int, *, model: SimModel | None = None
) -> list[list[SimSample]]:
    """`samples` simulated samples of each problem, drawn as the demo draws them (seeded by position)."""
    model = model or SimModel()
    return [
        [model.sample(p.question, seed=i, temperature=DEMO_TEMPERATURE, index=k) for k in range(samples)]
        for i, p in enumerate(problems)
    ]


def distance(stats: dict[str, float], real: Sequence[dict[str, float]]) -> float:
    """How far `stats` falls outside the real files' range, summed over `STATS`.

    Each statistic adds (its distance outside [min, max] of the real files / the range's
    midpoint) squared: 0 when it lies between the real files.
    """
    total = 0.0
    for s in STATS:
        lo, hi = min(r[s] for r in real), max(r[s] for r in real)
        total += (max(0.0, lo - stats[s], stats[s] - hi) / ((lo + hi) / 2)) ** 2
    return total


def _default_files() -> list[str]:
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not data.is_dir():
        data = Path("/work/shared/data")
    return [
        f"{data / 'esc-gpt35-last-letters' / 'samples.jsonl'}=letters",
        f"{data / 'consol-gpt4omini-gsm8k' / 'samples.jsonl'}=answer-is",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="FILE.jsonl or FILE.jsonl=EXTRACT (default: the shared files)")
    ap.add_argument("--questions", type=int, default=400, help="simulated demo questions")
    ap.add_argument("--samples", type=int, default=40, help="simulated samples per question")
    ap.add_argument("--shuffles", type=int, default=5)
    ap.add_argument(
        "--skews",
        default="",
        help="also try these demo difficulty mixes, e.g. 1.2,1.6,2.0,2.4 (default: only the current one)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows: dict[str, dict[str, float]] = {}
    for arg in args.files or _default_files():
        f, _, extract = arg.partition("=")
        rows[Path(f).parent.name or f] = agreement_stats(
            recorded_questions(f, extract or "answer-is"), shuffles=args.shuffles
        )
    real = list(rows.values())
    skews = [_DEMO_SKEW, *(float(x) for x in args.skews.split(",") if x.strip())]
    for skew in dict.fromkeys(skews):
        sim = sim_questions(args.questions, args.samples, skew=skew)
        label = f"simulator, skew {skew:g}{' (demo)' if skew == _DEMO_SKEW else ''}"
        rows[label] = agreement_stats(sim, shuffles=args.shuffles)
    width = max(len(k) for k in rows)
    print(f"{args.questions} simulated demo questions x {args.samples} samples; {args.shuffles} shuffles")
    print(f"{'':{width}}  " + "  ".join(f"{s:>14}" for s in STATS) + f"  {'distance':>9}")
    for name, stats in rows.items():
        cells = [f"{stats[s]:>14.2f}" if s == "distinct" else f"{stats[s]:>14.1%}" for s in STATS]
        print(f"{name:{width}}  " + "  ".join(cells) + f"  {distance(stats, real):>9.3f}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
