"""Every answer is validated before it counts: usage and choices (issue #9, "No silent failure").

Against a loopback server, for OpenAI chat, OpenAI completions and Anthropic, streamed and not.
"""

from __future__ import annotations

from typing import Any

import pytest
from loopback_wire import ANTHROPIC, CHAT, COMPLETIONS, KINDS, Kind, scripted, sse

from adaptive import ResponseError, StreamError, Usage
from adaptive.endpoints import PLAUSIBLE_FACTOR, PLAUSIBLE_SLACK

STREAM = [False, True]

# (prompt count, completion count, the field the message must name)
BAD_USAGE: list[tuple[Any, Any, str]] = [
    (5, -5, "completion"),
    (-1, 3, "prompt"),
    (True, 3, "prompt"),
    (5, False, "completion"),
    (5, 2.5, "completion"),
    (5, "3", "completion"),
    (5, 10**9, "completion"),
    (10**12, 3, "prompt"),
]


def field(kind: Kind, which: str) -> str:
    if kind.anthropic:
        return "input_tokens" if which == "prompt" else "output_tokens"
    return f"{which}_tokens"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("stream", STREAM, ids=["json", "stream"])
@pytest.mark.parametrize(("prompt", "completion", "which"), BAD_USAGE)
async def test_bad_usage_is_a_response_error_naming_the_field(
    kind: Kind, stream: bool, prompt: Any, completion: Any, which: str
) -> None:
    async with scripted() as (fake, url), kind.endpoint(url, stream=stream) as ep:
        fake.reply = lambda req: kind.answer(["hello there"], kind.usage(prompt, completion), stream=stream)
        with pytest.raises(ResponseError) as info:
            await ep.request(kind.request())
    error = info.value
    assert not isinstance(error, StreamError), "a validation failure is not a cut stream"
    assert field(kind, which) in str(error)
    bad = prompt if which == "prompt" else completion
    assert repr(bad) in str(error) or str(bad) in str(error)
    # The usage failed the checks: the ledger must charge the reserved worst case.
    assert error.usage is None


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize("stream", STREAM, ids=["json", "stream"])
async def test_sane_usage_still_counts(kind: Kind, stream: bool) -> None:
    async with scripted() as (fake, url), kind.endpoint(url, stream=stream) as ep:
        fake.reply = lambda req: kind.answer(["hello there"], kind.usage(7, 3), stream=stream)
        response = await ep.request(kind.request())
    assert response.usage_reported
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (7, 3)


def test_the_plausibility_rule_is_the_documented_one() -> None:
    from adaptive.endpoints._checks import plausible_limit

    request = CHAT.request(n=2, max_tokens=16)
    from adaptive._ledger import prompt_token_bound

    expected = PLAUSIBLE_FACTOR * (prompt_token_bound(request) + 2 * 16) + PLAUSIBLE_SLACK
    assert plausible_limit(request) == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [CHAT, COMPLETIONS], ids=lambda k: k.name)
@pytest.mark.parametrize("stream", STREAM, ids=["json", "stream"])
@pytest.mark.parametrize(
    ("texts", "indices"),
    [
        (["only one"], [0]),  # fewer choices than n
        (["a b", "c d", "e f"], [0, 1, 2]),  # more than n
        (["a b", "c d"], [0, 0]),  # one index for both (a gateway's legacy completions stream)
        (["a b", "c d"], [0, 5]),  # out of range
    ],
    ids=["too-few", "too-many", "duplicate", "out-of-range"],
)
async def test_choices_other_than_n_distinct_indices_are_refused(
    kind: Kind, stream: bool, texts: list[str], indices: list[int]
) -> None:
    usage = kind.usage(5, 4)
    async with scripted() as (fake, url), kind.endpoint(url, stream=stream) as ep:
        fake.reply = lambda req: kind.answer(texts, usage, stream=stream, indices=indices)
        with pytest.raises(ResponseError) as info:
            await ep.request(kind.request(n=2))
    error = info.value
    assert "choice" in str(error)
    assert not isinstance(error, StreamError)
    # The usage, when it had arrived and was sane, is what the server billed: it travels on.
    if error.usage is not None:
        assert error.usage == Usage(prompt_tokens=5, completion_tokens=4)
    elif not stream:
        pytest.fail("a complete answer with sane usage must carry it on the error")


