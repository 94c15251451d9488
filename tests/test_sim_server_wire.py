"""serve-sim's wire edges: refused parameters, bad bodies, /v1/models/{id}, the Anthropic route,
and the official `openai` and `anthropic` clients parsing its answers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import anthropic
import httpx
import openai
import pytest

from adaptive import Anthropic, Message, OpenAIChat, Request
from adaptive.sim import (
    STEP_DELIMITER,
    RunningServer,
    SimModel,
    SimServer,
    demo_problems,
    run_app_in_thread,
    serve_sim,
    simulate_response,
)

QUESTION = demo_problems(3, seed=11)[0].question
MODEL = SimModel()
USER = [{"role": "user", "content": QUESTION}]


async def post(server: RunningServer, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient() as http:
        return await http.post(
            server.url + path, content=content, headers={"content-type": "application/json"}
        )


CHAT = {"model": "sim-reasoner", "messages": USER}
MESSAGES = {"model": "sim-reasoner", "messages": USER, "max_tokens": 64}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "base", "name", "value"),
    [
        ("/v1/chat/completions", CHAT, "tools", [{"type": "function", "function": {"name": "f"}}]),
        ("/v1/chat/completions", CHAT, "tool_choice", "auto"),
        ("/v1/chat/completions", CHAT, "response_format", {"type": "json_object"}),
        ("/v1/chat/completions", CHAT, "frequency_penalty", 0.5),
        ("/v1/chat/completions", CHAT, "logit_bias", {"42": 5}),
        ("/v1/chat/completions", CHAT, "reasoning_effort", "high"),
        ("/v1/completions", {"model": "sim-reasoner", "prompt": QUESTION}, "best_of", 3),
        ("/v1/reward", {"question": QUESTION, "solution": "The answer is 1."}, "temperature", 0.5),
        ("/v1/messages", MESSAGES, "tools", [{"name": "f", "input_schema": {"type": "object"}}]),
        ("/v1/messages", MESSAGES, "thinking", {"type": "enabled", "budget_tokens": 1024}),
        ("/v1/messages", MESSAGES, "top_k", 5),
    ],
)
async def test_a_parameter_it_cannot_honour_is_refused_by_name(
    path: str, base: dict[str, Any], name: str, value: Any
) -> None:
    async with serve_sim() as server:
        response = await post(server, path, base | {name: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == name
    assert error["code"] == "unsupported_parameter"
    assert name in error["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", CHAT | {"messages": [USER[0] | {"name": "bob"}]}, "messages[0].name"),
        (
            "/v1/chat/completions",
            CHAT | {"messages": [*USER, {"role": "assistant", "content": "", "tool_calls": [{}]}]},
            "messages[1].tool_calls",
        ),
        (
            "/v1/chat/completions",
            CHAT | {"stream": True, "stream_options": {"include_obfuscation": True}},
            "stream_options.include_obfuscation",
        ),
        (
            "/v1/messages",
            MESSAGES | {"messages": [USER[0] | {"cache_control": {}}]},
            "messages[0].cache_control",
        ),
    ],
)
async def test_a_nested_field_it_cannot_honour_is_refused_by_name(
    path: str, body: dict[str, Any], param: str
) -> None:
    async with serve_sim() as server:
        response = await post(server, path, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.asyncio
async def test_defaults_and_labels_it_honours_are_accepted() -> None:
    extra = {"user": "u-1", "metadata": {"run": "a"}, "frequency_penalty": 0, "presence_penalty": 0.0}
    async with serve_sim() as server:
        plain = await post(server, "/v1/chat/completions", CHAT | {"seed": 3})
        labelled = await post(server, "/v1/chat/completions", CHAT | {"seed": 3} | extra | {"tools": None})
    assert plain.status_code == labelled.status_code == 200
    assert plain.json()["choices"] == labelled.json()["choices"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"model": ' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
async def test_malformed_bodies_get_400_not_500(body: bytes, says: str) -> None:
    async with serve_sim() as server:
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/reward"):
            response = await post(server, path, body)
            assert response.status_code == 400, (path, response.text)
            assert says in response.json()["error"]["message"]


@pytest.mark.asyncio
async def test_an_oversized_body_gets_413() -> None:
    from adaptive.sim import ServerLimits

    async with serve_sim(limits=ServerLimits(max_body_bytes=4096)) as server:
        big = CHAT | {"messages": [{"role": "user", "content": "x" * 5000}]}
        response = await post(server, "/v1/chat/completions", big)
    assert response.status_code == 413
    assert "4096 bytes" in response.json()["error"]["message"]


@pytest.mark.asyncio
async def test_models_by_id() -> None:
    async with serve_sim() as server, httpx.AsyncClient() as http:
        listed = (await http.get(server.url + "/v1/models")).json()["data"]
        for model in listed:
            one = await http.get(server.url + "/v1/models/" + model["id"])
            assert one.status_code == 200 and one.json() == model
        missing = await http.get(server.url + "/v1/models/gpt-nope")
        assert missing.status_code == 404
        error = missing.json()["error"]
        assert error["code"] == "model_not_found" and "gpt-nope" in error["message"]
        wrong = await http.post(server.url + "/v1/models/sim-reasoner")
        assert wrong.status_code == 405 and "not allowed" in wrong.json()["error"]["message"]
        nowhere = await http.get(server.url + "/v2/anything")
        assert nowhere.status_code == 404 and "no route" in nowhere.json()["error"]["message"]


# ---------------------------------------------------------------- Anthropic Messages


def anthropic_endpoint(server: RunningServer, **kw: Any) -> Anthropic:
    return Anthropic("sim-reasoner", base_url=server.url, api_key="sk-ant-test", price=MODEL.price, **kw)


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_the_anthropic_endpoint_gets_the_simulated_answer(stream: bool) -> None:
    request = Request(messages=(Message(role="user", content=QUESTION),), max_tokens=200)
    # A fresh server's first request without a seed takes auto seed 0.
    want = simulate_response(MODEL, request, auto_seed=0).completions[0]
    want_usage = simulate_response(MODEL, request, auto_seed=0).usage
    async with serve_sim() as server, anthropic_endpoint(server, stream=stream) as endpoint:
        got = await endpoint.request(request)
    assert got.completions[0].text == want.text
    assert got.completions[0].finish_reason == want.finish_reason
    assert got.usage.prompt_tokens == want_usage.prompt_tokens
    assert got.usage.completion_tokens == want_usage.completion_tokens
    assert got.usage_reported


@pytest.mark.asyncio
async def test_the_anthropic_stream_is_the_real_event_sequence() -> None:
    async with serve_sim() as server, httpx.AsyncClient() as http:
        body = MESSAGES | {"stream": True, "max_tokens": 12}
        async with http.stream("POST", server.url + "/v1/messages", json=body) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            text = (await resp.aread()).decode()
    events = []
    for block in text.strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        name = name_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append(data)
    kinds = [e["type"] for e in events]
    deltas = kinds.count("content_block_delta")
    assert deltas >= 1
    assert kinds == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, final = events[0], events[-2]
    assert start["message"]["usage"]["input_tokens"] > 0 and start["message"]["content"] == []
    assert final["delta"]["stop_reason"] == "max_tokens"
    assert final["usage"]["output_tokens"] == 12 == deltas


@pytest.mark.asyncio
async def test_a_stop_sequence_is_named() -> None:
    async with serve_sim() as server:
        stopped = await post(
            server, "/v1/messages", MESSAGES | {"max_tokens": 500, "stop_sequences": ["\n\n"]}
        )
        natural = await post(server, "/v1/messages", MESSAGES | {"max_tokens": 2000})
    assert stopped.status_code == natural.status_code == 200
    assert stopped.json()["stop_reason"] == "stop_sequence"
    assert stopped.json()["stop_sequence"] == "\n\n"
    assert natural.json()["stop_reason"] == "end_turn" and natural.json()["stop_sequence"] is None


@pytest.mark.asyncio
async def test_anthropic_errors_use_anthropic_s_shape() -> None:
    async with serve_sim() as server:
        unknown = await post(server, "/v1/messages", MESSAGES | {"model": "claude-nope"})
        no_max = await post(server, "/v1/messages", {"model": "sim-reasoner", "messages": USER})
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "error" and unknown.json()["error"]["type"] == "not_found_error"
    assert no_max.status_code == 400 and no_max.json()["error"]["param"] == "max_tokens"


# ---------------------------------------------------------------- the official clients


def test_the_official_clients_parse_serve_sim() -> None:
    seeded = Request(messages=(Message(role="user", content=QUESTION),), seed=5, n=2, max_tokens=300)
    want = simulate_response(MODEL, seeded)
    with run_app_in_thread(SimServer().app) as server:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0) as oai:
            done = oai.chat.completions.create(
                model="sim-reasoner",
                messages=USER,
                seed=5,
                n=2,
                max_tokens=300,  # type: ignore[arg-type]
            )
            assert [c.message.content for c in done.choices] == [c.text for c in want.completions]
            assert done.usage is not None and done.usage.completion_tokens == want.usage.completion_tokens
            chunks = list(
                oai.chat.completions.create(
                    model="sim-reasoner",
                    messages=USER,  # type: ignore[arg-type]
                    seed=5,
                    n=2,
                    max_tokens=300,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            texts = ["", ""]
            for chunk in chunks:
                for choice in chunk.choices:
                    texts[choice.index] += choice.delta.content or ""
            assert texts == [c.text for c in want.completions]
            assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == want.usage.total_tokens
            legacy = oai.completions.create(
                model="sim-reasoner", prompt=QUESTION + "\n\n", seed=2, max_tokens=40, stop=[STEP_DELIMITER]
            )
            assert legacy.choices[0].text
            assert {m.id for m in oai.models.list()} == {"sim-reasoner", "sim-verifier"}
            with pytest.raises(openai.BadRequestError, match="response_format"):
                oai.chat.completions.create(
                    model="sim-reasoner",
                    messages=USER,  # type: ignore[arg-type]
                    response_format={"type": "json_object"},
                )
            with pytest.raises(openai.NotFoundError):
                oai.models.retrieve("gpt-nope")
        with anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0) as ant:
            message = ant.messages.create(model="sim-reasoner", max_tokens=300, messages=USER)  # type: ignore[arg-type]
            with ant.messages.stream(model="sim-reasoner", max_tokens=300, messages=USER) as stream:  # type: ignore[arg-type]
                streamed = stream.get_final_message()
            assert message.content[0].type == "text" and streamed.content[0].type == "text"
            # Two requests without a seed: two auto seeds, each answer whole with its usage.
            for got in (message, streamed):
                assert got.stop_reason in ("end_turn", "max_tokens")
                assert got.usage.input_tokens > 0 and got.usage.output_tokens > 0
            assert streamed.usage.input_tokens == message.usage.input_tokens
            with pytest.raises(anthropic.NotFoundError):
                ant.messages.create(model="claude-nope", max_tokens=5, messages=USER)  # type: ignore[arg-type]


def test_chat_through_openai_and_adaptive_agree() -> None:
    # The same seeded request through the official client and through OpenAIChat.
    request = Request(messages=(Message(role="user", content=QUESTION),), seed=8, max_tokens=120)
    with run_app_in_thread(SimServer().app) as server:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0) as oai:
            official = oai.chat.completions.create(
                model="sim-reasoner",
                messages=USER,
                seed=8,
                max_tokens=120,  # type: ignore[arg-type]
            )
        import anyio

        async def ours() -> str:
            async with OpenAIChat(
                "sim-reasoner", base_url=server.url + "/v1", api_key="sk-test", price=MODEL.price
            ) as chat:
                return (await chat.request(request)).completions[0].text

        assert anyio.run(ours) == official.choices[0].message.content


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_serve_sim_command_serves_until_a_signal_then_exits_0(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "adaptive", "serve-sim", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()  # printed once the port is bound
        assert base.startswith("http://127.0.0.1:") and base.endswith("/v1")
        with httpx.Client() as http:  # a kept-alive connection does not hold the stop up
            assert http.get(base + "/models/sim-reasoner").json()["id"] == "sim-reasoner"
            proc.send_signal(sig)
            assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
