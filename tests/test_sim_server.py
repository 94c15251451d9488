"""The sim's OpenAI-compatible server over real loopback HTTP, driven by the SDK's own endpoints."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from adaptive_strategies import AdaptiveConsistency, SelfConsistency
from adaptive_strategies.beam_search import DVTS, BeamSearch
from adaptive_strategies.best_of_n import BestOfN
from adaptive_strategies.verifiers import ProcessRewardModel, RewardModel

from adaptive import (
    Budget,
    Client,
    ConfigError,
    Message,
    OpenAIChat,
    OpenAICompletions,
    Request,
    Response,
    Sampling,
    SingleSample,
)
from adaptive.sim import (
    STEP_DELIMITER,
    RunningServer,
    SimEndpoint,
    SimModel,
    SimRewardEndpoint,
    SimServer,
    SimVerifier,
    demo_problems,
    serve_sim,
    simulate_response,
    split_steps,
)

PROBLEMS = demo_problems(6, seed=5)
QUESTION = PROBLEMS[0].question
MODEL = SimModel()
VERIFIER = SimVerifier()


def chat(server: RunningServer, name: str = "sim-reasoner", **kw: Any) -> OpenAIChat:
    price = MODEL.price if name == "sim-reasoner" else VERIFIER.price
    return OpenAIChat(name, base_url=server.url + "/v1", api_key="sk-test", price=price, **kw)


def completions(server: RunningServer, **kw: Any) -> OpenAICompletions:
    return OpenAICompletions(
        "sim-reasoner", base_url=server.url + "/v1", api_key="sk-test", price=MODEL.price, **kw
    )


def same(a: Response, b: Response) -> None:
    assert a.usage == b.usage
    assert [c.text for c in a.completions] == [c.text for c in b.completions]
    assert [c.finish_reason for c in a.completions] == [c.finish_reason for c in b.completions]
    assert [c.logprobs for c in a.completions] == [c.logprobs for c in b.completions]


async def post(server: RunningServer, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await http.post(
            server.url + path, content=content, headers={"Content-Type": "application/json"}
        )


async def sse_events(server: RunningServer, path: str, body: dict[str, Any]) -> list[str]:
    async with httpx.AsyncClient() as http, http.stream("POST", server.url + path, json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = (await resp.aread()).decode()
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


# ---------------------------------------------------------------- protocol


@pytest.mark.asyncio
async def test_models_route_lists_both_models_with_prices() -> None:
    async with serve_sim() as server:
        async with httpx.AsyncClient() as http:
            data = (await http.get(server.url + "/v1/models")).json()
        assert data["object"] == "list"
        by_id = {m["id"]: m for m in data["data"]}
        assert set(by_id) == {"sim-reasoner", "sim-verifier"}
        assert by_id["sim-reasoner"]["pricing"] == {"input_per_mtok": 0.15, "output_per_mtok": 0.6}


@pytest.mark.asyncio
async def test_chat_matches_the_in_process_simulator() -> None:
    async with serve_sim() as server:
        request = Request(
            messages=(Message(role="user", content=QUESTION),), n=3, seed=7, logprobs=True, top_logprobs=3
        )
        want = simulate_response(MODEL, request)
        async with chat(server) as endpoint:
            got = await endpoint.request(request)
        same(got, want)
        assert got.usage_reported and got.completions[0].logprobs is not None
        assert len(got.completions[0].logprobs[0].top) == 3
        assert got.model == "sim-reasoner"


@pytest.mark.asyncio
async def test_chat_shape_and_max_completion_tokens() -> None:
    async with serve_sim() as server:
        body = {
            "model": "sim-reasoner",
            "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
            "max_completion_tokens": 5,
            "logprobs": True,
            "top_logprobs": 2,
            "seed": 1,
        }
        data = (await post(server, "/v1/chat/completions", body)).json()
        assert data["object"] == "chat.completion"
        choice = data["choices"][0]
        assert choice["finish_reason"] == "length"
        assert choice["message"]["role"] == "assistant"
        content = choice["logprobs"]["content"]
        assert len(content) == data["usage"]["completion_tokens"] == 5
        assert "".join(t["token"] for t in content) == choice["message"]["content"]
        assert content[0]["bytes"] == list(content[0]["token"].encode())
        assert len(content[0]["top_logprobs"]) == 2
        assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + 5


@pytest.mark.asyncio
async def test_chat_stream_matches_and_ends_with_usage_then_done() -> None:
    async with serve_sim() as server:
        request = Request(messages=(Message(role="user", content=QUESTION),), n=2, seed=3, logprobs=True)
        want = simulate_response(MODEL, request)
        async with chat(server, stream=True) as endpoint:
            got = await endpoint.request(request)
        same(got, want)
        assert got.usage_reported

        body = {
            "model": "sim-reasoner",
            "messages": [{"role": "user", "content": QUESTION}],
            "n": 2,
            "seed": 3,
        }
        events = await sse_events(server, "/v1/chat/completions", body | {"stream": True})
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
        assert {c["choices"][0]["delta"].get("role") for c in chunks[:2]} == {"assistant"}
        texts = ["", ""]
        for c in chunks:
            ch = c["choices"][0]
            texts[ch["index"]] += ch["delta"].get("content") or ""
        assert texts == [c.text for c in want.completions]

        with_usage = body | {"stream": True, "stream_options": {"include_usage": True}}
        chunks = [json.loads(e) for e in (await sse_events(server, "/v1/chat/completions", with_usage))[:-1]]
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["completion_tokens"] == want.usage.completion_tokens
        assert chunks[-1]["usage"]["prompt_tokens"] == want.usage.prompt_tokens


@pytest.mark.asyncio
async def test_prefill_is_continued_like_in_process() -> None:
    async with serve_sim() as server:
        first_step = simulate_response(
            MODEL, Request(messages=(Message(role="user", content=QUESTION),), seed=2, stop=(STEP_DELIMITER,))
        ).completions[0]
        assert first_step.text and first_step.finish_reason == "stop"
        request = Request(
            messages=(Message(role="user", content=QUESTION),), prefill=first_step.text, seed=9, n=2
        )
        want = simulate_response(MODEL, request)
        endpoint = chat(server)
        assert endpoint.build_body(request)["continue_final_message"] is True
        async with endpoint:
            got = await endpoint.request(request)
        same(got, want)
        # The continuation picks up after the first step rather than starting over.
        assert not got.completions[0].text.lstrip().startswith(split_steps(first_step.text)[0])


@pytest.mark.asyncio
async def test_completions_with_legacy_logprobs_streamed_or_not() -> None:
    async with serve_sim() as server:
        request = Request(prompt=QUESTION + "\n\n", n=2, seed=4, top_logprobs=3, stop=(STEP_DELIMITER,))
        want = simulate_response(MODEL, request)
        for stream in (False, True):
            async with completions(server, stream=stream) as endpoint:
                got = await endpoint.request(request)
            same(got, want)

        body = {"model": "sim-reasoner", "prompt": QUESTION, "logprobs": 2, "max_tokens": 6, "seed": 1}
        data = (await post(server, "/v1/completions", body)).json()
        assert data["object"] == "text_completion"
        lp = data["choices"][0]["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 6
        assert all(isinstance(top, dict) and len(top) == 2 for top in lp["top_logprobs"])
        assert lp["text_offset"][0] == len(QUESTION)
        assert lp["text_offset"][1] == len(QUESTION) + len(lp["tokens"][0])
        no_top = (await post(server, "/v1/completions", body | {"logprobs": 0})).json()
        assert no_top["choices"][0]["logprobs"]["top_logprobs"] is None


@pytest.mark.asyncio
async def test_unseeded_requests_draw_fresh_samples() -> None:
    async with serve_sim() as server:
        body = {"model": "sim-reasoner", "messages": [{"role": "user", "content": QUESTION}], "n": 4}
        a = (await post(server, "/v1/chat/completions", body)).json()
        b = (await post(server, "/v1/chat/completions", body)).json()
        texts = [c["message"]["content"] for c in a["choices"] + b["choices"]]
        assert len(set(texts)) > 1


X = [{"role": "user", "content": "x"}]
CHAT = {"model": "sim-reasoner", "messages": X}
RAW = {"model": "sim-reasoner", "prompt": "x"}
CHAT_PATH, RAW_PATH = "/v1/chat/completions", "/v1/completions"


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        (CHAT_PATH, b"{not json", 400, None),
        (CHAT_PATH, b"[1, 2]", 400, None),
        (CHAT_PATH, {"messages": X}, 400, "model"),
        (CHAT_PATH, {"model": "gpt-5", "messages": X}, 404, "model"),
        (CHAT_PATH, CHAT | {"messages": []}, 400, "messages"),
        (CHAT_PATH, CHAT | {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages"),
        (
            CHAT_PATH,
            CHAT | {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "messages",
        ),
        (CHAT_PATH, CHAT | {"n": 0}, 400, None),
        (CHAT_PATH, CHAT | {"n": True}, 400, "n"),
        (CHAT_PATH, CHAT | {"temperature": "hot"}, 400, "temperature"),
        (CHAT_PATH, CHAT | {"top_logprobs": 2}, 400, "top_logprobs"),
        (CHAT_PATH, CHAT | {"stop": 5}, 400, "stop"),
        (CHAT_PATH, CHAT | {"stream": "yes"}, 400, "stream"),
        (CHAT_PATH, CHAT | {"model": "sim-verifier"}, 400, "messages"),
        (RAW_PATH, RAW | {"prompt": ""}, 400, "prompt"),
        (RAW_PATH, RAW | {"prompt": ["a", "b"]}, 400, "prompt"),
        (RAW_PATH, RAW | {"echo": True}, 400, "echo"),
        (RAW_PATH, RAW | {"logprobs": 99}, 400, "logprobs"),
        ("/v1/reward", {"question": "q"}, 400, "solution"),
        ("/v1/reward", {"solution": "s"}, 400, "question"),
        ("/v1/reward", {"question": "q", "solution": "s", "score": "max"}, 400, "score"),
        ("/v1/reward", {"model": "sim-reasoner", "question": "q", "solution": "s"}, 400, "model"),
    ],
)
@pytest.mark.asyncio
async def test_bad_requests_get_openai_style_errors(
    path: str, body: Any, status: int, param: str | None
) -> None:
    async with serve_sim() as server:
        resp = await post(server, path, body)
        assert resp.status_code == status
        error = resp.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
        assert isinstance(error["message"], str) and error["message"]
        if status == 404:
            assert error["code"] == "model_not_found"


@pytest.mark.asyncio
async def test_unknown_routes_and_methods() -> None:
    async with serve_sim() as server, httpx.AsyncClient() as http:
        assert (await http.get(server.url + "/v1/chat/completions")).status_code == 405
        assert (await http.post(server.url + "/v2/anything", json={})).status_code == 404


# ---------------------------------------------------------------- reward route


@pytest.mark.asyncio
async def test_reward_route_scores_like_the_verifier() -> None:
    async with serve_sim() as server:
        problem = PROBLEMS[1]
        solution = (
            simulate_response(
                MODEL, Request(messages=(Message(role="user", content=problem.question),), seed=1)
            )
            .completions[0]
            .text
        )
        steps = split_steps(solution)
        want_score = VERIFIER.score_solution(problem.question, solution)
        want_steps = VERIFIER.score_steps(problem.question, steps)
        shapes = [
            {"question": problem.question, "solution": solution},
            {"question": problem.question, "steps": steps},
            {
                "messages": [
                    {"role": "user", "content": problem.question},
                    {"role": "assistant", "content": solution},
                ]
            },
        ]
        for body in shapes:
            data = (await post(server, "/v1/reward", body)).json()
            assert data["score"] == pytest.approx(want_score, abs=1e-6)
            assert data["step_scores"] == pytest.approx(want_steps, abs=1e-6)
            assert json.loads(data["choices"][0]["message"]["content"])["score"] == data["score"]
            assert data["choices"][0]["score"] == data["score"]
            assert data["usage"]["completion_tokens"] == 1
        last = (await post(server, "/v1/reward", shapes[0] | {"score": "last"})).json()
        assert last["score"] == pytest.approx(want_steps[-1], abs=1e-6)


# ---------------------------------------------------------------- strategies over HTTP


@pytest.mark.asyncio
async def test_adaptive_consistency_over_http_matches_in_process() -> None:
    async with serve_sim() as server:
        strategy = AdaptiveConsistency(sampling=Sampling(max_tokens=384, temperature=0.7))
        budget = Budget(usd=0.002)
        over_http, in_process = [], []
        async with Client(chat(server)) as client:
            for i, p in enumerate(PROBLEMS[:3]):
                over_http.append(await client.run(p.question, strategy=strategy, budget=budget, seed=i))
        async with Client(SimEndpoint()) as client:
            for i, p in enumerate(PROBLEMS[:3]):
                in_process.append(await client.run(p.question, strategy=strategy, budget=budget, seed=i))
        for a, b in zip(over_http, in_process, strict=True):
            assert (a.answer, a.generated, a.usage, a.cost_usd) == (
                b.answer,
                b.generated,
                b.usage,
                b.cost_usd,
            )
            assert a.cost_usd <= 0.002
        assert any(r.generated > 1 for r in over_http)


@pytest.mark.asyncio
async def test_best_of_n_with_a_reward_model_over_http() -> None:
    async with serve_sim() as server:
        budget = Budget(usd=0.002)
        results = []
        for gen, rm in ((chat(server), chat(server, "sim-verifier")), (SimEndpoint(), SimRewardEndpoint())):
            strategy = BestOfN(n=6, verifier=RewardModel(endpoint=rm), sampling=Sampling(max_tokens=384))
            async with Client(gen) as client:
                results.append(
                    [
                        await client.run(p.question, strategy=strategy, budget=budget, seed=2)
                        for p in PROBLEMS[:2]
                    ]
                )
            if hasattr(rm, "aclose"):
                await rm.aclose()
        for a, b in zip(*results, strict=True):
            assert a.details["scores"] == pytest.approx(b.details["scores"], abs=1e-6)
            assert a.details["scored"] == 6
            assert (a.answer, a.cost_usd) == (b.answer, b.cost_usd)


@pytest.mark.asyncio
async def test_beam_search_raw_mode_over_completions() -> None:
    async with serve_sim() as server:
        budget = Budget(usd=0.003)
        results = []
        pairs = ((completions(server), chat(server, "sim-verifier")), (SimEndpoint(), SimRewardEndpoint()))
        for gen, prm in pairs:
            strategy = BeamSearch(
                mode="raw",
                width=2,
                candidates=4,
                prm=ProcessRewardModel(endpoint=prm),
                sampling=Sampling(max_tokens=64),
            )
            async with Client(gen) as client:
                results.append(
                    [
                        await client.run(p.question, strategy=strategy, budget=budget, seed=1)
                        for p in PROBLEMS[:2]
                    ]
                )
            if hasattr(prm, "aclose"):
                await prm.aclose()
        for a, b in zip(*results, strict=True):
            assert a.details["mode"] == "raw"
            assert a.details["finished"] is True
            assert (a.answer, a.generated, a.cost_usd) == (b.answer, b.generated, b.cost_usd)
            assert a.cost_usd <= 0.003


# ---------------------------------------------------------------- configuration


def test_server_configuration_is_checked() -> None:
    with pytest.raises(ConfigError, match="first_token_seconds"):
        SimServer(first_token_seconds=-1.0)
    with pytest.raises(ConfigError, match="jitter"):
        SimServer(jitter=1.5)
    with pytest.raises(ConfigError, match="both named"):
        SimServer(SimModel(name="m"), SimVerifier(name="m"))
    assert SimServer(SimModel(name="a"), SimVerifier(name="b")).model_names == ("a", "b")


@pytest.mark.asyncio
async def test_simulated_latency_still_answers_exactly() -> None:
    request = Request(messages=(Message(role="user", content=QUESTION),), seed=5, max_tokens=20)
    async with serve_sim(first_token_seconds=0.001, seconds_per_token=0.0001) as running:
        for stream in (False, True):
            async with chat(running, stream=stream) as endpoint:
                same(await endpoint.request(request), simulate_response(MODEL, request))


@pytest.mark.asyncio
@pytest.mark.parametrize("which", ["single", "self-consistency", "dvts-prefill"])
async def test_more_strategies_over_http_match_in_process(which: str) -> None:
    """The remaining strategies give the same answers and costs over HTTP as in process."""
    budget = Budget(usd=0.003)
    async with serve_sim() as server:
        results = []
        for gen, prm in ((chat(server), chat(server, "sim-verifier")), (SimEndpoint(), SimRewardEndpoint())):
            strategy: Any
            if which == "single":
                strategy = SingleSample(sampling=Sampling(max_tokens=384, temperature=0.7))
            elif which == "self-consistency":
                strategy = SelfConsistency(n=4, sampling=Sampling(max_tokens=384, temperature=0.7))
            else:
                strategy = DVTS(
                    mode="prefill",
                    subtrees=2,
                    width=2,
                    prm=ProcessRewardModel(endpoint=prm),
                    sampling=Sampling(max_tokens=64),
                )
            async with Client(gen) as client:
                results.append(
                    [
                        await client.run(p.question, strategy=strategy, budget=budget, seed=3)
                        for p in PROBLEMS[:2]
                    ]
                )
            if hasattr(prm, "aclose"):
                await prm.aclose()
        for a, b in zip(*results, strict=True):
            assert a.answer is not None
            assert (a.answer, a.generated, a.usage, a.cost_usd) == (
                b.answer,
                b.generated,
                b.usage,
                b.cost_usd,
            )
            assert a.cost_usd <= 0.003
