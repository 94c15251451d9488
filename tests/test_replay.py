"""Replay of recorded samples: loading, drawing without replacement, usage, and full runs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency

from adaptive import (
    Client,
    ConfigError,
    ControllerConfig,
    Message,
    ReplayEndpoint,
    Request,
    ResponseError,
    ac_beta,
    normalize_answer,
)
from adaptive._ledger import prompt_token_bound
from adaptive.endpoints import RecordedQuestion, RecordedSample, load_recorded

SHARED = Path(__file__).parents[2] / "shared" / "data"


def write(tmp_path: Path, rows: list[Any], name: str = "samples.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def ask(text: str, **kwargs: Any) -> Request:
    return Request(messages=(Message(role="user", content=text),), **kwargs)


ROWS = [
    {
        "id": "q/0",
        "prompt": "Add 2 and 2.",
        "gold": "4",
        "samples": [f"The answer is {i}." for i in range(6)],
    },
    {
        "id": "q/1",
        "prompt": None,
        "gold": 18,
        "samples": [
            {"answer": "18", "completion_tokens": 107},
            {"text": "so 18", "answer": "18.0"},
            {"text": "abcdefghij"},
            {"text": "x", "logprobs": [-0.5, -0.25, -1.0]},
            {"answer": "17", "completion_tokens": 3, "score": 0.25},
        ],
    },
]


# -- loading -----------------------------------------------------------------------------


def test_load_recorded(tmp_path: Path) -> None:
    path = write(tmp_path, [ROWS[0], "", ROWS[1]])  # blank lines are skipped
    qs = load_recorded(path)
    assert [q.id for q in qs] == ["q/0", "q/1"]
    assert qs[0].prompt == "Add 2 and 2." and qs[0].gold == "4"
    assert qs[1].prompt is None and qs[1].gold == "18"  # gold is kept as text
    assert qs[0].samples[2] == RecordedSample(text="The answer is 2.")
    assert qs[1].samples[0] == RecordedSample(answer="18", completion_tokens=107)
    assert qs[1].samples[3].logprobs == (-0.5, -0.25, -1.0)
    assert qs[1].samples[4].score == 0.25


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"prompt": "p", "samples": []}), "needs an 'id'"),
        (json.dumps({"id": "x", "samples": "abc"}), "'samples' list"),
        (json.dumps(["id", "samples"]), "needs an 'id'"),
        (json.dumps({"id": "x", "samples": ["ok", 5]}), "sample 1: a sample must be a string or an object"),
        (
            json.dumps({"id": "x", "samples": [{"score": 1.0}]}),
            "sample 0: a sample object needs 'text' or 'answer'",
        ),
    ],
)
def test_load_errors_name_the_line(tmp_path: Path, bad: str, fragment: str) -> None:
    path = write(tmp_path, [ROWS[0], "", bad])
    with pytest.raises(ConfigError) as info:
        load_recorded(path)
    message = str(info.value)
    assert f"{path}:3" in message
    assert fragment in message


# -- drawing -----------------------------------------------------------------------------


def questions() -> list[RecordedQuestion]:
    return [
        RecordedQuestion("a", "Question A?", "1", tuple(RecordedSample(text=f"t{i}") for i in range(8))),
        RecordedQuestion("b", None, None, (RecordedSample(text="only"),)),
    ]


async def draw_all(ep: ReplayEndpoint, prompt: str, count: int) -> list[str]:
    out: list[str] = []
    for _ in range(count):
        response = await ep.request(ask(prompt))
        out.extend(c.text for c in response.completions)
    return out


@pytest.mark.asyncio
async def test_recorded_order_without_replacement_then_exhaustion() -> None:
    ep = ReplayEndpoint(questions(), shuffle=False)
    assert await draw_all(ep, "Question A?", 8) == [f"t{i}" for i in range(8)]
    assert ep.drawn("a") == 8
    with pytest.raises(ResponseError, match="all 8 recorded samples of question 'a' are used up"):
        await ep.request(ask("Question A?"))
    ep.reset()
    assert await draw_all(ep, "Question A?", 1) == ["t0"]


@pytest.mark.asyncio
async def test_seeded_shuffle_is_a_reproducible_permutation() -> None:
    a = await draw_all(ReplayEndpoint(questions(), seed=3), "Question A?", 8)
    b = await draw_all(ReplayEndpoint(questions(), seed=3), "Question A?", 8)
    others = [await draw_all(ReplayEndpoint(questions(), seed=s), "Question A?", 8) for s in range(4, 8)]
    assert a == b
    assert sorted(a) == [f"t{i}" for i in range(8)]  # without replacement: each sample once
    assert any(o != a for o in others)
    ep = ReplayEndpoint(questions(), seed=3)
    assert [f"t{i}" for i in ep.order("a")] == a
    ep.reset(seed=4)
    assert await draw_all(ep, "Question A?", 8) == others[0]


@pytest.mark.asyncio
async def test_n_draws_several_at_once() -> None:
    ep = ReplayEndpoint(questions(), shuffle=False)
    response = await ep.request(ask("Question A?", n=3))
    assert [c.text for c in response.completions] == ["t0", "t1", "t2"]
    assert [c.index for c in response.completions] == [0, 1, 2]
    response = await ep.request(ask("Question A?", n=10))  # only 5 left: the rest of the pool
    assert len(response.completions) == 5


@pytest.mark.asyncio
async def test_null_prompt_is_addressed_by_id_and_raw_prompts_work() -> None:
    qs = questions()
    ep = ReplayEndpoint(qs)
    tag = ReplayEndpoint.prompt_for(qs[1])
    assert tag == "[recorded question b]"
    assert ReplayEndpoint.prompt_for(qs[0]) == "Question A?"
    assert (await ep.request(ask(tag))).completions[0].text == "only"
    raw = await ep.request(Request(prompt="Question A?"))
    assert len(raw.completions) == 1
    with pytest.raises(ResponseError, match="no recorded question has this prompt"):
        await ep.request(ask("Some other question"))


@pytest.mark.asyncio
async def test_question_is_found_by_the_last_user_message() -> None:
    ep = ReplayEndpoint(questions(), shuffle=False)
    request = Request(
        messages=(
            Message(role="system", content="Be careful."),
            Message(role="user", content="Question A?"),
        )
    )
    assert (await ep.request(request)).completions[0].text == "t0"


@pytest.mark.asyncio
async def test_usage_from_completion_tokens_or_an_estimate(tmp_path: Path) -> None:
    ep = ReplayEndpoint(load_recorded(write(tmp_path, ROWS)), shuffle=False)
    prompt = ReplayEndpoint.prompt_for(ep.questions["q/1"])
    request = ask(prompt, max_tokens=100, logprobs=True)
    expected_prompt = -(-prompt_token_bound(request) // 4)
    got = [await ep.request(request) for _ in range(5)]
    tokens = [r.completions[0].completion_tokens for r in got]
    # 107 capped by max_tokens; "so 18" -> 2; "abcdefghij" -> 3; three logprobs -> 3; recorded 3.
    assert tokens == [100, 2, 3, 3, 3]
    assert [r.usage.completion_tokens for r in got] == tokens
    assert all(r.usage.prompt_tokens == expected_prompt for r in got)
    assert [r.usage_reported for r in got] == [True, False, False, False, True]
    assert got[3].completions[0].logprobs is not None
    assert [lp.logprob for lp in got[3].completions[0].logprobs] == [-0.5, -0.25, -1.0]
    assert got[0].completions[0].answer == "18" and got[1].completions[0].answer == "18.0"
    assert got[4].completions[0].score == 0.25
    assert RecordedSample(text="").tokens() == 1


def test_replay_is_free_unless_priced() -> None:
    ep = ReplayEndpoint(questions())
    assert ep.price is not None and ep.price.input == 0 and ep.price.output == 0
    assert ep.supports_n and ep.supports_raw


# -- full runs ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_self_consistency_over_recorded_samples(tmp_path: Path) -> None:
    ep = ReplayEndpoint(load_recorded(write(tmp_path, ROWS)), seed=1)
    client = Client(ep)
    result = await client.run(ReplayEndpoint.prompt_for(ep.questions["q/1"]), strategy=SelfConsistency(n=5))
    assert result.votes == {"18": 2, "17": 1}  # pre-extracted answers normalized; 2 abstain
    assert result.answer == "18"
    assert result.generated == 5


@pytest.mark.asyncio
async def test_running_past_the_pool_raises_with_a_receipt(tmp_path: Path) -> None:
    ep = ReplayEndpoint(load_recorded(write(tmp_path, ROWS)), shuffle=False)
    client = Client(ep, controller=ControllerConfig(max_batch=4))
    with pytest.raises(ResponseError, match="used up") as info:
        await client.run("Add 2 and 2.", strategy=SelfConsistency(n=9))
    assert info.value.receipt.generated == 6


def _majority(q: RecordedQuestion) -> str | None:
    answers = [normalize_answer(s.answer) for s in q.samples if s.answer is not None]
    return Counter(answers).most_common(1)[0][0] if answers else None


@pytest.mark.asyncio
async def test_adaptive_consistency_on_shared_recorded_data(tmp_path: Path) -> None:
    path = SHARED / "consol-gpt4omini-gsm8k" / "samples.jsonl"
    if not path.exists():
        pytest.skip("shared recorded data is not available")
    with path.open(encoding="utf-8") as fh:
        lines = [next(fh) for _ in range(20)]
    qs = load_recorded(write(tmp_path, [line.rstrip("\n") for line in lines]))
    ep = ReplayEndpoint(qs, seed=0)
    client = Client(ep, controller=ControllerConfig(calibrate=False))
    agree = 0
    drawn = 0
    for q in qs:
        result = await client.run(
            ReplayEndpoint.prompt_for(q), strategy=AdaptiveConsistency(max_samples=40), stop=ac_beta(0.95)
        )
        assert result.generated == ep.drawn(q.id) <= len(q.samples)
        drawn += result.generated
        agree += result.answer == _majority(q)
    assert drawn < 20 * 40 / 2  # stopping early saves most of the samples
    assert agree >= 17  # and nearly always lands on the 40-sample majority


def test_a_malformed_sample_field_is_a_config_error_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "q", "samples": [{"text": "x", "completion_tokens": "many"}]}])
    with pytest.raises(ConfigError, match=r"samples.jsonl:1 sample 0: a malformed field"):
        load_recorded(path)


def test_a_missing_recorded_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.jsonl: no such file"):
        load_recorded(tmp_path / "nope.jsonl")
