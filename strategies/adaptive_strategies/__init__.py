"""Test-time strategies built on adaptive's public API only.

Importing this package registers every strategy by name (for `strategy_from_config`).
"""

from .beam_search import DVTS, BeamSearch, default_finish_marker
from .best_of_n import BestOfN
from .replies import (
    Aggregation,
    ScoreValue,
    aggregate_steps,
    parse_rating,
    parse_reward,
    parse_step_scores,
    parse_yes_no,
    read_score,
)
from .self_consistency import AdaptiveConsistency, SelfConsistency, VoteRun
from .verifiers import (
    ExactChecker,
    FunctionVerifier,
    LLMJudge,
    ProcessRewardModel,
    RewardModel,
    Verification,
    Verifier,
    VerifierField,
    affordable,
    call_worst_case,
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
    "VerifierField",
    "VoteRun",
    "affordable",
    "aggregate_steps",
    "call_worst_case",
    "default_finish_marker",
    "parse_rating",
    "parse_reward",
    "parse_step_scores",
    "parse_yes_no",
    "read_score",
    "scoring_worst_case",
    "verifier_from_config",
    "verifier_names",
]
