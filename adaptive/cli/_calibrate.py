"""`adaptive calibrate LOGS.jsonl`: fit the controller's `ConsistencyPrior` on your own logs.

The logs are recorded questions (the replay format, see `adaptive.endpoints.replay`) and/or
vote logs (`{"votes": {answer: count}}`, e.g. from `Result.votes`); the fitted prior is saved
for `Client(endpoint, prior=ConsistencyPrior.load(path))`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from .._answer_spec import AnswerSpec
from .._exceptions import ConfigError
from .._extractors import extractor_from_config
from .._posterior import ConsistencyPrior, beta_confidence
from .._voting import top_two_counts
from ..endpoints.replay import jsonl_rows, recorded_question

__all__ = ["DEFAULT_EXTRACTOR", "DEFAULT_PRIOR", "calibrate", "read_vote_logs"]

DEFAULT_PRIOR = "adaptive-prior.json"
DEFAULT_EXTRACTOR = "answer-is"
CALIBRATE_TABLE = ((2, 0), (3, 0), (3, 1), (4, 1), (5, 2))


def _recorded_votes(row: dict[str, Any], where: str, spec: AnswerSpec, first: int | None) -> dict[str, int]:
    """The votes of a recorded question's (first `first`) samples, read like the replay benchmark."""
    question = recorded_question(row, where)
    votes: Counter[str] = Counter()
    for s in question.samples[:first]:
        answer = spec.read(s.text, s.answer)
        if answer is not None:
            votes[answer] += 1
    return dict(votes)


def _logged_votes(raw: Any, where: str) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'votes' must be an object mapping each answer to its count")
    for answer, count in raw.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(
                f"{where}: the count of answer {answer!r} must be a whole number >= 0 (got {count!r})"
            )
    return dict(raw)


def read_vote_logs(path: str, spec: AnswerSpec, first: int | None = None) -> list[dict[str, int]]:
    """Per-question vote maps from a JSONL log of recorded questions and/or vote logs.

    Args:
        path: The JSONL file; each non-blank line is a recorded question (the replay format,
            see `adaptive.endpoints.replay`) or `{"votes": {answer: count, ...}}`.
        spec: How a recorded sample's answer is read (pre-extracted answers are normalized).
        first: Use only each recorded question's first `first` samples (None: all).

    Raises:
        ConfigError: The file cannot be read, or a line is neither kind (the message names it).
    """
    out: list[dict[str, int]] = []
    for where, row in jsonl_rows(path):
        if isinstance(row, dict) and "samples" in row:
            out.append(_recorded_votes(row, where, spec, first))
        elif isinstance(row, dict) and "votes" in row:
            out.append(_logged_votes(row["votes"], where))
        else:
            raise ConfigError(
                f'{where}: each line must be a recorded question ({{"id": ..., "samples": [...]}}) '
                f'or a vote log ({{"votes": {{"answer": count}}}})'
            )
    return out


def calibrate(args: argparse.Namespace) -> int:
    """Run `adaptive calibrate` with parsed arguments; returns the exit status."""
    from rich.console import Console
    from rich.table import Table

    try:
        spec = AnswerSpec(extractor=extractor_from_config(args.extract))
    except ConfigError as exc:
        raise ConfigError(f"--extract: {exc}") from None
    logs = read_vote_logs(args.logs, spec, args.first)
    # Questions with fewer than two answered samples say nothing about consistency.
    used = [votes for votes in logs if sum(top_two_counts(votes)) >= 2]
    if not used:
        raise ConfigError(
            f"{args.logs}: no question has two or more answered samples, so there is nothing to fit "
            f"({len(logs)} lines read; check --extract {args.extract!r} matches how the samples state "
            "their answer)"
        )
    prior = ConsistencyPrior()
    prior.fit(used)
    prior.save(args.out)
    mean_dominance = float(prior.weights @ prior.d)
    rows = {
        f"{v1}-{v2}": {"fitted": prior.confidence(v1, v2), "uniform": beta_confidence(v1, v2)}
        for v1, v2 in CALIBRATE_TABLE
    }

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    skipped = len(logs) - len(used)
    note = f" ({skipped} skipped: fewer than two answered samples)" if skipped else ""
    console.print(
        f"Fitted on {len(used)} questions from {args.logs}{note}; mean dominance {mean_dominance:.3f}.",
        markup=False,
    )
    table = Table(title="P(the leader wins unlimited voting)", title_justify="left")
    table.add_column("votes (leader-runner-up)")
    table.add_column("fitted prior", justify="right")
    table.add_column("uniform prior (AC's Beta rule)", justify="right")
    for key, row in rows.items():
        table.add_row(key, f"{row['fitted']:.3f}", f"{row['uniform']:.3f}")
    console.print(table)
    console.print(f"Saved to {args.out}.", markup=False, soft_wrap=True)
    console.print(
        f"Use it: Client(endpoint, prior=ConsistencyPrior.load({args.out!r}))", markup=False, soft_wrap=True
    )
    if args.json:
        console.file.flush()
        report = {
            "questions": len(used),
            "mean_dominance": mean_dominance,
            "out": args.out,
            "confidence": rows,
        }
        print(json.dumps(report), flush=True)
    return 0
