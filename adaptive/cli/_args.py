"""Argument types and checks shared by the commands (argparse `type=` callables)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from .._prices import Price

__all__ = [
    "int_at_least",
    "non_negative_float",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
    "price_pair",
]


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def port(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def price_pair(
    parser: argparse.ArgumentParser, flag: str, inp: float | None, out: float | None
) -> Price | None:
    """The `Price` of a `FLAG-in` / `FLAG-out` pair of options: both or neither (a usage error)."""
    if (inp is None) != (out is None):
        parser.error(f"give both {flag}-in and {flag}-out, or neither")
    return None if inp is None or out is None else Price(input=inp, output=out)
