"""The simulated reasoner, its verifier and their endpoints: seeded, fast, no network."""

from __future__ import annotations

import collections
import json
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive import ConfigError, Price, Request
from adaptive._ledger import prompt_token_bound
from adaptive.endpoints._base import UsageMeter, set_meter
from adaptive.sim import (
    STEP_DELIMITER,
    SimEndpoint,
    SimModel,
    SimRewardEndpoint,
    SimVerifier,
    count_prompt_tokens,
    demo_problems,
    extract_answer,
    make_problems,
    parse_problem,
    simulated_timing,
    split_prompt,
    split_steps,
    tokenize,
)

MODEL = SimModel()


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(a random positive outscores a random negative), ties counting half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def step_spans(tokens: tuple[str, ...], logprobs: tuple[float, ...]) -> list[list[float]]:
    """Token logprobs of each paragraph (the step delimiter is a token of its own)."""
    spans: list[list[float]] = [[]]
    for tok, lp in zip(tokens, logprobs, strict=True):
        if tok == STEP_DELIMITER:
            spans.append([])
        else:
            spans[-1].append(lp)
    return spans


# ---------------------------------------------------------------- problems


def test_problems_are_deterministic_and_parse_back() -> None:
    a = make_problems(30, seed=3)
    assert a == make_problems(30, seed=3)
    assert [p.question for p in a] != [p.question for p in make_problems(30, seed=4)]
    assert len({p.question for p in a}) == 30
    for p in a:
        assert 2 <= len(p.steps) <= 8
        assert 0.0 <= p.difficulty <= 1.0
        parsed = parse_problem(p.question)
        assert parsed is not None
        assert str(parsed.answer) == p.answer == str(p.steps[-1][1])
        assert parsed.values == tuple(v for _, v in p.steps)
        assert parsed.difficulty == p.difficulty
        assert parsed.question() == p.question


def test_problem_found_inside_a_longer_prompt() -> None:
    first, second = make_problems(2, seed=8)
    prompt = (
        f"Solve the problem. Example:\n{first.question}\nThe answer is {first.answer}.\n\n"
        f"Now this one:\n{second.question}\nThink step by step."
    )
    parsed, rest = split_prompt(prompt)
    assert parsed is not None and str(parsed.answer) == second.answer
    assert rest == "\nThink step by step."
    assert parse_problem("What is the capital of France?") is None


def test_difficulty_can_be_targeted() -> None:
    easy = make_problems(12, seed=1, difficulty=0.15)
    hard = make_problems(12, seed=1, difficulty=0.85)
    assert max(abs(p.difficulty - 0.15) for p in easy) < 0.1
    assert max(abs(p.difficulty - 0.85) for p in hard) < 0.1
    assert statistics.mean(len(p.steps) for p in hard) > statistics.mean(len(p.steps) for p in easy)


def test_bad_problem_arguments() -> None:
    with pytest.raises(ConfigError, match="count"):
        make_problems(-1)
    with pytest.raises(ConfigError, match="difficulty"):
        make_problems(3, difficulty=1.5)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokens_join_back_to_the_text(text: str) -> None:
    toks = tokenize(text)
    assert "".join(toks) == text
    assert all(toks)


# ---------------------------------------------------------------- solver


def test_sampling_is_deterministic_per_seed() -> None:
    q = make_problems(1, seed=5, difficulty=0.7)[0].question
    assert MODEL.sample(q, seed=1, index=2) == MODEL.sample(q, seed=1, index=2)
    texts = {MODEL.sample(q, seed=s).text for s in range(12)}
    assert len(texts) > 1
    greedy = {MODEL.sample(q, seed=s, temperature=0.0) for s in range(5)}
    assert len(greedy) == 1
    assert SimModel() == MODEL  # caches live outside the model: equality is by config
    other = SimModel(seed=1)
    mine = [MODEL.sample(q, seed=s).text for s in range(6)]
    assert [other.sample(q, seed=s).text for s in range(6)] != mine


