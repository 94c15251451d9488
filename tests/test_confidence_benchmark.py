"""benchmarks/confidence.py on a small synthetic recorded file with per-sample logprobs."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import confidence as bench


def synthetic(path: Path, *, logprobs: bool, seed: int = 0) -> Path:
    """Questions whose wrong samples carry a low-confidence stretch (and run longer)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for q in range(40):
            samples = []
            for _ in range(12):
                right = rng.random() < 0.45  # a plain majority is often wrong
                answer = "7" if right else rng.choice(["3", "4"])
                lps = [-rng.expovariate(20.0) for _ in range(60)]
                if not right:
                    start = rng.randrange(0, 40)
                    lps[start : start + 12] = [-rng.uniform(1.0, 3.0) for _ in range(12)]
                sample: dict[str, object] = {"answer": answer, "completion_tokens": len(lps)}
                if logprobs:
                    sample["logprobs"] = lps
                samples.append(sample)
            row = {"id": f"q{q}", "prompt": f"Question {q}?", "gold": "7", "samples": samples}
            f.write(json.dumps(row) + "\n")
    return path


def test_confidence_methods_use_recorded_logprobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = synthetic(tmp_path / "lp.jsonl", logprobs=True)
    args = ["--shuffles", "2", "--budgets", "4", "8", "--window", "8", "--json", str(path)]
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[str(path)]
    assert report["logprobs"] is True and report["note"] is None
    assert report["auroc"]["confidence"] > 0.9  # the stretch marks the wrong samples
    at8 = report["budgets"]["8"]
    assert at8["conf-top-50%"]["accuracy"] > at8["majority"]["accuracy"]
    # Online cuts save tokens (cut traces charged only what was generated) and vote less.
    online = at8["online-keep-90%"]
    assert online["mean_tokens"] < at8["majority"]["mean_tokens"]
    assert online["mean_voting"] < 8


def test_a_file_without_logprobs_gets_the_length_methods_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = synthetic(tmp_path / "plain.jsonl", logprobs=False)
    assert bench.main(["--shuffles", "1", "--budgets", "4", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[str(path)]
    assert report["logprobs"] is False and "no per-sample logprobs" in report["note"]
    assert set(report["budgets"]["4"]) == {"majority", "len-weighted", "len-short-50%", "len-long-wtd"}
    assert report["auroc"]["confidence"] is None


def test_auroc_counts_ties_half() -> None:
    assert bench.auroc([(1.0, True), (0.0, False)]) == 1.0
    assert bench.auroc([(0.5, True), (0.5, False)]) == 0.5
    assert bench.auroc([(0.0, True), (1.0, False), (2.0, True)]) == 0.5
    assert bench.auroc([(1.0, True)]) is None


@pytest.mark.asyncio
async def test_keep_top_through_the_full_stack_on_a_recorded_file_with_logprobs(tmp_path: Path) -> None:
    # The benchmark's filter and the strategy's keep_top, over ReplayEndpoint, agree exactly.
    from adaptive_strategies import SelfConsistency

    from adaptive import Client
    from adaptive.confidence import TraceConfidence
    from adaptive.endpoints import ReplayEndpoint, load_recorded

    path = synthetic(tmp_path / "lp.jsonl", logprobs=True, seed=3)
    questions = load_recorded(path)[:10]
    measure = TraceConfidence(measure="bottom10", window=8)
    strategy = SelfConsistency(n=12, keep_top=0.5, trace_confidence=measure)
    agree = 0
    async with Client(ReplayEndpoint(questions, shuffle=False)) as client:
        for q in questions:
            assert q.prompt is not None
            result = await client.run(q.prompt, strategy=strategy)
            traces = [bench.Trace(s.answer, s.tokens(), s.logprobs) for s in q.samples]
            want, _, _ = bench.conf_top(measure, 0.5)(traces)
            assert result.answer == want
            agree += result.answer == q.gold
    assert agree >= 8  # the filter finds the right answer where the plain majority often does not
