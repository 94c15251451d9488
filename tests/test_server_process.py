"""`adaptive serve` as a real subprocess: the openai client, curl, SIGTERM drain and cancel."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from proxy_helpers import QUESTION

from adaptive.cli._main import main

MESSAGES = [{"role": "user", "content": QUESTION}]
JSON = "Content-Type: application/json"


@contextlib.contextmanager
def process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`python -m adaptive ARGS`; yields the process and the URL it prints first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptive", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("http://"), (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, line
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def wait_health(base: str, in_flight: int | None = None) -> None:
    for _ in range(500):
        with contextlib.suppress(httpx.HTTPError):
            h = httpx.get(base.removesuffix("/v1") + "/health").json()
            if in_flight is None or h["in_flight"] >= in_flight:
                return
        time.sleep(0.01)
    raise AssertionError("the proxy never became ready")


@pytest.fixture(scope="module")
def stack() -> Iterator[str]:
    with (
        process("serve-sim", "--port", "0") as (_, sim),
        process("serve", "--upstream", sim, "--port", "0") as (_, px),
    ):
        wait_health(px)
        yield px


def test_openai_client_against_the_subprocess(stack: str) -> None:
    client = openai.OpenAI(base_url=stack, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="sim-reasoner",
        messages=MESSAGES,
        extra_body={"adaptive": {"strategy": {"name": "self-consistency", "n": 3}, "budget": {"usd": 0.002}}},
    )
    assert reply.model_extra["adaptive"]["samples"] == 3
    assert reply.model_extra["adaptive"]["cost_usd"] <= 0.002


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_plain_and_streamed(stack: str) -> None:
    body = json.dumps({"model": "sim-reasoner", "messages": MESSAGES})
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            stack + "/chat/completions",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    head, _, payload = out.partition("\n\n")  # text mode: CRLF read as LF
    assert "x-adaptive-cost-usd:" in head.lower()
    assert json.loads(payload)["choices"][0]["message"]["content"]
    sbody = json.dumps({"model": "sim-reasoner", "messages": MESSAGES, "stream": True})
    streamed = subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "-H",
            "Content-Type: application/json",
            "-d",
            sbody,
            stack + "/chat/completions",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    data = [line[6:] for line in streamed.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def _call_in_thread(base: str, out: list[Any]) -> threading.Thread:
    def go() -> None:
        try:
            out.append(
                httpx.post(
                    base + "/chat/completions",
                    json={"model": "sim-reasoner", "messages": MESSAGES},
                    timeout=60,
                )
            )
        except httpx.HTTPError as exc:
            out.append(exc)

    t = threading.Thread(target=go)
    t.start()
    return t


def _cost(stderr: str) -> float:
    found = re.findall(r"status=(\d+) cost_usd=([0-9.]+)", stderr)
    assert found, stderr
    return float(found[-1][1])


def test_sigterm_drains_in_flight_calls_within_the_grace() -> None:
    with (
        process("serve-sim", "--port", "0", "--latency-ms-per-token", "5") as (_, sim),
        process("serve", "--upstream", sim, "--port", "0", "--grace-seconds", "30") as (proxy, px),
    ):
        wait_health(px)
        out: list[Any] = []
        t = _call_in_thread(px, out)
        wait_health(px, in_flight=1)
        proxy.send_signal(signal.SIGTERM)
        t.join(60)
        # uvicorn re-raises the signal once it has shut down: exit by SIGTERM, after the drain
        assert proxy.wait(30) in (0, -signal.SIGTERM)
        assert proxy.stderr is not None
        stderr = proxy.stderr.read()
    assert isinstance(out[0], httpx.Response) and out[0].status_code == 200, out
    assert "status=200" in stderr and _cost(stderr) == pytest.approx(
        out[0].json()["adaptive"]["cost_usd"], abs=1e-9
    )


def test_sigterm_past_the_grace_cancels_and_charges() -> None:
    with (
        process("serve-sim", "--port", "0", "--latency-ms-per-token", "50") as (_, sim),
        process("serve", "--upstream", sim, "--port", "0", "--grace-seconds", "0") as (proxy, px),
    ):
        wait_health(px)
        out: list[Any] = []
        t = _call_in_thread(px, out)
        wait_health(px, in_flight=1)
        proxy.send_signal(signal.SIGTERM)
        t.join(60)
        proxy.wait(30)
        assert proxy.stderr is not None
        stderr = proxy.stderr.read()
    assert not (isinstance(out[0], httpx.Response) and out[0].status_code == 200), out
    assert "status=499" in stderr and "cancelled" in stderr
    assert _cost(stderr) > 0  # the cut request is charged (its worst case: no usage arrived)


def test_serve_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    assert main(["serve", "--upstream", "http://127.0.0.1:9/v1"]) == 2
    assert "pip install 'adaptive-ttc[server]'" in capsys.readouterr().err


def test_serve_needs_an_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve"]) == 2
    assert "--upstream" in capsys.readouterr().err
