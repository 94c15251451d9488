"""The command line: argument parsing, errors, the remote demo path and `python -m adaptive`."""

from __future__ import annotations

import json
import random
import runpy
import sys
from pathlib import Path

import pytest
from fakehttp import HTTPRequest, HTTPResponse, HTTPServer, run_in_thread

from adaptive import ConsistencyPrior, Price, __version__
from adaptive._posterior import beta_confidence
from adaptive.cli._demo import DEFAULT_BUDGET_USD, DEFAULT_CONCURRENCY, DEFAULT_QUESTIONS, STRATEGY_NAMES
from adaptive.cli._main import build_parser, demo_config, main
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
    captured = capsys.readouterr()
    out = captured.out
    # A demo whose calls failed measured nothing: it says how many failed, and why, and exits 1.
    assert code == 1
    data = json.loads(out.strip().splitlines()[-1])
    for figures in data["strategies"].values():
        assert figures["accuracy"] == 0.0 and figures["max_usd"] == 0.0 and figures["stopped_early"] == 0.0
    assert data["paired"]["difference"] == 0.0 and data["paired"]["usd_ratio"] is None
    assert "errors" in out and "spent nothing" in out
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("adaptive: ") and " of 10 calls failed" in line
    assert "first error: HTTPStatusError" in line and "no such thing" in line


