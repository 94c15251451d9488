"""Step-level beam search and DVTS end to end, and the budget property across verifier strategies."""

from __future__ import annotations

import json
import warnings
import zlib
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from adaptive_strategies.beam_search import DVTS, BeamSearch
from adaptive_strategies.best_of_n import BestOfN
from adaptive_strategies.verifiers import ProcessRewardModel, RewardModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive import (
    Budget,
    BudgetTooSmallError,
    Client,
    Completion,
    ConfigError,
    ControllerConfig,
    Final,
    FunctionEndpoint,
    Price,
    Request,
    Result,
    Sampling,
    max_samples,
    score_threshold,
    strategy_from_config,
)
from adaptive._prices import usd_to_pico
from adaptive.sim import SimEndpoint, SimRewardEndpoint, demo_problems

GEN_PRICE = Price(input=1.0, output=4.0)
PRM_PRICE = Price(input=0.5, output=0.5)
QUESTION = "How many?"

# A scripted tree. A step is "step <path>"; the children of path P are P + "A", P + "B", ...
# At depth 3 the step also gives the answer and the solution is finished.
STEP_SCORES = {
    "A": 0.3, "B": 0.9, "C": 0.2, "D": 0.4,
    "BA": 0.5, "BB": 0.45, "DA": 0.7, "DB": 0.1,
    "DAA": 0.8, "DAB": 0.6, "BAA": 0.3, "BAB": 0.65, "BBA": 0.55, "BBB": 0.2,
}  # fmt: skip
ANSWERS = {"DAA": "1", "DAB": "2", "BAA": "3", "BAB": "2", "BBA": "4", "BBB": "5"}


def steps_of(partial: str) -> list[str]:
    return [s for s in partial.split("\n\n") if s.strip()]


def path_of(step: str) -> str:
    return step.split()[1].rstrip(".")


class Tree:
    """A step model over the scripted tree that records every request."""

    def __init__(self, *, raw: bool = False, prefill: bool = True, template: str = "{question}\n\n") -> None:
        self.requests: list[Request] = []
        self.template = template
        self.endpoint = FunctionEndpoint(
            self.fn, name="tree", price=GEN_PRICE, supports_n=True, supports_raw=raw, supports_prefill=prefill
        )

    def partial(self, request: Request) -> str:
        if request.prompt is not None:
            head = self.template.replace("{question}", QUESTION)
            assert request.prompt.startswith(head)
            return request.prompt[len(head) :]
        return request.prefill or ""

    async def fn(self, request: Request) -> list[str]:
        self.requests.append(request)
        steps = steps_of(self.partial(request))
        last = path_of(steps[-1]) if steps else ""
        out = []
        for i in range(request.n):
            path = last + "ABCD"[i]
            out.append(f"step {path}. The answer is {ANSWERS[path]}." if len(path) == 3 else f"step {path}")
        return out

    def rounds(self) -> list[set[str]]:
        """The partial solutions expanded in each round."""
        by_depth: dict[int, set[str]] = {}
        for r in self.requests:
            partial = self.partial(r)
            by_depth.setdefault(len(steps_of(partial)), set()).add(partial)
        return [by_depth[d] for d in sorted(by_depth)]


def partial(*paths: str) -> str:
    return "".join(f"step {p}\n\n" for p in paths)


def prm_endpoint(*, per_step: bool = False, name: str = "prm") -> FunctionEndpoint:
    """Scores the last step by the table, or every step (as JSON) with `per_step`."""

    async def fn(request: Request) -> Completion:
        assert request.messages is not None and request.messages[-1].role == "assistant"
        scores = [STEP_SCORES[path_of(s)] for s in steps_of(request.messages[-1].content)]
        if per_step:
            return Completion(text=json.dumps({"step_scores": scores}))
        return Completion(text="", score=scores[-1])

    return FunctionEndpoint(fn, name=name, price=PRM_PRICE)


def beam(**kwargs: Any) -> BeamSearch:
    params: dict[str, Any] = {"width": 2, "candidates": 4, "prm": ProcessRewardModel(endpoint=prm_endpoint())}
    params.update(kwargs)
    return BeamSearch(**params)


def strip_times(result: Result) -> list[tuple[str, int, dict[str, Any]]]:
    return [(e.kind, e.round, {k: v for k, v in e.data.items() if k != "elapsed"}) for e in result.trace]


# -- pruning -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_beam_keeps_the_top_w_by_last_step_score() -> None:
    tree = Tree()
    async with Client(tree.endpoint) as client:
        result = await client.run(QUESTION, strategy=beam(), seed=0)
    # Root: A .3, B .9, C .2, D .4 -> keep B, D. Then BA .5, BB .45, DA .7, DB .1 -> keep DA, BA.
    assert tree.rounds() == [{""}, {partial("B"), partial("D")}, {partial("B", "BA"), partial("D", "DA")}]
    assert [r.n for r in tree.requests] == [4, 2, 2, 2, 2]
    kept = [[k["score"] for k in entry["kept"]] for entry in result.details["beams"]]
    assert kept == [[0.9, 0.4], [0.7, 0.5], [0.8, 0.65]]
    # Finished: DAA .8, DAB .6, BAA .3, BAB .65: the best is DAA.
    assert result.answer == "1"
    assert result.text == "step D\n\nstep DA\n\nstep DAA. The answer is 1."
    assert sorted(s["score"] for s in result.details["solutions"]) == [0.3, 0.6, 0.65, 0.8]
    assert result.details["finished"] and result.stop_reason == "strategy_done"


