"""Run every example as a script and check what it prints: answers, and spend within budget."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MONEY = r"\$([0-9.]+)"


SCRIPTS = (
    "quickstart.py",
    "self_consistency.py",
    "best_of_n.py",
    "beam_search.py",
    "custom_strategy.py",
    "sync_client.py",
    "streaming.py",
    "proxy_stream.py",
)


@pytest.fixture(scope="module")
def started() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Start every example at once (they are independent), so the module runs in parallel."""
    env = dict(os.environ)
    # The examples use the simulator unless told otherwise; make sure nothing points elsewhere.
    for key in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCRIPTS
        if (EXAMPLES / name).exists()
    }
    yield procs
    for proc in procs.values():
        if proc.stdout is not None and not proc.stdout.closed:  # not collected by a test
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def run_example(started: dict[str, subprocess.Popen[str]], name: str) -> str:
    proc = started[name]
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{name} failed:\n{stdout}\n{stderr}"
    return stdout


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts <= set(SCRIPTS), f"untested examples: {sorted(scripts - set(SCRIPTS))}"


def test_quickstart(started: dict[str, subprocess.Popen[str]]) -> None:
    out = run_example(started, "quickstart.py")
    lines = re.findall(
        r"Q\d \[(\S+)\] answer (\S+) \(expected (\S+)\)  spent "
        + MONEY
        + " of "
        + MONEY
        + r"  stopped by (\S+)",
        out,
    )
    assert len(lines) == 5, out
    assert {strategy for strategy, *_ in lines} == {"adaptive", "self-consistency"}  # routed per request
    for _, answer, _, spent, budget, _ in lines:
        assert answer.lstrip("-").isdigit()
        assert 0 < float(spent) <= float(budget)
    assert sum(answer == expected for _, answer, expected, *_ in lines) >= 3, out
    # The receipt and the decisions behind it, ending with a stop.
    assert re.search(r"^cost +\$[0-9.]+ in ", out, re.M)
    decisions = re.findall(r"round +\d+: (continue|stop \(\w+\))", out)
    assert decisions[0] == "continue" and decisions[-1].startswith("stop") and len(decisions) >= 3


def test_self_consistency(started: dict[str, subprocess.Popen[str]]) -> None:
    out = run_example(started, "self_consistency.py")
    assert "ac-beta" in out and "esc-window" in out and "budget-exhausted" in out
    fitted_repr = re.search(r"fitted (ConsistencyPrior\(questions=\d+.*\))", out)
    assert fitted_repr is not None
    assert f"saved and loaded {fitted_repr.group(1)}" in out  # the round trip keeps the prior
    uniform, fitted = map(float, re.findall(r"uniform ([0-9.]+), fitted ([0-9.]+)", out)[0])
    assert uniform != fitted
    rows = {
        label.strip(): (int(right), int(total), float(per_q), float(cost))
        for label, right, total, per_q, cost in re.findall(
            r"^(fixed N=16|adaptive[^\d]*?) +(\d+)/(\d+) +([0-9.]+) +([0-9.]+) +[0-9.]+$", out, re.M
        )
    }
    assert len(rows) == 4, out
    fixed = rows.pop("fixed N=16")
    assert fixed[2] == 16.0
    for right, total, per_q, cost in rows.values():
        assert per_q < fixed[2] and cost < fixed[3]  # adaptive stopping saves samples
        assert right >= total // 2
    spent, budget = map(float, re.findall(r"most any call spent: " + MONEY + r" \(budget " + MONEY, out)[0])
    assert 0 < spent <= budget


def test_best_of_n(started: dict[str, subprocess.Popen[str]]) -> None:
    out = run_example(started, "best_of_n.py")
    budget = float(re.findall(r"budget " + MONEY + " per call", out)[0])
    rows = re.findall(
        r"^(.+?) +(\d+)/(\d+) +([0-9.]+) candidates +([0-9.]+) verifier calls +"
        + MONEY
        + " total +max "
        + MONEY
        + " per call$",
        out,
        re.M,
    )
    assert len(rows) == 5, out
    for label, right, total, _, checks, _, worst in rows:
        assert int(right) >= int(total) // 2, label
        assert 0 < float(worst) <= budget
        if "calculator" not in label:  # a sync function verifier scores locally, without calls
            assert float(checks) > 0
    # The score threshold stops early: fewer candidates than its n of 16.
    assert float(next(r for r in rows if "stop at" in r[0])[3]) < 16
    assert re.search(r"samples +4 generated, 4 verifier calls", out)


