"""Token counts estimated from text, for when a server reports none.

One rule, used everywhere the SDK has to guess: about `BYTES_PER_TOKEN` UTF-8 bytes a token,
the typical ratio of BPE tokenizers on English text. It is an *estimate*, not a bound (dense
text such as arithmetic runs closer to two bytes a token): budget reservations use the byte
count itself, which is a bound (see `adaptive._ledger.prompt_token_bound`).
"""

from __future__ import annotations

__all__ = ["BYTES_PER_TOKEN", "estimate_tokens"]

BYTES_PER_TOKEN = 4


def estimate_tokens(nbytes: int, cap: int | None = None) -> int:
    """Estimated tokens in `nbytes` UTF-8 bytes of text: ceil(nbytes / 4), at most `cap`.

    Args:
        nbytes: The text's size in UTF-8 bytes.
        cap: An upper limit, e.g. the request's `max_tokens` (a server stops there).
    """
    tokens = -(-nbytes // BYTES_PER_TOKEN)
    return tokens if cap is None else min(tokens, cap)