@pytest.mark.asyncio
@pytest.mark.parametrize("per_step", [False, True])
@pytest.mark.parametrize(("aggregation", "answer"), [("min", "2"), ("product", "2")])
async def test_beam_pruning_uses_the_aggregated_score(per_step: bool, aggregation: str, answer: str) -> None:
    tree = Tree()
    prm = ProcessRewardModel(endpoint=prm_endpoint(per_step=per_step), aggregation=aggregation)
    async with Client(tree.endpoint) as client:
        result = await client.run(QUESTION, strategy=beam(prm=prm), seed=0)
    # min:     BA .5, BB .45, DA .4, DB .1  -> keep BA, BB (not DA, the best last step)
    # product: BA .45, BB .405, DA .28, DB .04 -> keep BA, BB
    assert tree.rounds()[2] == {partial("B", "BA"), partial("B", "BB")}
    assert result.details["aggregation"] == aggregation
    # min: BAB .5 best; product: BAB .2925 best.
    assert result.answer == answer
    assert result.text is not None and result.text.endswith("step BAB. The answer is 2.")


@pytest.mark.asyncio
async def test_beam_weighted_majority_over_finished_beams() -> None:
    tree = Tree()
    async with Client(tree.endpoint) as client:
        result = await client.run(QUESTION, strategy=beam(select="weighted_majority"), seed=0)
    # "2": DAB .6 + BAB .65 = 1.25 beats "1": DAA .8.
    assert result.answer == "2"
    assert result.details["weights"] == {"1": 0.8, "2": pytest.approx(1.25), "3": 0.3}
    assert result.votes == {"2": 2, "1": 1, "3": 1}


@pytest.mark.asyncio
async def test_verifier_calls_on_the_receipt() -> None:
    tree = Tree()
    prm = prm_endpoint()
    async with Client(tree.endpoint) as client:
        result = await client.run(
            QUESTION, strategy=beam(prm=ProcessRewardModel(endpoint=prm)), seed=0, budget=Budget(usd=1.0)
        )
    checks = [s for s in result.samples if s.purpose == "verify"]
    assert len(checks) == 4 + 4 + 4  # every new partial solution of every round
    assert all(s.endpoint == prm.name for s in checks)
    prm_charges = [c for c in result.charges if c.endpoint == prm.name]
    assert len(prm_charges) == 12
    assert all(c.usd == pytest.approx(PRM_PRICE.cost_usd(c.usage)) and c.usd > 0 for c in prm_charges)
    assert result.cost_usd == pytest.approx(sum(c.usd for c in result.charges))
    # One round per step: each expansion's new steps are scored in the round that expanded
    # them, so every round holds both its expansions and their PRM calls.
    decisions = [e.data for e in result.trace if e.kind == "decide" and e.data.get("action") == "continue"]
    assert [d["note"].split(" ")[0] for d in decisions] == ["round"] * 3
    sends = [(e.round, e.data["purpose"]) for e in result.trace if e.kind == "send"]
    assert sorted(set(sends)) == [(r, p) for r in range(3) for p in ("generate", "verify")]
    assert result.rounds == 3


@pytest.mark.asyncio
async def test_score_threshold_stops_between_rounds() -> None:
    async def fn(request: Request) -> list[str]:
        depth = len(steps_of(request.prefill or ""))
        return ["\\boxed{7}" if depth == 2 and i == 0 else f"more {depth}.{i}" for i in range(request.n)]

    async def score(request: Request) -> Completion:
        assert request.messages is not None
        return Completion(text="", score=0.6 if "boxed" in request.messages[-1].content else 0.7)

    ep = FunctionEndpoint(fn, name="m", supports_n=True, supports_prefill=True)
    strategy = BeamSearch(width=1, candidates=2, max_depth=6, prm=ProcessRewardModel(FunctionEndpoint(score)))
    async with Client(ep) as client:
        stopped = await client.run(QUESTION, strategy=strategy, seed=0, stop=score_threshold(0.5))
        low = await client.run(QUESTION, strategy=strategy, seed=0, stop=score_threshold(0.1))
        full = await client.run(QUESTION, strategy=strategy, seed=0)
    # Round 2 finishes "\boxed{7}" at .6 (pooled; the .7 partial is kept): the rule stops the
    # search before round 3.
    assert stopped.stop_reason == "confident" and stopped.answer == "7"
    assert stopped.stop is not None and stopped.stop.rule == "score_threshold"
    assert stopped.details["rounds"] == 3 and stopped.generated == 6
    # Partial solutions' scores never count: even a threshold every partial passes waits for
    # the first finished solution.
    assert low.stop_reason == "confident" and low.details["rounds"] == 3
    assert low.stop is not None and low.stop.rule == "score_threshold"
    # Without the rule the search runs to max_depth.
    assert full.stop_reason == "strategy_done" and full.details["rounds"] == 6
    assert full.generated > stopped.generated


