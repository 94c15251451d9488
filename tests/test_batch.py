"""`Client.run_many` and `adaptive batch`: a dataset under one total budget (issue 12, part 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adaptive import Client, ConfigError
from adaptive.cli._main import main
from adaptive.sim import SimEndpoint
from adaptive.sim._problems import make_problems


def questions(count: int, seed: int) -> list[dict[str, str]]:
    return [{"id": p.id, "prompt": p.question, "gold": p.answer} for p in make_problems(count, seed=seed)]


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.asyncio
async def test_run_many_never_exceeds_the_total_and_spends_close_to_it() -> None:
    items = questions(40, seed=11)
    async with Client(SimEndpoint()) as client:
        # One sample costs about $0.0001 on the simulator: about 4 samples a question.
        report = await client.run_many(items, budget_usd=0.016, concurrency=8, seed=3)
    s = report.summary
    assert s["questions"] == 40 and s["spent_usd"] <= 0.016
    assert s["spent_usd"] >= 0.016 * 0.9  # samples still paid: the budget is nearly used
    spread = report.histogram()
    assert min(spread) >= 2 and len(spread) >= 3  # everyone got a first round, then not uniform
    assert s["accuracy"] is not None and 0 <= s["accuracy"] <= 1
    assert sum(r["cost_usd"] for r in report.records) == pytest.approx(s["spent_usd"], abs=1e-9)


@pytest.mark.asyncio
async def test_run_many_resumes_without_paying_twice() -> None:
    items = questions(20, seed=12)
    async with Client(SimEndpoint()) as client:
        first = await client.run_many(items, budget_usd=0.004, seed=1)
        previous = {r["id"]: r for r in first.records}
        again = await client.run_many(items, budget_usd=0.004, seed=1, previous=previous)
        more = await client.run_many(items, budget_usd=0.008, seed=1, previous=previous)
    # The same total: nothing (or only a remainder smaller than one sample) is spent again.
    assert again.spent_usd <= 0.004
    for old, new in zip(first.records, more.records, strict=True):
        assert new["draws"][: len(old["draws"])] == old["draws"]  # drawn samples kept
    assert first.spent_usd < more.spent_usd <= 0.008


@pytest.mark.asyncio
async def test_run_many_refuses_bad_arguments_before_spending() -> None:
    async with Client(SimEndpoint()) as client:
        with pytest.raises(ConfigError, match="unique"):
            await client.run_many([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], budget_usd=1.0)
        with pytest.raises(ConfigError, match="budget_usd"):
            await client.run_many([{"id": "a", "prompt": "x"}], budget_usd=0)
        with pytest.raises(ConfigError, match="exactly one"):
            await client.run_many([{"id": "a"}], budget_usd=1.0)


def test_batch_cli_reports_bad_lines_and_aborts_before_spending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "prompt": "What is 2 + 2?"}\nnot json\n{"id": "b"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code = main(["batch", str(src), "--budget-usd", "0.01", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "line 2" in err and "line 3" in err and "nothing was spent" in err
    assert not out.exists()
    code = main(["batch", str(src), "--budget-usd", "0.01", "--out", str(out), "--skip-bad-lines", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and "skipped" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert set(summary) == {"questions", "settled", "spent_usd", "budget_usd", "mean_samples", "accuracy"}
    assert summary["questions"] == 1 and summary["accuracy"] is None
    (line,) = out.read_text().splitlines()
    assert {"id", "answer", "samples", "cost_usd", "stop_reason"} <= set(json.loads(line))


def test_batch_cli_resumes_from_its_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "in.jsonl", questions(12, seed=13))
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(src), "--budget-usd", "0.002", "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    before = [json.loads(x) for x in out.read_text().splitlines()]
    assert main(["batch", str(src), "--budget-usd", "0.004", "--out", str(out), "--json"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    after = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert first["spent_usd"] <= 0.002 and first["spent_usd"] < second["spent_usd"] <= 0.004
    for r in before:
        assert after[r["id"]]["draws"][: len(r["draws"])] == r["draws"]


def test_batch_workers_share_the_budget_through_redis(
    tmp_path: Path, redis: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write(tmp_path / "in.jsonl", questions(24, seed=14))
    out = tmp_path / "out.jsonl"
    args = ["batch", str(src), "--budget-usd", "0.006", "--out", str(out), "--json"]
    assert main([*args, "--workers", "3", "--redis", redis]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 24 and summary["questions"] == 24
    assert sum(r["cost_usd"] for r in records) <= 0.006
    assert summary["spent_usd"] >= 0.006 * 0.8
    assert not list(tmp_path.glob("out.jsonl.worker*"))


@pytest.mark.asyncio
async def test_reports_during_the_run_follow_every_draw() -> None:
    # Each report rebuilds only the question that changed: what it shows must still be current.
    items = questions(12, seed=13)
    seen: list[tuple[float, int]] = []
    async with Client(SimEndpoint()) as client:
        report = await client.run_many(
            items,
            budget_usd=0.003,
            seed=2,
            on_update=lambda r: seen.append((r.spent_usd, sum(x["samples"] for x in r.records))),
        )
    assert seen and seen == sorted(seen)  # spend and samples only grow
    assert seen[-1] == (report.spent_usd, sum(x["samples"] for x in report.records))
    assert report.spent_usd <= 0.003
    for r in report.records:  # a stale record would disagree with its own (live) draws
        assert r["samples"] == sum(1 for d in r["draws"] if d.get("sample", True))
        assert r["cost_usd"] == pytest.approx(sum(d["cost_usd"] for d in r["draws"]), abs=1e-12)
