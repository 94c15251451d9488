"""Test-time strategies built on adaptive's public API only.

Importing this package registers every strategy by name (for `strategy_from_config`).
"""

from .beam_search import DVTS, BeamSearch, default_finish_marker
from .best_of_n import BestOfN
from .self_consistency import AdaptiveConsistency, SelfConsistency, VoteRun
from .verifiers import (
    Aggregation,
    ExactChecker,
    FunctionVerifier,
    LLMJudge,
    ProcessRewardModel,
    RewardModel,
    ScoreValue,
    Verification,
    Verifier,
    aggregate_steps,
    parse_rating,
    parse_yes_no,
    read_score,
    scoring_calls,
    scoring_worst_case,
    verifier_from_config,
    verifier_names,
)

__all__ = [
    "DVTS",
    "AdaptiveConsistency",
    "Aggregation",
    "BeamSearch",
    "BestOfN",
    "ExactChecker",
    "FunctionVerifier",
    "LLMJudge",
    "ProcessRewardModel",
    "RewardModel",
    "ScoreValue",
    "SelfConsistency",
    "Verification",
    "Verifier",
    "VoteRun",
    "aggregate_steps",
    "default_finish_marker",
    "parse_rating",
    "parse_yes_no",
    "read_score",
    "scoring_calls",
    "scoring_worst_case",
    "verifier_from_config",
    "verifier_names",
]