# -- finishing ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_finish_on_empty_step_marker_and_max_depth() -> None:
    async def fn(request: Request) -> list[str]:
        depth = len(steps_of(request.prefill or ""))
        if depth == 0:
            return ["first", "\\boxed{7}"]
        return ["", "next"]  # an empty step: the model has nothing more to say

    async def score(request: Request) -> Completion:
        assert request.messages is not None
        text = request.messages[-1].content
        return Completion(text="", score=0.9 if "first" in text else 0.5)

    ep = FunctionEndpoint(fn, name="m", supports_n=True, supports_prefill=True)
    prm = ProcessRewardModel(endpoint=FunctionEndpoint(score, name="prm"))
    async with Client(ep) as client:
        result = await client.run(QUESTION, strategy=BeamSearch(width=1, candidates=2, prm=prm), seed=0)
        capped = await client.run(
            QUESTION, strategy=BeamSearch(width=1, candidates=2, prm=prm, max_depth=1), seed=0
        )
    # Round 0: "first" (.9, kept) and a boxed answer (finished by the marker, .5, pooled).
    # Round 1: "" ends "first" (it keeps its .9); "first / next" also scores .9 and loses the
    # tie to the earlier candidate, so the only kept beam is finished and the search ends.
    assert result.details["solutions"] == [
        {"answer": "7", "score": 0.5, "depth": 1, "group": 0},
        {"answer": None, "score": 0.9, "depth": 1, "group": 0},
    ]
    assert result.details["rounds"] == 2
    # The better-scored solution gives no answer: the answered one is chosen.
    assert result.answer == "7" and result.text == "\\boxed{7}"
    # max_depth=1: both first steps are finished at once.
    assert sorted((s["depth"], s["score"]) for s in capped.details["solutions"]) == [(1, 0.5), (1, 0.9)]
    assert capped.details["rounds"] == 1


@pytest.mark.asyncio
async def test_stopped_before_anything_finished_answers_the_best_partial() -> None:
    tree = Tree()
    async with Client(tree.endpoint) as client:
        # Eight step samples: the rule fires as the second round's last expansion comes back,
        # so no third round is sent. The new steps of the second round were already being
        # scored (each as its expansion arrived) and the round ran to its end, so it is
        # pruned as between rounds and the best partial solution comes from it.
        result = await client.run(QUESTION, strategy=beam(), seed=0, stop=max_samples(8))
    assert result.stop_reason == "max_samples"
    assert not result.details["finished"] and result.details["solutions"] == []
    assert len([s for s in result.samples if s.purpose == "verify"]) == 4 + 4
    assert result.details["rounds"] == 2 and len(result.details["beams"]) == 2
    assert result.text == "step D\n\nstep DA" and result.details["best_score"] == 0.7
    assert result.answer is None  # no answer in a partial solution (no number in it)
    assert len(tree.requests) == 3


# -- request shapes and modes --------------------------------------------------------------


@pytest.mark.asyncio
async def test_controller_max_samples_caps_the_beams_own_expansions() -> None:
    tree = Tree()
    async with Client(tree.endpoint, controller=ControllerConfig(max_samples=6)) as client:
        result = await client.run(QUESTION, strategy=beam(), seed=0)
    # Four step samples in the first round (one request per kept beam after it, n=2 each):
    # the second round fits one beam's two, the other's would pass the cap of 6 and is refused.
    assert result.generated == 6
    assert result.stop_reason == "max_samples"
    refusals = [e.data for e in result.trace if e.kind == "refuse"]
    assert refusals and all(r["limit"] == "max_samples" for r in refusals)


@pytest.mark.asyncio
async def test_raw_mode_sends_prompt_continuations() -> None:
    tree = Tree(raw=True, prefill=False, template="Q: {question}\nA:\n\n")
    async with Client(tree.endpoint) as client:
        strategy = beam(raw_template="Q: {question}\nA:\n\n", sampling=Sampling(max_tokens=50))
        result = await client.run(QUESTION, strategy=strategy, seed=7)
    assert result.details["mode"] == "raw" and result.answer == "1"
    first, second = tree.requests[0], tree.requests[1]
    assert first.prompt == "Q: How many?\nA:\n\n" and first.messages is None and first.prefill is None
    assert second.prompt is not None and second.prompt.startswith("Q: How many?\nA:\n\nstep ")
    assert second.prompt.endswith("\n\n")
    assert all(r.stop == ("\n\n",) and r.max_tokens == 50 for r in tree.requests)
    seeds = [r.seed for r in tree.requests]
    assert len(set(seeds)) == len(seeds) and min(s for s in seeds if s is not None) == 7