def test_error_free_paths_give_the_right_answer() -> None:
    seen_wrong = seen_right = 0
    for p in make_problems(25, seed=11):
        truth = tuple(v for _, v in p.steps)
        for i in range(6):
            s = MODEL.sample(p.question, seed=0, index=i)
            assert s.finish_reason == "stop"
            assert s.text.rstrip().endswith(f"The answer is {s.answer}.")
            assert len(s.steps) == len(p.steps) == len(s.values)
            assert s.on_track == tuple(v == t for v, t in zip(s.values, truth, strict=True))
            assert s.answer == str(s.values[-1])
            if all(s.on_track):
                assert s.correct is True and s.answer == p.answer
                seen_right += 1
            if s.correct is False:
                assert not all(s.on_track)
                seen_wrong += 1
    assert seen_right > 0 and seen_wrong > 0


def test_errors_grow_with_difficulty() -> None:
    def accuracy(difficulty: float) -> float:
        problems = make_problems(15, seed=2, difficulty=difficulty)
        return statistics.mean(
            MODEL.sample(p.question, seed=3, index=i).correct is True for p in problems for i in range(8)
        )

    easy, middle, hard = accuracy(0.1), accuracy(0.5), accuracy(0.9)
    assert easy > middle > hard
    assert easy - hard > 0.4
    assert MODEL.accuracy(make_problems(1, seed=0, difficulty=0.1)[0].question) > MODEL.accuracy(
        make_problems(1, seed=0, difficulty=0.9)[0].question
    )


def test_wrong_answers_recur_and_majority_is_not_an_oracle() -> None:
    top_shares, repeated = [], []
    wrong_plurality = 0
    for p in demo_problems(60, seed=0):
        answers = [MODEL.sample(p.question, seed=9, index=i).answer for i in range(16)]
        wrong = collections.Counter(a for a in answers if a != p.answer)
        total = sum(wrong.values())
        if total >= 4:
            top_shares.append(wrong.most_common(1)[0][1] / total)
            repeated.append(sum(c for c in wrong.values() if c > 1) / total)
        plurality, _ = collections.Counter(answers).most_common(1)[0]
        wrong_plurality += plurality != p.answer
    # Slips come from a small skewed menu, so wrong answers repeat (uniform ones would not).
    assert len(top_shares) >= 5
    assert statistics.mean(top_shares) > 0.25
    assert statistics.mean(repeated) > 0.25
    assert wrong_plurality >= 1


def test_logprobs_are_lower_on_erroneous_steps() -> None:
    good: list[float] = []
    bad: list[float] = []
    for p in make_problems(30, seed=4):
        for i in range(6):
            s = MODEL.sample(p.question, seed=1, index=i)
            assert len(s.token_logprobs) == len(s.tokens) == s.completion_tokens
            assert all(lp <= 0.0 for lp in s.token_logprobs)
            previous = True
            for on, span in zip(s.on_track, step_spans(s.tokens, s.token_logprobs), strict=True):
                if previous:  # a step that starts on track is right or introduces the error
                    (good if on else bad).append(statistics.mean(span))
                previous = on
    assert len(bad) >= 10
    assert statistics.mean(bad) < statistics.mean(good)
    assert 0.6 < auroc(good, bad) < 0.95  # informative, not a giveaway


def test_one_step_at_a_time() -> None:
    p = make_problems(1, seed=6, difficulty=0.4)[0]
    prefix = ""
    for k in range(len(p.steps)):
        s = MODEL.sample(p.question, seed=k, prefix=prefix, stop=[STEP_DELIMITER])
        assert STEP_DELIMITER not in s.text
        assert s.finish_reason == "stop"
        assert len(s.steps) == 1
        assert (s.answer is not None) == (k == len(p.steps) - 1)
        prefix += s.text + STEP_DELIMITER
    assert len(split_steps(prefix)) == len(p.steps)
    assert extract_answer(prefix) is not None
    # A finished solution has nothing left to add.
    assert MODEL.sample(p.question, seed=0, prefix=prefix).text == ""


