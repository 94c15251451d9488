"""benchmarks/sim_record.py: the simulator's samples as a recorded file the replay benchmark reads."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import replay
import sim_record

from adaptive.endpoints import load_recorded


def test_the_recorded_file_loads_and_replays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.jsonl"
    assert sim_record.main(["--questions", "12", "--samples", "6", "--skew", "0.5", "--out", str(out)]) == 0
    questions = load_recorded(out)
    assert len(questions) == 12
    assert len({q.id for q in questions}) == 12
    for q in questions:
        assert q.gold is not None and q.prompt
        assert len(q.samples) == 6
        for s in q.samples:
            assert s.completion_tokens is not None and s.completion_tokens > 0
            assert s.logprobs is not None and len(s.logprobs) > 0
            assert all(lp <= 0 for lp in s.logprobs)
    # The samples differ within a question (temperature 0.7), and the file is seeded.
    assert any(len({s.text for s in q.samples}) > 1 for q in questions)
    assert sim_record.records(12, 6, skew=0.5) == sim_record.records(12, 6, skew=0.5)
    capsys.readouterr()
    argv = [str(out), "--extract", "answer-is", "--shuffles", "1", "--check", "3", "--no-bound", "--json"]
    assert replay.main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["files"][str(out)]
    assert res["questions"] == 12
    assert res["full_stack_check"]["mismatches"] == 0


def test_the_skew_sets_how_hard_the_questions_are() -> None:
    def agreement(skew: float) -> float:
        rows = sim_record.records(60, 8, skew=skew, seed=3)
        shares = []
        for row in rows:
            answers = [s["answer"] for s in row["samples"]]  # type: ignore[attr-defined]
            shares.append(answers.count(row["gold"]) / len(answers))
        return statistics.fmean(shares)

    assert agreement(0.3) < agreement(3.0)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    assert sim_record.main(["--samples", "1", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert not (tmp_path / "x.jsonl").exists()