@pytest.mark.asyncio
async def test_prefill_mode_sends_chat_with_prefill() -> None:
    tree = Tree(raw=True, prefill=True)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
    async with Client(tree.endpoint) as client:
        result = await client.run(
            messages, strategy=beam(sampling=Sampling(stop=("END",), max_tokens=30)), seed=0
        )
    assert result.details["mode"] == "prefill"  # auto prefers prefill
    first, second = tree.requests[0], tree.requests[1]
    assert first.prompt is None and first.prefill is None
    assert first.messages is not None and [m.role for m in first.messages] == ["system", "user"]
    assert second.prefill in (partial("B"), partial("D")) and second.messages == first.messages
    assert all(r.stop == ("\n\n", "END") for r in tree.requests)


@pytest.mark.asyncio
async def test_auto_mode_and_capability_errors() -> None:
    raw_only = Tree(raw=True, prefill=False)
    async with Client(raw_only.endpoint) as client:
        assert (await client.run(QUESTION, strategy=beam(), seed=0)).details["mode"] == "raw"
        with pytest.raises(ConfigError, match="supports_prefill is False"):
            await client.run(QUESTION, strategy=beam(mode="prefill"), seed=0)
    prefill_only = Tree(raw=False, prefill=True)
    async with Client(prefill_only.endpoint) as client:
        with pytest.raises(ConfigError, match="supports_raw is False"):
            await client.run(QUESTION, strategy=beam(mode="raw"), seed=0)
    neither = Tree(raw=False, prefill=False)
    async with Client(neither.endpoint) as client:
        with pytest.raises(ConfigError, match="neither"):
            await client.run(QUESTION, strategy=beam(), seed=0)
    assert neither.requests == []


def test_validation_and_registry() -> None:
    with pytest.raises(ConfigError, match="multiple of width"):
        beam(width=3, candidates=4)
    with pytest.raises(ConfigError, match="question"):
        beam(raw_template="no placeholder")
    with pytest.raises(ConfigError, match="verifier"):
        BeamSearch(prm=None)
    with pytest.raises(ConfigError):
        beam(mode="tree")
    prm = ProcessRewardModel(endpoint=prm_endpoint(), aggregation="product")
    assert BeamSearch(prm=prm).step_aggregation() == "product"
    assert BeamSearch(prm=prm, aggregation="min").step_aggregation() == "min"
    prm_config = {"name": "prm", "endpoint": prm_endpoint()}
    config = {"name": "beam-search", "width": 2, "candidates": 4, "prm": prm_config}
    built = strategy_from_config(config)
    assert isinstance(built, BeamSearch) and built.candidates == 4
    dvts = strategy_from_config("dvts", {"subtrees": 2, "prm": prm})
    assert isinstance(dvts, DVTS) and dvts.select == "weighted_majority"


# -- DVTS ----------------------------------------------------------------------------------

DVTS_SCORES = {
    "s0a": 0.9, "s0b": 0.1, "s2a": 0.2, "s2b": 0.8, "s4a": 0.7, "s4b": 0.3,
    "s0ax": 0.6, "s0ay": 0.95, "s2bx": 0.7, "s2by": 0.5, "s4ax": 0.65, "s4ay": 0.4,
}  # fmt: skip
DVTS_ANSWERS = {"s0ax": "7", "s0ay": "8", "s2bx": "7", "s2by": "9", "s4ax": "7", "s4ay": "9"}


@pytest.mark.asyncio
async def test_dvts_expands_each_subtree_greedily_and_votes_over_leaves() -> None:
    requests: list[Request] = []

    async def fn(request: Request) -> list[str]:
        requests.append(request)
        steps = steps_of(request.prefill or "")
        if not steps:
            return [f"step s{request.seed}{'ab'[i]}" for i in range(request.n)]
        path = path_of(steps[-1])
        children = [path + "xy"[i] for i in range(request.n)]
        return [f"step {c}. The answer is {DVTS_ANSWERS[c]}." for c in children]

    async def score(request: Request) -> Completion:
        assert request.messages is not None
        return Completion(text="", score=DVTS_SCORES[path_of(steps_of(request.messages[-1].content)[-1])])

    ep = FunctionEndpoint(fn, name="m", supports_n=True, supports_prefill=True)
    prm = ProcessRewardModel(endpoint=FunctionEndpoint(score, name="prm"))
    async with Client(ep) as client:
        voted = await client.run(QUESTION, strategy=DVTS(subtrees=3, width=2, prm=prm), seed=0)
        best = await client.run(QUESTION, strategy=DVTS(subtrees=3, width=2, prm=prm, select="best"), seed=0)
    # Three roots, width 2 each (seeds 0, 2, 4); each subtree keeps its own best child.
    roots = requests[:3]
    assert [r.n for r in roots] == [2, 2, 2] and sorted(r.seed or 0 for r in roots) == [0, 2, 4]
    assert {r.prefill for r in requests[3:6]} == {"step s0a\n\n", "step s2b\n\n", "step s4a\n\n"}
    # Leaves: s0ay (8, .95), s2bx (7, .7), s4ax (7, .65): "7" has more weight, "8" the best leaf.
    leaves = sorted((s["group"], s["answer"], s["score"]) for s in voted.details["solutions"])
    assert leaves == [(0, "8", 0.95), (1, "7", 0.7), (2, "7", 0.65)]
    assert voted.answer == "7" and voted.confidence == pytest.approx(1.35 / 2.3)
    assert best.answer == "8"
    assert len([s for s in voted.samples if s.purpose == "verify"]) == 12