def test_beam_search(started: dict[str, subprocess.Popen[str]]) -> None:
    out = run_example(started, "beam_search.py")
    budget = float(re.findall(r"budget " + MONEY + " per call", out)[0])
    rows = re.findall(
        r"^(.+?) +(\d+)/(\d+) right +" + MONEY + " total +max " + MONEY + " per call$", out, re.M
    )
    assert [r[0] for r in rows] == [
        "beam search (keep 2 of 8 per round)",
        "beam search, min over step scores",
        "DVTS (4 subtrees x 2), score-weighted vote",
    ]
    for _, right, total, _, worst in rows:
        assert int(right) >= int(total) // 2
        assert 0 < float(worst) <= budget
    kept = re.findall(r"round \d+: \d+ scored, kept \[(.*)\]", out)
    assert kept and all(1 <= len(k.split(", ")) <= 2 for k in kept)  # width 2
    assert "done" in kept[-1]
    assert re.search(r"samples +\d+ generated, [1-9]\d* verifier calls", out)


def test_custom_strategy(started: dict[str, subprocess.Popen[str]]) -> None:
    out = run_example(started, "custom_strategy.py")
    budget = float(re.findall(r"budget " + MONEY + " per call", out)[0])
    rows = {
        label.strip(): (int(right), int(escalated), float(cost), float(worst))
        for label, right, escalated, cost, worst in re.findall(
            r"^(.+?) +(\d+)/\d+ right +escalated +(\d+) +" + MONEY + " total +max " + MONEY + " per call$",
            out,
            re.M,
        )
    }
    assert set(rows) == {"cheap model, one sample", "strong model, one sample", "agree-or-escalate"}
    cheap, strong, mine = (
        rows["cheap model, one sample"],
        rows["strong model, one sample"],
        rows["agree-or-escalate"],
    )
    assert all(0 < r[3] <= budget for r in rows.values())
    assert mine[1] > 0 and cheap[1] == strong[1] == 0
    assert cheap[2] < mine[2] < strong[2]  # in between on cost
    assert mine[0] >= cheap[0]
    # The escalated call's receipt lists charges on both endpoints.
    assert "agree-or-escalate, stopped by strategy_done" in out
    assert re.search(r"SimEndpoint\(sim-small\) +\d sample", out)
    assert re.search(r"SimEndpoint\(sim-large\) +1 sample", out)


def test_sync_client(started: dict[str, subprocess.Popen[str]]) -> None:
    out = run_example(started, "sync_client.py")
    lines = re.findall(
        r"answer (\S+) \(expected (\S+)\)  (\d+) samples  spent " + MONEY + " of " + MONEY, out
    )
    assert len(lines) == 4, out
    for answer, _, samples, spent, budget in lines:
        assert answer.isdigit() and int(samples) >= 1
        assert 0 < float(spent) <= float(budget)
    assert re.search(r"self-consistency n=8: answer \d+, votes \{", out)
    assert "stopped by confident (vote_margin)" in out
    assert "ConfigError: unknown strategy 'best-of-everything'" in out


def test_streaming(started: dict[str, subprocess.Popen[str]]) -> None:
    out = run_example(started, "streaming.py")
    deltas, tokens = map(int, re.findall(r"streamed (\d+) deltas; (\d+) tokens", out)[0])
    assert deltas > 1 and tokens > deltas
    chars, counted = map(int, re.findall(r"stopped after (\d+) characters: (\d+) completion tokens", out)[0])
    assert chars >= 120 and 0 < counted < deltas  # only what arrived before leaving the block
    assert re.search(r"^answer +'\d+'", out, re.M)
    spent, budget = map(float, re.findall(r"spent " + MONEY + " of " + MONEY, out)[0])
    assert 0 < spent <= budget


def test_proxy_stream(started: dict[str, subprocess.Popen[str]]) -> None:
    import json

    out = run_example(started, "proxy_stream.py")
    chunks = [json.loads(m) for m in re.findall(r"^chunk \d+: (.*)$", out, re.M)]
    assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks)
    progress = [c for c in chunks if not c["choices"] and "event" in c.get("adaptive", {})]
    answer = [c for c in chunks if c["choices"]]
    tail = chunks[-1]
    # Progress first (a decision, then the requests it sent), then the answer, then the receipt.
    assert progress[0]["adaptive"]["event"] == "decide" and chunks.index(progress[-1]) < chunks.index(
        answer[0]
    )
    assert {"decide", "send", "done"} <= {c["adaptive"]["event"] for c in progress}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in answer)
    assert answer[-1]["choices"][0]["finish_reason"] == "stop"
    receipt = tail["adaptive"]
    assert not tail["choices"] and receipt["answer"] in text and 0 < receipt["cost_usd"] <= 0.002
    assert tail["usage"]["total_tokens"] > 0
    assert f"answer text: {text.strip().splitlines()[-1]}" in out