def test_serve_sim_on_a_busy_port_or_a_bad_host_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve-sim", "--port", str(port)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"adaptive: error: cannot serve on 127.0.0.1:{port}") and "--port" in line
    # An address that is not this machine's (TEST-NET-1): binding fails at once, nothing is sent.
    assert main(["serve-sim", "--host", "192.0.2.1", "--port", "0"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("adaptive: error: cannot serve on 192.0.2.1:0") and "Traceback" not in line


# -- calibrate -------------------------------------------------------------------------------


def write_recorded(path: Path, questions: int = 24, samples: int = 10, seed: int = 0) -> list[list[str]]:
    """A synthetic recorded-samples file; returns each question's answers in recorded order.

    Samples alternate between texts ("... the answer is 7.") and pre-extracted answers padded
    with spaces, so both ways of reading an answer are exercised.
    """
    rng = random.Random(seed)
    answers: list[list[str]] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(questions):
            agree = 0.95 if i % 4 else 0.6  # mostly consistent, a few split questions
            drawn = [("7" if rng.random() < agree else str(rng.randint(1, 3))) for _ in range(samples)]
            recorded: list[object] = [
                f"Some work. So the answer is {a}." if j % 2 else {"answer": f" {a} ", "completion_tokens": 9}
                for j, a in enumerate(drawn)
            ]
            fh.write(json.dumps({"id": f"q/{i}", "prompt": None, "gold": "7", "samples": recorded}) + "\n")
            answers.append(drawn)
    return answers


def vote_map(answers: list[str]) -> dict[str, int]:
    votes: dict[str, int] = {}
    for a in answers:
        votes[a] = votes.get(a, 0) + 1
    return votes


def calibrate_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["calibrate", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert "Use it: Client(endpoint, prior=ConsistencyPrior.load(" in out
    data: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return data


def check_against(data: dict[str, object], expected: ConsistencyPrior, questions: int, out: Path) -> None:
    assert data["questions"] == questions
    assert data["out"] == str(out)
    assert data["mean_dominance"] == pytest.approx(float(expected.weights @ expected.d), abs=1e-12)
    confidence = data["confidence"]
    assert isinstance(confidence, dict)
    assert list(confidence) == ["2-0", "3-0", "3-1", "4-1", "5-2"]
    for key, row in confidence.items():
        v1, v2 = (int(x) for x in key.split("-"))
        assert row["fitted"] == pytest.approx(expected.confidence(v1, v2), abs=1e-12)
        assert row["uniform"] == beta_confidence(v1, v2)
    saved = ConsistencyPrior.load(out)
    assert saved.counts == expected.counts
    assert saved.confidence(3, 1) == pytest.approx(expected.confidence(3, 1), abs=1e-12)


def test_calibrate_on_recorded_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = write_recorded(tmp_path / "logs.jsonl")
    out = tmp_path / "prior.json"
    data = calibrate_json(capsys, str(tmp_path / "logs.jsonl"), "--out", str(out))
    expected = ConsistencyPrior()
    expected.fit(vote_map(a) for a in answers)
    check_against(data, expected, len(answers), out)
    # Consistent logs: two agreeing votes are worth more than under the uniform prior.
    confidence = data["confidence"]
    assert isinstance(confidence, dict)
    assert confidence["2-0"]["fitted"] > confidence["2-0"]["uniform"]


def test_calibrate_first_k_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = write_recorded(tmp_path / "logs.jsonl", seed=1)
    out = tmp_path / "early.json"
    data = calibrate_json(capsys, str(tmp_path / "logs.jsonl"), "--first", "3", "--out", str(out))
    expected = ConsistencyPrior()
    expected.fit(vote_map(a[:3]) for a in answers)
    check_against(data, expected, len(answers), out)
    assert sum(expected.counts.values()) == len(answers)
    assert max(v1 + v2 for v1, v2 in expected.counts) == 3


def test_calibrate_on_vote_logs_skips_questions_with_one_vote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = [{"A": 5}, {"A": 3, "B": 1, "C": 1}, {"x": 1}, {"7": 4, "8": 4}, {}, {"A": 6, "B": 0}]
    path = tmp_path / "votes.jsonl"
    path.write_text("\n".join(json.dumps({"votes": v}) for v in logs) + "\n\n", encoding="utf-8")
    out = tmp_path / "votes-prior.json"
    data = calibrate_json(capsys, str(path), "--out", str(out))
    expected = ConsistencyPrior()
    expected.fit(logs)
    check_against(data, expected, 4, out)


def test_calibrate_lines_are_split_at_newlines_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A raw U+2028 inside a JSON string (ensure_ascii=False) does not end a line; nor does \r\n split twice.
    logs = [{"a\u2028b": 3, "c\x0cd": 1}, {"x": 2}]
    path = tmp_path / "votes.jsonl"
    path.write_text("\r\n".join(json.dumps({"votes": v}, ensure_ascii=False) for v in logs), encoding="utf-8")
    out = tmp_path / "p.json"
    data = calibrate_json(capsys, str(path), "--out", str(out))
    expected = ConsistencyPrior()
    expected.fit(logs)
    check_against(data, expected, 2, out)


def test_calibrate_on_a_mixed_file_with_the_default_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = write_recorded(tmp_path / "logs.jsonl", questions=6, seed=2)
    with (tmp_path / "logs.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"votes": {"a": 2, "b": 2}}) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "logs.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "ConsistencyPrior.load('adaptive-prior.json')" in out and "{" not in out.splitlines()[-1]
    expected = ConsistencyPrior()
    expected.fit([*(vote_map(a) for a in answers), {"a": 2, "b": 2}])
    assert ConsistencyPrior.load(tmp_path / "adaptive-prior.json").counts == expected.counts


def test_calibrate_reads_text_samples_with_the_chosen_extractor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "boxed.jsonl"
    rows = [
        {"id": "a", "samples": [r"so \boxed{4}", r"\boxed{4.0}", "The answer is 5.", r"\boxed{ 5 }"]},
        {"id": "b", "samples": [r"\boxed{1}", r"\boxed{2}"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "p.json"
    data = calibrate_json(capsys, str(path), "--extract", "boxed", "--out", str(out))
    expected = ConsistencyPrior()
    expected.fit([(2, 1), (1, 1)])  # "4" == "4.0" after normalising; "The answer is 5." has no box
    check_against(data, expected, 2, out)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"votes": {"a": 3}}', '{"answer": "7"}'], "bad.jsonl:2: each line must be a recorded question"),
        (['{"votes": {"a": 3}}', "", "[1, 2]"], "bad.jsonl:3: each line must be"),
        (["{not json"], "bad.jsonl:1: not valid JSON"),
        (['{"votes": {"a": -1}}'], "bad.jsonl:1: the count of answer 'a' must be a whole number"),
        (['{"votes": {"a": 2.5}}'], "bad.jsonl:1: the count of answer 'a'"),
        (['{"votes": [3, 1]}'], "bad.jsonl:1: 'votes' must be an object"),
        (['{"samples": ["x"]}'], "bad.jsonl:1: each line needs an 'id' and a 'samples' list"),
        (['{"id": "q", "samples": "x"}'], "bad.jsonl:1: each line needs an 'id'"),
        (['{"id": "q", "samples": [7]}'], "bad.jsonl:1 sample 0: a sample must be a string or an object"),
        (['{"id": "q", "samples": [{"score": 1}]}'], "needs 'text' or 'answer'"),
        (['{"id": "q", "samples": [{"text": "x", "completion_tokens": "many"}]}'], "malformed field"),
        (['{"votes": {"a": 1}}', '{"id": "q", "samples": ["no answer here"]}'], "nothing to fit"),
        ([], "nothing to fit"),
    ],
)
def test_calibrate_bad_logs_exit_2(
    lines: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert main(["calibrate", str(path), "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adaptive: error: ") and message in err
    assert not (tmp_path / "p.json").exists()


def test_calibrate_missing_file_bad_extractor_and_bad_output_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calibrate", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    write_recorded(tmp_path / "logs.jsonl", questions=3)
    assert main(["calibrate", str(tmp_path / "logs.jsonl"), "--extract", "no-such-extractor"]) == 2
    assert "--extract: unknown extractor 'no-such-extractor'" in capsys.readouterr().err
    out = tmp_path / "missing-folder" / "p.json"
    assert main(["calibrate", str(tmp_path / "logs.jsonl"), "--out", str(out)]) == 2
    assert "cannot save the prior" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["calibrate"], ["calibrate", "x.jsonl", "--first", "0"]])
def test_calibrate_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_help_lists_calibrate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "calibrate" in capsys.readouterr().out


# -- run -----------------------------------------------------------------------------------

WORD_PROBLEM = "Mia has 12 apples. She buys 5 more apples. How many apples does Mia have now?"


def test_run_answers_on_the_simulator_and_prints_the_receipt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", WORD_PROBLEM, "--budget-usd", "0.01", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("answer      '17'") and "cost        $" in out and "stopped by" in out


def test_run_json_is_one_object_with_the_receipts_figures(capsys: pytest.CaptureFixture[str]) -> None:
    config = '{"name": "self-consistency", "n": 3}'
    assert main(["run", WORD_PROBLEM, "--strategy", config, "--budget-tokens", "5000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["answer"] == "17" and data["samples"] == 3 and data["strategy"] == "self-consistency"
    assert data["stop_reason"] == "strategy_done" and data["usage"]["total_tokens"] <= 5000
    assert data["cost_usd"] > 0 and data["warnings"] == [] and data["overruns"] == 0


def test_run_against_an_openai_compatible_server(capsys: pytest.CaptureFixture[str]) -> None:
    with run_in_thread(SimServer().app) as server:
        code = main(
            ["run", WORD_PROBLEM, "--base-url", server.url + "/v1", "--model", "sim-reasoner", "--json"]
        )
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["answer"] == "17" and data["samples"] >= 1


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "q", "--strategy", "{bad"], "--strategy: not valid JSON"),
        (["run", "q", "--strategy", "[1]"], "a JSON config is an object"),
        (["run", "q", "--strategy", "best_of_n"], "it is called 'best-of-n'"),
        (["run", "q", "--model", "m"], "go with --base-url"),
        (["run", "q", "--base-url", "http://127.0.0.1:9/v1"], "--base-url needs --model"),
        (["run", "q", "--budget-usd", "0.00001"], "BudgetTooSmallError"),
    ],
)
def test_run_errors_are_one_line_and_non_zero(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code != 0
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_run_shows_live_progress_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then takes stderr for a terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert main(["run", WORD_PROBLEM, "--seed", "2"]) == 0
    captured = capsys.readouterr()
    assert "round 0:" in captured.err and "confidence" in captured.err  # the live status line
    assert "answer" in captured.out and "'17'" in captured.out


def test_every_install_hint_names_the_distribution_not_the_import_package() -> None:
    # `pip install 'adaptive[...]'` would install python-adaptive from PyPI, another project.
    import re
    from pathlib import Path

    root = Path(__file__).parents[1]
    wrong = [
        f"{path.relative_to(root)}: {m.group(0)}"
        for folder in ("adaptive", "strategies")
        for path in sorted((root / folder).rglob("*.py"))
        for m in re.finditer(r"pip install '?adaptive\[", path.read_text())
    ]
    assert wrong == []