# -- reproducibility -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["beam", "dvts"])
async def test_seeded_runs_reproduce_decision_for_decision(kind: str) -> None:
    runs = []
    for _ in range(2):
        gen = HashModel(supports_n=False)
        prm = ProcessRewardModel(endpoint=hash_prm(), aggregation="min")
        strategy: BeamSearch | DVTS = (
            BeamSearch(width=2, candidates=4, prm=prm, max_depth=4, sampling=Sampling(max_tokens=20))
            if kind == "beam"
            else DVTS(subtrees=2, width=2, prm=prm, max_depth=4, sampling=Sampling(max_tokens=20))
        )
        async with Client(gen.endpoint) as client:
            runs.append(await client.run(QUESTION, strategy=strategy, seed=5, budget=Budget(usd=0.01)))
    a, b = runs
    assert strip_times(a) == strip_times(b)
    assert (a.answer, a.text, a.details, a.cost_usd) == (b.answer, b.text, b.details, b.cost_usd)
    assert sorted(s.text for s in a.samples) == sorted(s.text for s in b.samples)


# -- the budget property ---------------------------------------------------------------------


def _h(*parts: object) -> int:
    return zlib.crc32(repr(parts).encode())


class HashModel:
    """Steps named by a hash of (partial, seed); a solution ends after three steps.

    Whole solutions when asked without a stop sequence (best-of-n).
    """

    def __init__(self, *, supports_n: bool, price: Price = GEN_PRICE) -> None:
        self.endpoint = FunctionEndpoint(
            self.fn, name="hash", price=price, supports_n=supports_n, supports_prefill=True, supports_raw=True
        )

    def one(self, request: Request, i: int) -> str:
        seed = (request.seed or 0) + i
        if request.stop is None:
            return f"step a\n\nstep b{seed % 5}\n\nThe answer is {seed % 3}."
        partial = request.prefill if request.prompt is None else request.prompt
        depth = len(steps_of(partial or ""))
        name = f"n{_h(partial, seed) % 1000}"
        pad = "." * (_h(name) % 40)
        if depth >= 2:
            return f"step {name}{pad} The answer is {_h(name) % 3}."
        return f"step {name}{pad}"

    async def fn(self, request: Request) -> list[str]:
        return [self.one(request, i) for i in range(request.n)]


def hash_prm(price: Price = PRM_PRICE) -> FunctionEndpoint:
    async def fn(request: Request) -> Completion:
        assert request.messages is not None
        return Completion(text="", score=(_h(request.messages[-1].content) % 1000) / 1000)

    return FunctionEndpoint(fn, name="hprm", price=price)


def _spent_pico(result: Result, prices: dict[str, Price]) -> int:
    return sum(prices[c.endpoint].cost_pico(c.usage) for c in result.charges)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["best_of_n", "beam", "dvts"]),
    usd_scale=st.floats(min_value=0.2, max_value=40.0),
    token_scale=st.one_of(st.none(), st.floats(min_value=0.2, max_value=40.0)),
    gen_rates=st.tuples(st.floats(0.01, 30.0), st.floats(0.01, 60.0)),
    prm_rates=st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 10.0)),
    supports_n=st.booleans(),
    width=st.integers(1, 3),
    fan=st.integers(1, 3),
    max_tokens=st.integers(8, 200),
    reserve=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_budget_is_never_exceeded_verifier_calls_included(
    kind: str,
    usd_scale: float,
    token_scale: float | None,
    gen_rates: tuple[float, float],
    prm_rates: tuple[float, float],
    supports_n: bool,
    width: int,
    fan: int,
    max_tokens: int,
    reserve: bool,
    seed: int,
) -> None:
    gen_price = Price(input=gen_rates[0], output=gen_rates[1])
    prm_price = Price(input=prm_rates[0], output=prm_rates[1])
    model = HashModel(supports_n=supports_n, price=gen_price)
    scorer = hash_prm(prm_price)
    sampling = Sampling(max_tokens=max_tokens)
    strategy: BestOfN | BeamSearch | DVTS
    if kind == "best_of_n":
        verifier = RewardModel(endpoint=scorer)
        strategy = BestOfN(
            n=width * fan + 1, batch=fan, verifier=verifier, sampling=sampling, reserve_for_scoring=reserve
        )
    elif kind == "beam":
        prm = ProcessRewardModel(endpoint=scorer)
        strategy = BeamSearch(
            width=width,
            candidates=width * fan,
            prm=prm,
            max_depth=4,
            sampling=sampling,
            reserve_for_scoring=reserve,
        )
    else:
        prm = ProcessRewardModel(endpoint=scorer)
        strategy = DVTS(
            subtrees=width, width=fan, prm=prm, max_depth=4, sampling=sampling, reserve_for_scoring=reserve
        )
    # Budgets in units of about one step and its scoring, so that runs range from nothing
    # affordable to everything done.
    unit_tokens = 150 + max_tokens
    unit_usd = 150 * (gen_price.input + prm_price.input) + max_tokens * gen_price.output + prm_price.output
    unit_usd /= 1e6
    usd = unit_usd * usd_scale
    tokens = None if token_scale is None else max(1, int(unit_tokens * token_scale))
    budget = Budget(usd=usd, tokens=tokens)

    async def main() -> Result:
        async with Client(model.endpoint) as client:
            return await client.run(QUESTION, strategy=strategy, budget=budget, seed=seed)

    try:
        with warnings.catch_warnings():
            # A budget that refuses every scoring call makes the strategy fall back (and say so);
            # this test is about what was spent, not about the fallback.
            warnings.simplefilter("ignore", Final.Warning)
            result = anyio.run(main)
    except BudgetTooSmallError as exc:  # not even the first request fits: nothing was sent
        assert exc.receipt is None
        return
    prices = {model.endpoint.name: gen_price, scorer.name: prm_price}
    assert _spent_pico(result, prices) <= usd_to_pico(usd)
    assert result.cost_usd <= usd
    if tokens is not None:
        assert result.usage.total_tokens <= tokens
    assert not any(c.overrun for c in result.charges)
    assert result.stop_reason in ("strategy_done", "budget")


