"""Test-time strategies built on adaptive's public API only.

Importing this package registers every strategy by name (for `strategy_from_config`).
"""

from .self_consistency import AdaptiveConsistency, SelfConsistency, VoteRun

__all__ = ["AdaptiveConsistency", "SelfConsistency", "VoteRun"]
