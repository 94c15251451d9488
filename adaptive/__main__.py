"""`python -m adaptive`: the command line (see `adaptive.cli`)."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Entry point of `python -m adaptive` and the `adaptive` script."""
    from .cli import main as run

    raise SystemExit(run())


if __name__ == "__main__":
    main()