# -- scoring in the expanding round -----------------------------------------------------------


class Shuffled(HashModel):
    """`HashModel` whose requests come back in an order set by their content, not their sending.

    Each request yields to the event loop a hash-chosen number of times first (no wall time),
    so the expansions of a round arrive in a scrambled order.
    """

    async def fn(self, request: Request) -> list[str]:
        for _ in range(_h(request.prompt, request.prefill, request.seed) % 13):
            await anyio.lowlevel.checkpoint()
        return await super().fn(request)


def seeded_prm(price: Price = PRM_PRICE) -> FunctionEndpoint:
    """A PRM whose score depends on the request's seed too (like a sampled judge), and which
    also answers in a scrambled order."""

    async def fn(request: Request) -> Completion:
        assert request.messages is not None
        content = request.messages[-1].content
        for _ in range(_h(content) % 7):
            await anyio.lowlevel.checkpoint()
        return Completion(text="", score=(_h(content, request.seed) % 1000) / 1000)

    return FunctionEndpoint(fn, name="sprm", price=price)


class ScoredAfterTheRound:
    """The same search with its steps scored in a round of their own: the run has no
    `follow_up`, so the controller waits for its next plan (the search before scoring moved
    into the expanding round)."""

    def __init__(self, strategy: BeamSearch | DVTS) -> None:
        self.strategy = strategy

    @property
    def name(self) -> str:
        return self.strategy.name

    def default_stop(self) -> Any:
        return self.strategy.default_stop()

    def start(self, task: Any) -> Any:
        return _WithoutFollowUp(self.strategy.start(task))


class _WithoutFollowUp:
    def __init__(self, run: Any) -> None:
        self.run = run

    def plan(self, state: Any) -> Any:
        return self.run.plan(state)

    def observe(self, outcome: Any) -> None:
        self.run.observe(outcome)

    def evidence(self) -> Any:
        return self.run.evidence()

    def finish(self, state: Any) -> Any:
        return self.run.finish(state)

    def answer_of(self, completion: Completion) -> str | None:
        return self.run.answer_of(completion)


def _content(result: Result) -> tuple[Any, ...]:
    sends = sorted(
        (e.data["purpose"], e.data["seed"] or -1, e.data["endpoint"])
        for e in result.trace
        if e.kind == "send"
    )
    return (
        result.answer,
        result.text,
        result.details,
        result.cost_usd,
        result.stop_reason,
        sorted((s.purpose, s.text) for s in result.samples),
        sends,
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["beam", "dvts"])
@pytest.mark.parametrize("supports_n", [True, False])
@pytest.mark.parametrize("budget_usd", [1.0, 0.0012, 0.0008])  # a full search costs ~$0.002
@pytest.mark.parametrize("reserve", [True, False])
async def test_scoring_in_the_round_chooses_what_a_scoring_round_chose(
    kind: str, supports_n: bool, budget_usd: float, reserve: bool
) -> None:
    prm = ProcessRewardModel(endpoint=seeded_prm(), aggregation="min")
    sampling = Sampling(max_tokens=20)
    common: dict[str, Any] = {
        "prm": prm,
        "max_depth": 4,
        "sampling": sampling,
        "reserve_for_scoring": reserve,
    }
    strategy: BeamSearch | DVTS = (
        BeamSearch(width=2, candidates=4, **common) if kind == "beam" else DVTS(subtrees=2, width=2, **common)
    )
    for seed in range(6):
        runs = []
        for run_as in (strategy, ScoredAfterTheRound(strategy)):
            # A client each: a client learns from its calls (prompt bounds), so a second call
            # on the same one could reserve differently.
            async with Client(Shuffled(supports_n=supports_n).endpoint) as client:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Final.Warning)  # a tight budget's unscored fallback
                    runs.append(
                        await client.run(QUESTION, strategy=run_as, seed=seed, budget=Budget(usd=budget_usd))
                    )
        now, before = runs
        # The same beams kept, the same scores (the PRM's seeds included), the same answer.
        assert _content(now) == _content(before)
        steps = now.details["rounds"]
        assert before.rounds >= 2 * steps - 1  # expand, score, ... (a last round may stop first)
        if budget_usd == 1.0:
            # One sequential round per step: its scoring overlaps its expansions.
            assert now.rounds == steps == len({e.round for e in now.trace if e.kind == "send"})
        assert now.rounds < before.rounds