def test_continuation_keeps_the_prefix_and_its_mistakes() -> None:
    p = make_problems(1, seed=13, difficulty=0.2)[0]
    first = MODEL.sample(p.question, temperature=0.0, stop=[STEP_DELIMITER])
    assert first.on_track == (True,)
    good_prefix = first.text + STEP_DELIMITER
    value = str(first.values[0])
    bad_prefix = good_prefix[::-1].replace(value[::-1], str(first.values[0] + 7)[::-1], 1)[::-1]
    assert bad_prefix != good_prefix

    def correct_rate(prefix: str) -> float:
        outs = [MODEL.sample(p.question, seed=s, prefix=prefix) for s in range(40)]
        for o in outs:
            assert len(o.steps) == len(p.steps) - 1
            assert not o.text.startswith(first.text)
        return statistics.mean(o.correct is True for o in outs)

    assert correct_rate(good_prefix) > 0.7
    assert correct_rate(bad_prefix) < 0.3
    # Without a trailing blank line the continuation opens one itself.
    s = MODEL.sample(p.question, seed=0, prefix=first.text, stop=[STEP_DELIMITER])
    assert s.text.startswith(STEP_DELIMITER) and STEP_DELIMITER not in s.text[2:]


def test_max_tokens_truncates() -> None:
    q = make_problems(1, seed=2)[0].question
    full = MODEL.sample(q, seed=4)
    cut = MODEL.sample(q, seed=4, max_tokens=7)
    assert cut.finish_reason == "length"
    assert cut.tokens == full.tokens[:7] and cut.token_logprobs == full.token_logprobs[:7]
    assert cut.answer is None and cut.steps == ()


def test_bad_sample_arguments() -> None:
    with pytest.raises(ConfigError, match="no word problem"):
        MODEL.sample("Tell me a joke.")
    q = make_problems(1)[0].question
    with pytest.raises(ConfigError, match="temperature"):
        MODEL.sample(q, temperature=-1.0)
    with pytest.raises(ConfigError, match="base_error_rate"):
        SimModel(base_error_rate=1.5)


# ---------------------------------------------------------------- verifier


def _scored_pool(verifier: SimVerifier) -> tuple[list[float], list[float], list[float], list[float]]:
    step_pos: list[float] = []
    step_neg: list[float] = []
    out_pos: list[float] = []
    out_neg: list[float] = []
    for p in demo_problems(50, seed=1):
        for i in range(4):
            s = MODEL.sample(p.question, seed=2, index=i)
            for on, score in zip(s.on_track, verifier.score_steps(p.question, s.steps), strict=True):
                (step_pos if on else step_neg).append(score)
            (out_pos if s.correct else out_neg).append(verifier.score(p.question, s.text))
    return step_pos, step_neg, out_pos, out_neg


def test_verifier_is_informative_but_not_an_oracle() -> None:
    verifier = SimVerifier()
    step_pos, step_neg, out_pos, out_neg = _scored_pool(verifier)
    assert len(step_neg) > 20 and len(out_neg) > 20
    assert 0.7 < auroc(step_pos, step_neg) < 0.9
    assert 0.7 < auroc(out_pos, out_neg) < 0.93
    assert all(0.0 <= x <= 1.0 for x in step_pos + step_neg + out_pos + out_neg)
    # Roughly calibrated (the priors fit the demo mix), and confident scores are right more often.
    for pos, neg in ((step_pos, step_neg), (out_pos, out_neg)):
        pooled = [(x, True) for x in pos] + [(x, False) for x in neg]
        assert abs(statistics.mean(x for x, _ in pooled) - len(pos) / len(pooled)) < 0.15
        high = [ok for x, ok in pooled if x > 0.8]
        low = [ok for x, ok in pooled if x < 0.4]
        assert statistics.mean(high) > 0.6 > 0.4 > statistics.mean(low)
    # Less noise, a sharper judge.
    sharp = _scored_pool(SimVerifier(noise=0.0))
    assert auroc(sharp[0], sharp[1]) == 1.0 and auroc(sharp[2], sharp[3]) == 1.0


