"""Test-time strategies built on adaptive's public API only."""

__all__: list[str] = []
