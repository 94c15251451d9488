"""The exception tree: the drawing in the module docstring is the class hierarchy."""

from __future__ import annotations

import builtins
import re

import pytest

import adaptive
import adaptive.ledger
from adaptive import _exceptions

LINE = re.compile(r"^(?P<prefix>[ │├└─]*)(?P<name>[A-Z][A-Za-z]*Error)\b(?:\s*\((?P<extra>[^)]*)\))?")


def drawn_tree() -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """{class name: (parent name, extra bases)} parsed from the docstring drawing."""
    doc = _exceptions.__doc__
    assert doc is not None
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]  # the indented block after "::"
    tree: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    stack: list[tuple[int, str]] = []  # (depth, name) of the current path from the root
    base: int | None = None
    for line in block.splitlines():
        m = LINE.match(line)
        if m is None:
            continue  # a continuation line of a description
        indent = len(m.group("prefix"))
        base = indent if base is None else base
        assert (indent - base) % 4 == 0, f"misaligned line in the drawing: {line!r}"
        depth = (indent - base) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        assert depth == (stack[-1][0] + 1 if stack else 0), f"a level is skipped at {line!r}"
        extra = tuple(e.strip() for e in (m.group("extra") or "").split(",") if e.strip())
        tree[m.group("name")] = (parent, extra)
        stack.append((depth, m.group("name")))
    return tree


def test_the_drawing_parses_into_a_tree_rooted_at_adaptive_error() -> None:
    tree = drawn_tree()
    roots = [name for name, (parent, _) in tree.items() if parent is None]
    assert roots == ["AdaptiveError"]
    assert tree["StreamError"] == ("ResponseError", ())
    assert tree["ConfigError"] == ("AdaptiveError", ("ValueError",))


def test_the_drawing_matches_the_class_hierarchy() -> None:
    tree = drawn_tree()
    assert set(tree) == set(_exceptions.__all__), "the drawing names every error class, and only those"
    for name, (parent, extra) in tree.items():
        cls = getattr(_exceptions, name)
        expected = [getattr(_exceptions, parent)] if parent else [Exception]
        expected += [getattr(builtins, e) for e in extra]
        assert list(cls.__bases__) == expected, (
            f"{name} derives from {cls.__bases__}, the drawing says {expected}"
        )


def test_every_error_derives_from_adaptive_error_and_is_exported() -> None:
    for name in _exceptions.__all__:
        cls = getattr(_exceptions, name)
        assert issubclass(cls, adaptive.AdaptiveError)
        assert issubclass(cls, Exception)
        # The shared-ledger error is reached as adaptive.ledger.X (the top-level names are full).
        home = adaptive.ledger if name in adaptive.ledger.__all__ else adaptive
        assert getattr(home, name) is cls


def test_config_errors_are_value_errors() -> None:
    assert issubclass(adaptive.ConfigError, ValueError)
    assert issubclass(adaptive.UnknownPriceError, ValueError)
    assert not issubclass(adaptive.EndpointError, ValueError)
    assert not issubclass(adaptive.BudgetExceededError, ValueError)
    with pytest.raises(ValueError):
        adaptive.Budget(usd=-1)


def test_error_attributes() -> None:
    err = adaptive.BudgetExceededError("too much", dimension="tokens")
    assert err.dimension == "tokens" and str(err) == "too much" and err.receipt is None
    http = adaptive.RateLimitError("429", status_code=429, body="x" * 5000, endpoint="ep", retry_after=2.0)
    assert (http.status_code, len(http.body), http.endpoint, http.retry_after) == (429, 2000, "ep", 2.0)
    assert isinstance(http, adaptive.HTTPStatusError) and isinstance(http, adaptive.EndpointError)
    stream = adaptive.StreamError("cut", endpoint="ep", partial="partial response")
    assert stream.partial == "partial response" and isinstance(stream, adaptive.ResponseError)
    assert adaptive.TransportError("down").endpoint == ""


def test_with_receipt_attaches_and_returns_the_error() -> None:
    err = adaptive.ServerError("500", status_code=500, body="")
    receipt = adaptive.Result(answer=None, cost_usd=0.5)
    assert err.with_receipt(receipt) is err
    assert err.receipt is receipt
    assert adaptive.AdaptiveError().receipt is None  # class default, not shared state


class _FinishRaises:
    """One sample, then a `finish` that raises: what a search left failing in its last round."""

    def __init__(self, task: adaptive.Task) -> None:
        self.task = task
        self.asked = False

    def plan(self, state: adaptive.State) -> adaptive.Plan | None:
        if self.asked:
            return None
        self.asked = True
        return adaptive.Plan(sample=self.task.request(adaptive.Sampling()), min_batch=1, max_batch=1)

    def observe(self, outcome: adaptive.Outcome) -> None:
        pass

    def evidence(self) -> adaptive.Evidence:
        return adaptive.Evidence()

    def finish(self, state: adaptive.State) -> adaptive.Final:
        raise adaptive.ResponseError("the last round's scores are unusable", endpoint="judge")

    def answer_of(self, completion: adaptive.Completion) -> str | None:
        return completion.text


class _FinishRaisesStrategy:
    name = "finish-raises"

    def start(self, task: adaptive.Task) -> _FinishRaises:
        return _FinishRaises(task)

    def default_stop(self) -> adaptive.StopRule | None:
        return None


@pytest.mark.asyncio
async def test_an_error_raised_by_a_strategys_finish_carries_the_receipt() -> None:
    price = adaptive.Price(input=1.0, output=2.0)

    async def fn(request: adaptive.Request) -> str:
        return "42"

    ep = adaptive.FunctionEndpoint(fn, name="m", price=price)
    async with adaptive.Client(ep) as client:
        with pytest.raises(adaptive.ResponseError, match="unusable") as info:
            await client.run("q?", strategy=_FinishRaisesStrategy(), budget=adaptive.Budget(usd=1.0))
    receipt = info.value.receipt
    assert receipt is not None and receipt.stop_reason == "error"
    assert receipt.stop is not None and receipt.stop.rule == "ResponseError"
    assert len(receipt.charges) == 1 and receipt.charges[0].status == "ok"
    assert receipt.cost_usd == pytest.approx(receipt.charges[0].usd) and receipt.cost_usd > 0
