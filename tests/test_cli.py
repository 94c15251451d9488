"""The command line: argument parsing, errors, the remote demo path and `python -m adaptive`."""

from __future__ import annotations

import json
import runpy
import sys

import pytest

from adaptive import Price, __version__
from adaptive._cli import build_parser, demo_config, main
from adaptive._demo import DEFAULT_BUDGET_USD, DEFAULT_CONCURRENCY, DEFAULT_QUESTIONS, STRATEGY_NAMES
from adaptive._httpserver import HTTPRequest, HTTPResponse, HTTPServer, run_in_thread
from adaptive.sim import SimServer


def parse_demo(*argv: str) -> object:
    parser = build_parser()
    return demo_config(parser, parser.parse_args(["demo", *argv]))


def test_demo_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert (args.questions, args.budget_usd, args.concurrency) == (
        DEFAULT_QUESTIONS,
        DEFAULT_BUDGET_USD,
        DEFAULT_CONCURRENCY,
    )
    assert args.plot == "adaptive-demo.png" and not args.json and not args.no_plot
    config = parse_demo(
        "--questions", "7", "--budget-usd", "0.01", "--seed", "3", "--latency-ms-per-token", "2"
    )
    assert config.questions == 7 and config.budget_usd == 0.01 and config.seed == 3  # type: ignore[attr-defined]
    assert config.seconds_per_token == 0.002 and config.remote is None  # type: ignore[attr-defined]


def test_remote_arguments_build_a_remote_spec() -> None:
    config = parse_demo(
        "--base-url",
        "http://127.0.0.1:8000/v1",
        "--model",
        "m",
        "--api-key",
        "sk-cli-secret",
        "--price-in",
        "0.5",
        "--price-out",
        "1.5",
        "--verifier-model",
        "rm",
    )
    remote = config.remote  # type: ignore[attr-defined]
    assert remote.model == "m" and remote.verifier_model == "rm"
    assert remote.price == Price(input=0.5, output=1.5) and remote.verifier_price is None
    assert "sk-cli-secret" not in repr(config)


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--questions", "0"],
        ["demo", "--questions", "many"],
        ["demo", "--budget-usd", "-1"],
        ["demo", "--budget-usd", "0"],
        ["demo", "--budget-usd", "inf"],
        ["demo", "--concurrency", "0"],
        ["demo", "--model", "gpt-4o-mini"],
        ["demo", "--price-in", "1", "--price-out", "2"],
        ["demo", "--base-url", "http://127.0.0.1:1/v1"],
        ["demo", "--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--price-in", "1"],
        ["serve-sim", "--port", "70000"],
        ["serve-sim", "--latency-ms-per-token", "-3"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_with_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"adaptive {__version__}"
    assert main([]) == 2
    help_text = capsys.readouterr().out
    assert "demo" in help_text and "serve-sim" in help_text and "_demo-worker" not in help_text


def test_serve_sim_arguments() -> None:
    args = build_parser().parse_args(["serve-sim", "--port", "0", "--seed", "4", "--first-token-ms", "50"])
    assert (args.host, args.port, args.seed, args.first_token_ms) == ("127.0.0.1", 0, 4, 50.0)


def test_remote_model_without_a_price_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before any request is sent: the unknown model has no price for the dollar budget.
    argv = ["demo", "--base-url", "http://127.0.0.1:9/v1", "--model", "no-such-model-xyz", "--no-plot"]
    assert main([*argv, "--questions", "2"]) == 2
    err = capsys.readouterr().err
    assert "--price-in" in err


def test_remote_demo_against_the_sim_server(capsys: pytest.CaptureFixture[str]) -> None:
    with run_in_thread(SimServer().app) as server:
        code = main(
            [
                "demo",
                "--base-url",
                server.url + "/v1",
                "--model",
                "sim-reasoner",
                "--api-key",
                "sk-remote-secret",
                "--price-in",
                "0.15",
                "--price-out",
                "0.6",
                "--verifier-model",
                "sim-verifier",
                "--verifier-price-in",
                "0.1",
                "--verifier-price-out",
                "0.1",
                "--questions",
                "3",
                "--json",
                "--no-plot",
            ]
        )
    captured = capsys.readouterr()
    assert code == 0
    assert "sk-remote-secret" not in captured.out + captured.err
    data = json.loads(captured.out.strip().splitlines()[-1])
    assert list(data["strategies"]) == list(STRATEGY_NAMES)
    for figures in data["strategies"].values():
        assert 0 < figures["max_usd"] <= data["budget_usd"]
        assert 0.0 <= figures["accuracy"] <= 1.0


def test_python_dash_m_adaptive(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # What `python -m adaptive --version` executes, without paying for a new interpreter.
    monkeypatch.setattr(sys, "argv", ["adaptive", "--version"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("adaptive", run_name="__main__", alter_sys=False)
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"adaptive {__version__}"


def test_remote_calls_that_fail_count_as_errors(capsys: pytest.CaptureFixture[str]) -> None:
    async def refuse(req: HTTPRequest) -> HTTPResponse:
        return HTTPResponse.json({"error": {"message": "no such thing", "code": "bad"}}, status=400)

    app = HTTPServer({("POST", "/v1/chat/completions"): refuse})
    argv = [
        "demo",
        "--model",
        "m",
        "--price-in",
        "1",
        "--price-out",
        "1",
        "--questions",
        "2",
        "--json",
        "--no-plot",
    ]
    with run_in_thread(app) as server:
        code = main([*argv, "--base-url", server.url + "/v1"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out.strip().splitlines()[-1])
    for figures in data["strategies"].values():
        assert figures["accuracy"] == 0.0 and figures["max_usd"] == 0.0 and figures["stopped_early"] == 0.0
    assert "errors" in out
