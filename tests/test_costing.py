"""Worst-case costs of planned work (adaptive._costing)."""

from __future__ import annotations

from adaptive import Call, FunctionEndpoint, Price, Request
from adaptive._costing import call_worst_case, calls_worst_case, candidate_bytes, work_worst_case


def test_candidate_bytes_counts_the_prefix_in_utf8_and_four_per_token() -> None:
    assert candidate_bytes(10) == 40
    assert candidate_bytes(10, "é step") == len("é step".encode()) + 40 == 47


async def _never(request: Request) -> str:
    raise AssertionError("costing never sends")


def test_work_worst_case_counts_the_follow_up_once_per_completion() -> None:
    gen = FunctionEndpoint(_never, name="gen", price=Price(input=1.0, output=2.0))
    judge = FunctionEndpoint(_never, name="judge", price=Price(input=3.0, output=5.0))
    expand = Call(Request(prompt="q " * 20, n=3, max_tokens=30))
    score = Call(Request(prompt="s " * 50, max_tokens=4), endpoint=judge)
    g_pico, g_tokens = call_worst_case(expand, gen)
    s_pico, s_tokens = call_worst_case(score, gen)
    assert calls_worst_case([expand, score], gen) == (g_pico + s_pico, g_tokens + s_tokens, 3 + 1)
    both = work_worst_case([(expand, (score, score))], gen)
    assert both == (g_pico + 3 * 2 * s_pico, g_tokens + 3 * 2 * s_tokens, 3 + 3 * 2)
    assert work_worst_case([], gen) == (0, 0, 0)
    # the task's price for the task's endpoint, every other endpoint at its own
    dear = Price(input=10.0, output=20.0)
    assert work_worst_case([(expand, (score,))], gen, default_price=dear)[0] == (
        call_worst_case(expand, gen, default_price=dear)[0] + 3 * s_pico
    )
