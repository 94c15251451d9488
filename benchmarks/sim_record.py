"""Record the simulator's samples in the recorded-samples format, for `replay.py`.

The replay benchmark runs on recorded files; this writes one from the simulated reasoner, so
the controller can be replayed on the simulator at any difficulty mix next to the real files
(the issue's "the simulator at high difficulty"). Each question is the demo generator's, its
samples drawn as the demo draws them (`sim_agreement.draw_samples`, temperature 0.7), with
the answer, completion tokens and per-token logprobs of every sample:

    python benchmarks/sim_record.py --questions 500 --skew 0.5 --out /tmp/sim_hard.jsonl
    python benchmarks/replay.py /tmp/sim_hard.jsonl

`--skew` is the difficulty mix: a problem's difficulty is `u ** skew` for u uniform in
(0, 1), so below 1 it leans hard (0.5: mean difficulty 2/3) and above 1 easy; the demo uses
`adaptive.sim._problems._DEMO_SKEW`. `--difficulty D` fixes every problem near D instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sim_agreement import draw_samples

from adaptive.sim._problems import _DEMO_SKEW, _make


def records(
    count: int, samples: int, *, skew: float = _DEMO_SKEW, difficulty: float | None = None, seed: int = 0
) -> list[dict[str, object]]:
    """`count` simulated questions with `samples` samples each, as recorded-file rows."""
    problems = _make(count, seed, difficulty, skew, "demo")
    rows: list[dict[str, object]] = []
    for p, drawn in zip(problems, draw_samples(problems, samples), strict=True):
        rows.append(
            {
                "id": p.id,
                "prompt": p.question,
                "gold": p.answer,
                "samples": [
                    {
                        "text": s.text,
                        "answer": s.answer,
                        "completion_tokens": s.completion_tokens,
                        "logprobs": list(s.token_logprobs),
                    }
                    for s in drawn
                ],
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=500)
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--skew", type=float, default=_DEMO_SKEW, help="difficulty mix (below 1: harder)")
    ap.add_argument("--difficulty", type=float, default=None, help="every problem near this difficulty (0-1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.questions < 1 or args.samples < 2 or not args.skew > 0:
        print("need --questions >= 1, --samples >= 2 and --skew > 0", file=sys.stderr)
        return 2
    rows = records(args.questions, args.samples, skew=args.skew, difficulty=args.difficulty, seed=args.seed)
    with args.out.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} questions x {args.samples} samples to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
