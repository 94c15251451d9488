"""Where the controller's wrong stops happen: vote state at stop, the rule that fired, the prior.

For each scenario (the same runs as `replay.py` builds), every question the controller answers
wrongly while AC-Beta-0.95 answers it rightly (a "loss"), and the reverse (a "win"), is tallied
by the vote state at the controller's stop, which leaf of the default stop rule fired
(confident / low-gain / cap), how many calls the prior had learned from (N_eff) and the
learned confidence there against the uniform (AC) one. It answers: is the learned prior
overconfident after few calls, or does the gain rule stop near-even splits?

In the verbose listing a loss's samples are letters in order of first appearance (- abstained).
The controller loop here mirrors `replay.controller_run` (latency="cheap" batches).

Usage: python benchmarks/stop_diagnostics.py FILE.jsonl [--questions K] [--hardest K] [--order O]
       [--uniform] [--gain-target unlimited|budget] [--verbose]
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence

from adaptive_strategies import AdaptiveConsistency
from replay import _votes, ac_beta, parse, prepare, select_runs, spec_for

from adaptive import ControllerConfig, State, majority_vote
from adaptive._batching import ordered
from adaptive._controller import GAIN_TARGETS, Controller
from adaptive._posterior import beta_confidence
from adaptive._stop import Confident, LowMarginalGain
from adaptive.endpoints import load_recorded


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--shuffles", type=int, default=20)
    ap.add_argument("--questions", type=int, default=None)
    ap.add_argument("--hardest", type=int, default=None)
    ap.add_argument("--order", default="file")
    ap.add_argument("--extract", default="answer-is")
    ap.add_argument("--verbose", action="store_true", help="print every loss with its samples in order")
    ap.add_argument(
        "--uniform",
        action="store_true",
        help="the counterfactual: never learn the prior (AC's uniform one throughout)",
    )
    ap.add_argument("--gain-target", choices=GAIN_TARGETS, default="unlimited")
    ap.add_argument("--min-gain", type=float, default=None, help="the strategy's min_gain (default: its own)")
    args = ap.parse_args(argv)
    questions = load_recorded(args.file)
    spec = spec_for(args.extract)
    n = max(len(q.samples) for q in questions)
    parsed = parse(questions, spec)
    chosen = select_runs(
        questions, parsed, args.shuffles, hardest=args.hardest, subset=args.questions, order=args.order
    )
    runs = [prepare(qs, spec, seed, parsed) for seed, qs in enumerate(chosen)]
    extra = {} if args.min_gain is None else {"min_gain": args.min_gain}
    strategy = AdaptiveConsistency(max_samples=n, **extra)
    rule = strategy.default_stop()
    assert rule is not None
    leaves = list(getattr(rule, "rules", [rule]))
    conf_rule = next(r for r in leaves if isinstance(r, Confident))
    gain_rule = next(r for r in leaves if isinstance(r, LowMarginalGain))
    losses: Counter[tuple[object, ...]] = Counter()
    wins: Counter[tuple[object, ...]] = Counter()
    by_rule: Counter[str] = Counter()
    total = 0
    for prepared in runs:
        c = Controller(
            ControllerConfig(max_samples=n, calibrate=not args.uniform, gain_target=args.gain_target)
        )
        for i, p in enumerate(prepared):
            neff = c.prior.effective_questions
            drawn, rnd, fired = 0, 0, "cap"
            cap_total = min(n, len(p.answers), c.config.max_samples)
            while True:
                answers = p.answers[:drawn]
                votes = ordered(_votes(answers))
                conf, g = c.assess(votes)
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
                    fired = "confident" if conf_rule(state) else "low-gain" if gain_rule(state) else "other"
                    break
                k = c.next_batch(state, rule, cap=min(c.config.max_batch, cap_total - drawn), first=rnd == 0)
                if k < 1:
                    fired = "no-batch"
                    break
                drawn += k
                rnd += 1
            vs = [*list(votes.values()), 0, 0]
            ans = majority_vote(p.answers[:drawn]).winner
            ac_ans = ac_beta(p, 0.95)[0]
            ok, ac_ok = ans == p.gold and ans is not None, ac_ans == p.gold and ac_ans is not None
            uni = beta_confidence(vs[0], vs[1])
            key = (
                f"{vs[0]}-{vs[1]}" + ("+" if len(votes) > 2 else ""),
                fired,
                "neff<10" if neff < 10 else "neff<40" if neff < 40 else "neff>=40",
            )
            by_rule[fired] += 1
            total += 1
            if ac_ok and not ok and args.verbose:
                codes = {a: j for j, a in enumerate(dict.fromkeys(x for x in p.answers if x is not None))}
                gold = chr(65 + min(codes[p.gold], 25)) if p.gold in codes else "?"
                seq = "".join("-" if a is None else chr(65 + min(codes[a], 25)) for a in p.answers)
                print(
                    f"    LOSS {p.qid} run{runs.index(prepared)} pos{i} stop@{drawn} "
                    f"ac@{ac_beta(p, 0.95)[1]} gold={gold} {seq}"
                )
            if ac_ok and not ok:
                losses[(*key, round(conf or 0, 3), round(uni, 3))] += 1
            elif ok and not ac_ok:
                wins[(*key, round(conf or 0, 3), round(uni, 3))] += 1
            if votes and c.config.calibrate:
                c.prior.observe(vs[0], vs[1])
                c.prior.refit(iterations=10)
    print(
        f"{args.file} {args.questions=} {args.hardest=} {args.order=}: {total} question-runs; "
        f"stops by rule {dict(by_rule)}"
    )
    print(
        f"  losses (ctrl wrong, AC right): {sum(losses.values())}   "
        f"wins (ctrl right, AC wrong): {sum(wins.values())}"
    )
    print("  losses by (state, rule, N_eff, learned conf, uniform conf):")
    for k, v in losses.most_common(15):
        print(f"    {v:3d}  {k}")
    print("  wins by (state, rule, N_eff, learned conf, uniform conf):")
    for k, v in wins.most_common(8):
        print(f"    {v:3d}  {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
