"""The one token-estimate rule (adaptive._tokens)."""

from __future__ import annotations

from adaptive._tokens import estimate_tokens


def test_estimate_tokens_rounds_up_four_bytes_a_token_and_respects_the_cap() -> None:
    assert [estimate_tokens(n) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert estimate_tokens(400, cap=7) == 7
    assert estimate_tokens(3, cap=7) == 1