@pytest.mark.asyncio
async def test_steps_are_scored_while_other_expansions_are_out() -> None:
    log: list[str] = []

    async def fn(request: Request) -> list[str]:
        steps = steps_of(request.prefill or "")
        if steps and path_of(steps[-1]) == "A":
            for _ in range(50):  # the slow expansion of round 1
                await anyio.lowlevel.checkpoint()
        log.append(f"expanded {path_of(steps[-1]) if steps else 'root'}")
        last = path_of(steps[-1]) if steps else ""
        return [f"step {last}{c}" for c in "ABCD"[: request.n]]

    async def score(request: Request) -> Completion:
        assert request.messages is not None
        last = path_of(steps_of(request.messages[-1].content)[-1])
        log.append(f"scored {last}")
        return Completion(text="", score={"A": 0.9, "B": 0.8}.get(last, 0.1))

    ep = FunctionEndpoint(fn, name="m", supports_n=True, supports_prefill=True)
    prm = ProcessRewardModel(endpoint=FunctionEndpoint(score, name="prm"))
    async with Client(ep) as client:
        result = await client.run(
            QUESTION, strategy=BeamSearch(width=2, candidates=4, prm=prm, max_depth=2), seed=0
        )
    # Round 1 expands A (slow) and B: B's steps wait for A (children are submitted in request
    # order), so they are scored once A is back, still in round 1.
    assert log.index("expanded A") < log.index("scored BA")
    # In round 0 every step is scored as soon as the one root request is back.
    assert log[:5] == ["expanded root", "scored A", "scored B", "scored C", "scored D"]
    assert result.rounds == 2 and result.details["rounds"] == 2


@pytest.mark.asyncio
async def test_a_raising_prm_mid_round_charges_the_expansions_out_and_raises() -> None:
    from adaptive_strategies.verifiers import VerifierError

    log: list[str] = []
    raised = anyio.Event()

    async def fn(request: Request) -> list[str]:
        steps = steps_of(request.prefill or "")
        last = path_of(steps[-1]) if steps else ""
        if last == "B":  # still out when the PRM raises on A's steps (a search that scores
            with anyio.fail_after(10):  # only after every expansion is back deadlocks here)
                await raised.wait()
        log.append(f"expanded {last or 'root'}")
        return [f"step {last}{c}" for c in "ABCD"[: request.n]]

    async def prm(question: str, solution: str) -> float:
        last = path_of(steps_of(solution)[-1])
        if len(last) == 2:
            log.append(f"raised on {last}")
            raised.set()
            raise RuntimeError("PRM bug")
        return {"A": 0.9, "B": 0.8}.get(last, 0.1)

    ep = FunctionEndpoint(fn, name="m", price=GEN_PRICE, supports_n=True, supports_prefill=True)
    async with Client(ep) as client:
        with pytest.raises(VerifierError) as info:
            await client.run(
                QUESTION, strategy=BeamSearch(width=2, candidates=4, prm=prm), seed=0, budget=Budget(usd=1.0)
            )
    # B's expansion was still out when the PRM raised on A's steps: it came back, and then
    # nothing more was sent (B's steps were not scored, no third round).
    assert log[:3] == ["expanded root", "expanded A", "raised on AA"]
    assert sorted(log[3:]) == ["expanded B", "raised on AB"]
    receipt = info.value.receipt
    assert receipt is not None and receipt.stop_reason == "error"
    # Every expansion is charged and on the receipt, the one that was out included.
    generate = [c for c in receipt.charges if c.endpoint == ep.name]
    assert len(generate) == 3 and all(c.status == "ok" and c.usd > 0 for c in generate)
    assert receipt.cost_usd == pytest.approx(sum(c.usd for c in receipt.charges))
    sends = [e.data["purpose"] for e in receipt.trace if e.kind == "send"]
    assert sorted(sends) == ["generate"] * 3 + ["verify"] * (4 + 2)


@pytest.mark.asyncio
async def test_a_prm_endpoint_that_fails_every_call_of_a_round_is_its_error() -> None:
    from adaptive import EndpointError

    async def down(request: Request) -> Completion:
        raise EndpointError("prm is down", endpoint="prm")

    tree = Tree()
    prm_ep = FunctionEndpoint(down, name="prm", price=PRM_PRICE)
    prm = ProcessRewardModel(endpoint=prm_ep)
    async with Client(tree.endpoint) as client:
        with pytest.raises(EndpointError, match="prm is down") as info:
            await client.run(QUESTION, strategy=beam(prm=prm), seed=0, budget=Budget(usd=1.0))
    receipt = info.value.receipt
    assert receipt is not None and receipt.stop_reason == "error"
    # The root's expansion (charged) and its four steps' PRM calls (all failed), nothing more.
    statuses = sorted((c.endpoint, c.status) for c in receipt.charges)
    assert statuses == sorted([(prm_ep.name, "failed")] * 4 + [(tree.endpoint.name, "ok")])
    assert len(tree.requests) == 1