@pytest.mark.asyncio
async def test_a_gateway_numbering_every_streamed_choice_zero_is_not_merged() -> None:
    # The probe from the issue: a legacy completions stream with n=2 whose chunks all say
    # index 0 used to come back as one garbled completion "a b c d".
    kind = COMPLETIONS
    async with scripted() as (fake, url), kind.endpoint(url, stream=True) as ep:
        fake.reply = lambda req: kind.answer(["a b", "c d"], kind.usage(5, 4), stream=True, indices=[0, 0])
        with pytest.raises(ResponseError, match="choice 0"):
            await ep.request(kind.request(n=2))


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", STREAM, ids=["json", "stream"])
@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 5, "completion_tokens": 3, "completion_tokens_details": {"reasoning_tokens": 9}},
        {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 6}},
        {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": -1}},
        {"prompt_tokens": 5},
        "lots",
    ],
    ids=["reasoning>completion", "cached>prompt", "negative-cached", "no-completion", "not-an-object"],
)
async def test_inconsistent_or_incomplete_openai_usage_is_refused(stream: bool, usage: Any) -> None:
    async with scripted() as (fake, url), CHAT.endpoint(url, stream=stream) as ep:
        fake.reply = lambda req: CHAT.answer(["hi"], usage, stream=stream)
        with pytest.raises(ResponseError, match="usage") as info:
            await ep.request(CHAT.request())
    assert info.value.usage is None


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", STREAM, ids=["json", "stream"])
async def test_anthropic_usage_without_its_counts_is_refused(stream: bool) -> None:
    async with scripted() as (fake, url), ANTHROPIC.endpoint(url, stream=stream) as ep:
        if stream:
            events = ANTHROPIC.events(["hi"], ANTHROPIC.usage(5, 3))
            events[4]["usage"] = {"output_tokens": None}  # message_delta
            from loopback_wire import sse

            fake.reply = lambda req: sse(events)
        else:
            fake.reply = lambda req: ANTHROPIC.answer(["hi"], {"input_tokens": 5}, stream=False)
        with pytest.raises(ResponseError, match="output_tokens"):
            await ep.request(ANTHROPIC.request())


@pytest.mark.asyncio
async def test_a_missing_usage_object_is_estimated_and_marked() -> None:
    # Not an error: many servers send no usage. The response says it is an estimate.
    async with scripted() as (fake, url), CHAT.endpoint(url) as ep:
        fake.reply = lambda req: CHAT.answer(["hi"], None, stream=False)
        response = await ep.request(CHAT.request())
    assert not response.usage_reported


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [CHAT, COMPLETIONS], ids=lambda k: k.name)
@pytest.mark.parametrize("stream", STREAM, ids=["json", "stream"])
@pytest.mark.parametrize(
    ("texts", "indices", "returned"),
    [
        (["only one"], [0], 1),
        (["a b", "c d", "e f"], [0, 1, 2], 3),
        (["a b", "c d"], [0, 0], 2),
        (["a b", "c d"], [0, 5], 2),
    ],
    ids=["too-few", "too-many", "duplicate", "out-of-range"],
)
async def test_a_refused_choice_count_says_how_many_choices_came(
    kind: Kind, stream: bool, texts: list[str], indices: list[int], returned: int
) -> None:
    # The controller books `choices` samples: more than n is an overrun, not a quiet failure.
    async with scripted() as (fake, url), kind.endpoint(url, stream=stream) as ep:
        fake.reply = lambda req: kind.answer(texts, kind.usage(5, 4), stream=stream, indices=indices)
        with pytest.raises(ResponseError) as info:
            await ep.request(kind.request(n=2))
    assert info.value.choices == returned


def test_a_response_error_has_no_choice_count_by_default() -> None:
    assert ResponseError("x").choices is None


def _interleaved(kind: Kind, texts: list[str], indices: list[int]) -> list[Any]:
    """A stream sending the choices token by token, in turn, then each one's finish_reason."""
    chunks: list[Any] = []
    words = [t.split(" ") for t in texts]
    for step in range(max(len(w) for w in words)):
        for i, ws in zip(indices, words, strict=True):
            if step < len(ws):
                piece = {"text": ws[step]} if kind.name == "completions" else {"delta": {"content": ws[step]}}
                chunks.append({"id": "s", "choices": [{"index": i, "finish_reason": None, **piece}]})
    for i in indices:
        end = {"text": ""} if kind.name == "completions" else {"delta": {}}
        chunks.append({"id": "s", "choices": [{"index": i, "finish_reason": "stop", **end}]})
    chunks.append({"id": "s", "choices": [], "usage": kind.usage(5, 6)})
    return [*chunks, "[DONE]"]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [CHAT, COMPLETIONS], ids=lambda k: k.name)
async def test_an_interleaved_stream_with_a_repeated_index_is_refused(kind: Kind) -> None:
    # Three choices for n=2, the third sent under index 0 while choice 0 is still streaming
    # (fault seed 81): no output after a finish, but index 0 finishes twice.
    events = _interleaved(kind, ["a b", "c d", "a b"], [0, 1, 0])
    async with scripted() as (fake, url), kind.endpoint(url, stream=True) as ep:
        fake.reply = lambda req: sse(events)
        with pytest.raises(ResponseError, match="choice 0") as info:
            await ep.request(kind.request(n=2))
    assert info.value.choices == 3


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [CHAT, COMPLETIONS], ids=lambda k: k.name)
async def test_an_interleaved_stream_with_distinct_indices_still_counts(kind: Kind) -> None:
    events = _interleaved(kind, ["a b", "c d"], [0, 1])
    async with scripted() as (fake, url), kind.endpoint(url, stream=True) as ep:
        fake.reply = lambda req: sse(events)
        response = await ep.request(kind.request(n=2))
    assert [c.text for c in response.completions] == ["ab", "cd"]