def test_verifier_is_deterministic_per_seed() -> None:
    p = make_problems(1, seed=3)[0]
    s = MODEL.sample(p.question, seed=1)
    v = SimVerifier(seed=4)
    assert v.score_steps(p.question, s.steps) == v.score_steps(p.question, s.steps)
    assert v.score(p.question, s.text) == SimVerifier(seed=4).score(p.question, s.text)
    assert v.score(p.question, s.text) != SimVerifier(seed=5).score(p.question, s.text)
    assert v.score_steps("no problem here", ["a", "b"]) == [0.5, 0.5]
    with pytest.raises(ConfigError, match="how"):
        v.score_solution(p.question, s.text, "median")


# ---------------------------------------------------------------- endpoints


@pytest.mark.asyncio
async def test_endpoint_returns_n_completions_with_exact_usage() -> None:
    ep = SimEndpoint()
    assert ep.price == Price(input=0.15, output=0.60)
    p = make_problems(1, seed=7, difficulty=0.6)[0]
    req = Request(messages=({"role": "user", "content": p.question},), n=5, seed=3, logprobs=True)
    resp = await ep.request(req)
    assert len(resp.completions) == 5
    assert [c.index for c in resp.completions] == list(range(5))
    assert resp.usage.completion_tokens == sum(len(c.logprobs or ()) for c in resp.completions)
    assert all(c.completion_tokens == len(c.logprobs or ()) for c in resp.completions)
    assert resp.usage.prompt_tokens == count_prompt_tokens(req) <= prompt_token_bound(req)
    for i, c in enumerate(resp.completions):
        assert c.text == MODEL.sample(p.question, seed=3, index=i).text
        assert extract_answer(c.text) is not None and c.finish_reason == "stop"
    assert await ep.request(req) == resp


@pytest.mark.asyncio
async def test_endpoint_respects_max_tokens_stop_and_top_logprobs() -> None:
    ep = SimEndpoint()
    q = make_problems(1, seed=9)[0].question
    short = await ep.request(Request(prompt=q, n=3, seed=1, max_tokens=6))
    assert all(c.finish_reason == "length" and c.completion_tokens == 6 for c in short.completions)
    assert short.usage.completion_tokens == 18
    step = await ep.request(
        Request(prompt=q + "\n", n=2, seed=1, stop=(STEP_DELIMITER,), logprobs=True, top_logprobs=3)
    )
    for c in step.completions:
        assert STEP_DELIMITER not in c.text and c.finish_reason == "stop"
        assert c.logprobs is not None
        for t in c.logprobs:
            tops = [lp for _, lp in t.top]
            assert len(tops) == 3 and tops == sorted(tops, reverse=True)
            assert (t.token, t.logprob) in t.top or t.logprob <= t.top[-1][1]


@pytest.mark.asyncio
async def test_endpoint_continues_raw_prompts_and_prefills() -> None:
    ep = SimEndpoint()
    q = make_problems(1, seed=10, difficulty=0.5)[0].question
    first = MODEL.sample(q, temperature=0.0, stop=[STEP_DELIMITER]).text + STEP_DELIMITER
    raw = await ep.request(Request(prompt=q + "\n\n" + first, seed=2))
    chat = await ep.request(Request(messages=({"role": "user", "content": q},), prefill=first, seed=2))
    expected = MODEL.sample(q, seed=2, prefix=first).text
    assert raw.completions[0].text == chat.completions[0].text == expected
    assert not expected.startswith(first)
    # No seed: successive calls still differ, from a per-endpoint counter.
    unseeded = [await ep.request(Request(prompt=q, temperature=1.0)) for _ in range(6)]
    assert len({r.completions[0].text for r in unseeded}) > 1
    apology = await ep.request(Request(prompt="Tell me a joke.", max_tokens=4))
    assert apology.completions[0].finish_reason == "length" and apology.usage.completion_tokens == 4