@pytest.mark.asyncio
async def test_one_failed_prm_call_leaves_that_step_unscored_and_the_search_goes_on() -> None:
    from adaptive import EndpointError

    async def flaky(request: Request) -> Completion:
        assert request.messages is not None
        last = path_of(steps_of(request.messages[-1].content)[-1])
        if last == "D":
            raise EndpointError("one bad call", endpoint="prm")
        return Completion(text="", score=STEP_SCORES.get(last, 0.0))

    tree = Tree()
    prm_ep = FunctionEndpoint(flaky, name="prm", price=PRM_PRICE)
    prm = ProcessRewardModel(endpoint=prm_ep)
    async with Client(tree.endpoint) as client:
        result = await client.run(
            QUESTION, strategy=beam(prm=prm, max_depth=2), seed=0, budget=Budget(usd=1.0)
        )
    # "D" (the second best by the table) went unscored, so B (.9) and A (.3) are kept.
    assert tree.rounds()[1] == {partial("B"), partial("A")}
    assert result.details["beams"][0]["kept"][1]["score"] == 0.3
    assert [c.status for c in result.charges if c.endpoint == prm_ep.name].count("failed") == 1
    assert result.stop_reason == "strategy_done" and result.details["fallback"] is None


# -- on the simulator ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["raw", "prefill"])
async def test_beam_search_on_the_simulator(mode: str) -> None:
    problem = demo_problems(2)[1]
    reward = SimRewardEndpoint()
    strategy = BeamSearch(
        width=2,
        candidates=4,
        mode=mode,
        prm=ProcessRewardModel(endpoint=reward),
        sampling=Sampling(temperature=0.8, max_tokens=200),
    )
    async with Client(SimEndpoint()) as client:
        result = await client.run(problem.question, strategy=strategy, seed=1, budget=Budget(usd=0.01))
    assert result.details["mode"] == mode and result.details["finished"]
    assert result.answer is not None and result.answer.lstrip("-").isdigit()
    best = max(result.details["solutions"], key=lambda s: s["score"])
    assert result.answer == best["answer"] and result.details["best_score"] == best["score"]
    checks = [s for s in result.samples if s.purpose == "verify"]
    assert checks and {s.endpoint for s in checks} == {reward.name}
    assert result.cost_usd <= 0.01
    # Each expansion keeps at most width beams.
    assert all(len(entry["kept"]) <= 2 for entry in result.details["beams"])


@pytest.mark.asyncio
async def test_dvts_on_the_simulator() -> None:
    problem = demo_problems(2)[0]
    strategy = DVTS(
        subtrees=3,
        width=2,
        prm=ProcessRewardModel(endpoint=SimRewardEndpoint()),
        sampling=Sampling(temperature=0.8, max_tokens=200),
    )
    async with Client(SimEndpoint()) as client:
        result = await client.run(problem.question, strategy=strategy, seed=2)
    leaves = result.details["solutions"]
    assert 1 <= len(leaves) <= 3 and len({leaf["group"] for leaf in leaves}) == len(leaves)
    weights: dict[str, float] = {}
    for leaf in leaves:
        weights[leaf["answer"]] = weights.get(leaf["answer"], 0.0) + leaf["score"]
    assert result.answer == max(weights, key=lambda a: weights[a])


def test_a_raw_template_is_never_silently_ignored_by_prefill_mode() -> None:
    from types import SimpleNamespace

    from adaptive import ConfigError, FunctionEndpoint

    def task_on(*, raw: bool, prefill: bool) -> Any:
        ep = FunctionEndpoint(lambda request: "x", name="ep", supports_raw=raw, supports_prefill=prefill)
        return SimpleNamespace(endpoint=ep)

    both, chat_only = task_on(raw=True, prefill=True), task_on(raw=False, prefill=True)
    template = "Problem: {question}\nSolution:\n"
    assert BeamSearch().resolve_mode(both) == "prefill"  # auto prefers prefill...
    assert BeamSearch(raw_template=template).resolve_mode(both) == "raw"  # ...unless a template is given
    with pytest.raises(ConfigError, match=r"raw_template.*supports_raw is False"):
        BeamSearch(raw_template=template).resolve_mode(chat_only)
    with pytest.raises(ConfigError, match="raw_template is the prompt of mode='raw'"):
        BeamSearch(mode="prefill", raw_template=template)
    with pytest.raises(ConfigError, match="raw_template is the prompt of mode='raw'"):
        DVTS(mode="prefill", raw_template=template)
    assert BeamSearch(mode="prefill").resolve_mode(chat_only) == "prefill"
