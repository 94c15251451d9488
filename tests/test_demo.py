"""The demo: a small seeded run end to end, its JSON line, summaries, budget check and plot."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

import anyio
import pytest
from rich.console import Console

from adaptive import AdaptiveError, ConfigError
from adaptive.cli._demo import (
    CLAIM,
    DEFAULT_BUDGET_USD,
    STRATEGY_NAMES,
    CallRecord,
    DemoConfig,
    DemoReport,
    RemoteSpec,
    StrategySummary,
    _config_json,
    _run_strategy,
    check_budget,
    compare_paired,
    describe_paired,
    render_report,
    run_demo,
    save_plot,
    stopped_early,
    summarize,
)
from adaptive.cli._main import demo_strategies, main
from adaptive.sim import demo_problems

KEYS = {"accuracy", "mean_samples", "mean_tokens", "mean_usd", "p50_s", "p95_s", "max_usd", "stopped_early"}


def record(
    i: int, *, correct: bool = True, usd: float = 0.001, seconds: float = 1.0, reason: str = "x"
) -> CallRecord:
    return CallRecord(
        i, correct, samples=i + 1, tokens=100 * (i + 1), usd=usd, seconds=seconds, stop_reason=reason
    )


def test_demo_json_line_on_sixteen_questions(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--questions", "16", "--json", "--no-plot", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.strip().splitlines()
    data = json.loads(lines[-1])
    assert set(data) == {"strategies", "budget_usd", "questions", "seconds", "paired"}
    assert list(data["strategies"]) == list(STRATEGY_NAMES)
    assert data["questions"] == 16
    assert data["budget_usd"] == DEFAULT_BUDGET_USD
    assert data["seconds"] > 0
    for figures in data["strategies"].values():
        assert set(figures) == KEYS
        assert 0.0 <= figures["accuracy"] <= 1.0
        assert 0.0 <= figures["stopped_early"] <= 1.0
        assert 0 < figures["max_usd"] <= data["budget_usd"]
        assert figures["mean_usd"] <= figures["max_usd"]
        assert figures["p50_s"] <= figures["p95_s"]
    accuracies = [f["accuracy"] for f in data["strategies"].values()]
    assert len(set(accuracies)) > 1
    s = data["strategies"]
    assert s["single"]["mean_samples"] == 1.0
    assert s["self-consistency"]["mean_samples"] > s["adaptive"]["mean_samples"] > 1.0
    # The paired comparison is recomputable from the two strategies' own figures.
    paired = data["paired"]
    assert set(paired) == {
        "name", "baseline", "questions", "difference", "se", "low", "high", "wins", "losses", "usd_ratio"
    }  # fmt: skip
    assert (paired["name"], paired["baseline"]) == CLAIM
    assert paired["questions"] == 16
    a, b = s["adaptive"], s["self-consistency"]
    assert paired["difference"] == pytest.approx(a["accuracy"] - b["accuracy"])
    assert paired["difference"] == pytest.approx((paired["wins"] - paired["losses"]) / 16)
    assert paired["usd_ratio"] == pytest.approx(a["mean_usd"] / b["mean_usd"])
    assert paired["se"] >= 0 and paired["low"] <= paired["difference"] <= paired["high"]
    # The table came before the JSON line, with every strategy and the comparison in it.
    table = "\n".join(lines[:-1])
    assert all(name in table for name in STRATEGY_NAMES)
    assert "<= budget" in table
    assert "paired on the same 16 questions" in table


def test_worker_protocol_gives_the_in_process_records(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = DemoConfig(questions=3, seed=1, concurrency=2)
    units = [{"name": "adaptive", "start": 0, "stop": 3}, {"name": "best-of-n", "start": 1, "stop": 3}]
    lines = [json.dumps(_config_json(config)), *(json.dumps(u) for u in units), ""]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines)))
    assert main(["_demo-worker"]) == 0  # what `python -m adaptive _demo-worker` runs
    out = capsys.readouterr().out.splitlines()
    progress = [line[2:] for line in out if line.startswith("P ")]
    assert sorted(progress) == ["adaptive"] * 3 + ["best-of-n"] * 2
    results = [json.loads(line[2:]) for line in out if line.startswith("R ")]
    assert [r["name"] for r in results] == ["adaptive", "best-of-n"]
    problems = demo_problems(3, seed=1)

    async def direct(name: str, indices: range) -> list[CallRecord]:
        return await _run_strategy(config, demo_strategies, name, indices, problems, lambda n: None)

    for got, unit in zip(results, units, strict=True):
        want = anyio.run(direct, unit["name"], range(unit["start"], unit["stop"]))
        keep = ("index", "correct", "samples", "tokens", "usd", "stop_reason")
        assert [{k: r[k] for k in keep} for r in got["records"]] == [
            {k: getattr(r, k) for k in keep} for r in want
        ]


def test_summarize_and_stopped_early() -> None:
    records = [
        record(0, reason="strategy_done", seconds=1.0),
        record(1, correct=False, reason="confident", seconds=2.0, usd=0.003),
        record(2, reason="budget", seconds=3.0),
        record(3, correct=False, reason="max_samples", seconds=4.0),
    ]
    s = summarize(records)
    assert s.accuracy == 0.5
    assert s.mean_samples == 2.5
    assert s.mean_tokens == 250
    assert s.mean_usd == pytest.approx(0.0015)
    assert s.max_usd == 0.003
    assert s.p50_s == pytest.approx(2.5)
    assert 3.5 < s.p95_s <= 4.0
    assert s.stopped_early == 0.5
    assert (
        not stopped_early("strategy_done") and not stopped_early("max_samples") and not stopped_early("error")
    )
    assert (
        stopped_early("low_marginal_gain") and stopped_early("budget_exhausted") and stopped_early("deadline")
    )
    with pytest.raises(ConfigError):
        summarize([])


def outcomes(pattern: str) -> list[CallRecord]:
    """Records right ("1") or wrong ("0") by position, each costing $0.001 x its 1-based index."""
    return [record(i, correct=c == "1", usd=0.001 * (i + 1)) for i, c in enumerate(pattern)]


def test_paired_comparison_by_hand() -> None:
    # Per-question differences: +1, +1, 0, 0, -1, 0, 0, 0 (mean 1/8).
    a = outcomes("11101000")
    b = outcomes("00111000")
    p = compare_paired("a", a, "b", b)
    assert (p.questions, p.wins, p.losses) == (8, 2, 1)
    assert p.difference == pytest.approx(1 / 8)
    # Sample standard deviation of [1, 1, 0, 0, -1, 0, 0, 0]: sqrt((3 - 8/64) / 7).
    se = ((3 - 8 * (1 / 8) ** 2) / 7) ** 0.5 / 8**0.5
    assert p.se == pytest.approx(se)
    assert p.low == pytest.approx(1 / 8 - 1.96 * se, abs=1e-4)
    assert p.high == pytest.approx(1 / 8 + 1.96 * se, abs=1e-4)
    assert p.usd_ratio == pytest.approx(1.0)
    # Identical outcomes: no difference and no spread, stated as such.
    same = compare_paired("a", a, "b", a)
    assert same.difference == 0 and same.se == 0 and same.wins == same.losses == 0
    cheap = [CallRecord(r.index, r.correct, 1, 10, r.usd / 4, 0.1, "confident") for r in a]
    assert compare_paired("a", cheap, "b", a).usd_ratio == pytest.approx(0.25)
    text = describe_paired(p)
    assert "paired on the same 8 questions: +12.5 points" in text
    assert f"standard error {se * 100:.1f}" in text and "at 100% of its mean dollars" in text
    # One question: the standard error is undefined, and the sentence says so.
    one = compare_paired("a", a[:1], "b", b[:1])
    assert one.se is None and one.low is None and one.high is None
    assert "no uncertainty" in describe_paired(one)
    with pytest.raises(ConfigError, match="same questions"):
        compare_paired("a", a, "b", b[:4])
    with pytest.raises(ConfigError, match="same questions"):
        compare_paired("a", [], "b", [])
    free = compare_paired("a", a, "b", [dataclasses.replace(r, usd=0.0) for r in b])
    assert free.usd_ratio is None and "b spent nothing, so there is no dollar ratio" in describe_paired(free)


def report_of(max_usd: float, budget: float = 0.002) -> DemoReport:
    s = StrategySummary(0.5, 2.0, 100.0, max_usd / 2, 0.1, 0.2, max_usd, 0.25)
    return DemoReport(strategies={"a": s, "b": s}, budget_usd=budget, questions=4, seconds=1.5)


def test_budget_check_and_rendering() -> None:
    check_budget(report_of(0.002))
    with pytest.raises(AdaptiveError, match="more than its"):
        check_budget(report_of(0.00200001))
    buffer = io.StringIO()
    render_report(report_of(0.0015), Console(file=buffer, width=140))
    text = buffer.getvalue()
    assert "budget $0.002 per call" in text
    assert "50.0%" in text and "0.001500" in text
    assert "stopped early" in text


def test_config_is_checked_and_hides_the_key() -> None:
    with pytest.raises(ConfigError, match="questions"):
        DemoConfig(questions=0)
    with pytest.raises(ConfigError, match="budget_usd"):
        DemoConfig(budget_usd=float("nan"))
    with pytest.raises(ConfigError, match="workers"):
        DemoConfig(workers=0)
    with pytest.raises(ConfigError, match="seconds_per_token"):
        DemoConfig(seconds_per_token=-1.0)
    remote = RemoteSpec(base_url="http://127.0.0.1:9/v1", model="m", api_key="sk-secret-demo")
    config = DemoConfig(remote=remote, workers=3)
    assert "sk-secret-demo" not in repr(config)
    assert config.resolved_workers() == 1
    assert DemoConfig(questions=10).resolved_workers() == 1


def test_plot_with_and_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = report_of(0.001)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if it were not installed
    assert save_plot(report, tmp_path / "none.png") is None
    monkeypatch.undo()
    pytest.importorskip("matplotlib")
    path = save_plot(report, tmp_path / "plot.png")
    assert path is not None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_worker_raises_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'worker exploded' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(AdaptiveError, match="exit code 3") as exc:
        anyio.run(lambda: run_demo(DemoConfig(questions=4, workers=2), demo_strategies))
    assert "worker exploded" in str(exc.value)
    assert "--workers 1" in str(exc.value)


FAKE_WORKER = """#!{python}
import json, sys
config = json.loads(sys.stdin.readline())
assert config["questions"] == 8, config
for line in sys.stdin:
    unit = json.loads(line)
    rows = []
    for i in range(unit["start"], unit["stop"]):
        print("P " + unit["name"], flush=True)
        rows.append({{"index": i, "correct": i % 2 == 0, "samples": 2, "tokens": 10 * i, "usd": 0.0001 * i,
                     "seconds": 0.5, "stop_reason": "confident" if i < 2 else "strategy_done"}})
    print("R " + json.dumps({{"name": unit["name"], "records": rows}}), flush=True)
"""


def test_workers_share_the_units_and_the_records_come_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in worker speaking the protocol (no adaptive import): the driver side, quickly.
    fake = tmp_path / "python"
    fake.write_text(FAKE_WORKER.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    seen: list[str] = []
    report = anyio.run(
        lambda: run_demo(DemoConfig(questions=8, workers=3), demo_strategies, on_done=seen.append)
    )
    assert report.workers == 3
    assert sorted(seen) == sorted(name for name in STRATEGY_NAMES for _ in range(8))
    for s in report.strategies.values():
        assert s.accuracy == 0.5 and s.mean_samples == 2 and s.mean_tokens == 35
        assert s.max_usd == pytest.approx(0.0007) and s.stopped_early == 0.25 and s.p50_s == 0.5