@pytest.mark.asyncio
async def test_simulated_latency_keeps_the_meter_current() -> None:
    ep = SimEndpoint(first_token_seconds=0.001, seconds_per_token=1e-5)
    meter = UsageMeter()
    set_meter(meter)
    try:
        resp = await ep.request(Request(prompt=make_problems(1)[0].question, n=2, seed=0))
    finally:
        set_meter(None)
    assert meter.usage == resp.usage and meter.samples == 2
    req = Request(prompt="anything", seed=4)
    first, per_token = simulated_timing(req, first_token_seconds=1.0, seconds_per_token=0.01, jitter=0.2)
    assert 0.8 <= first <= 1.2 and per_token == pytest.approx(first / 100)
    assert simulated_timing(req, first_token_seconds=1.0, seconds_per_token=0.01) == (first, per_token)
    with pytest.raises(ConfigError, match="seconds_per_token"):
        SimEndpoint(seconds_per_token=-1.0)


@pytest.mark.asyncio
async def test_reward_endpoint_scores_solutions() -> None:
    verifier = SimVerifier()
    ep = SimRewardEndpoint(verifier)
    assert ep.price == verifier.price
    p = make_problems(1, seed=12, difficulty=0.6)[0]
    s = MODEL.sample(p.question, seed=5)
    req = Request(
        messages=({"role": "user", "content": p.question}, {"role": "assistant", "content": s.text}),
    )
    resp = await ep.request(req)
    c = resp.completions[0]
    assert c.score == verifier.score(p.question, s.text)
    body = json.loads(c.text)
    assert body["score"] == pytest.approx(c.score, abs=1e-6)
    assert body["step_scores"] == pytest.approx(verifier.score_steps(p.question, s.steps), abs=1e-6)
    assert resp.usage.prompt_tokens == count_prompt_tokens(req) <= prompt_token_bound(req)
    assert resp.usage.completion_tokens == 1
    # A partial solution is scored by its last step; "min" and the raw form also work.
    partial = s.steps[0] + STEP_DELIMITER
    part = await ep.request(Request(prompt=p.question + "\n\n" + partial))
    assert part.completions[0].score == verifier.score_steps(p.question, [s.steps[0]])[0]
    low = await ep.request(req.model_copy(update={"extra": {"score": "min"}}))
    assert low.completions[0].score == min(verifier.score_steps(p.question, s.steps))
    with pytest.raises(ConfigError, match="solution"):
        await ep.request(Request(messages=({"role": "user", "content": p.question},)))


def test_the_simulated_model_grades_a_solution_when_an_llm_judge_asks() -> None:
    import anyio
    from adaptive_strategies import LLMJudge
    from adaptive_strategies.replies import parse_rating

    from adaptive.sim import SimEndpoint, demo_problems

    endpoint = SimEndpoint()
    problems = demo_problems(60)

    async def rate(question: str, solution: str, yes_no: bool = False) -> str:
        judge = LLMJudge(score_parser="yes_no" if yes_no else "rating")
        call = judge.verification(question, solution).calls[0]
        response = await endpoint.request(call.request)
        return response.completions[0].text

    async def main() -> tuple[list[float], list[float], set[str]]:
        right, wrong, words = [], [], set()
        for p in problems:
            good = f"Working through it.\n\nThe answer is {p.answer}."
            bad = f"Working through it.\n\nThe answer is {int(p.answer) + 7}."
            for text, into in ((good, right), (bad, wrong)):
                score = parse_rating(await rate(p.question, text), 10.0)
                assert score is not None
                into.append(score)
            words.add(await rate(p.question, good, yes_no=True))
        return right, wrong, words

    right, wrong, words = anyio.run(main)
    # Informative but noisy: the right answer is rated higher in most pairs, not all.
    higher = sum(r > w for r, w in zip(right, wrong, strict=True)) / len(right)
    assert 0.55 < higher < 0.95, higher
    assert words <= {"Yes", "No"} and "Yes" in words
