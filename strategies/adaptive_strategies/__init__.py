"""Test-time strategies built on adaptive's public API only.

Each strategy is declared by name as an entry point in the distribution's pyproject.toml
(group `adaptive.strategies`), so `client.run(q, strategy="best-of-n")` finds it without this
package being imported first.
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
from .self_consistency import AdaptiveConsistency, EarlyStop, SelfConsistency, VoteRun
from .verifiers import (
    ExactChecker,
    FunctionVerifier,
    LLMJudge,
    ProcessRewardModel,
    RewardModel,
    Verification,
    Verifier,
    VerifierError,
    VerifierField,
    describe_error,
    scoring_calls,
    verifier_from_config,
    verifier_names,
)

__all__ = [
    "DVTS",
    "AdaptiveConsistency",
    "Aggregation",
    "BeamSearch",
    "BestOfN",
    "EarlyStop",
    "ExactChecker",
    "FunctionVerifier",
    "LLMJudge",
    "ProcessRewardModel",
    "RewardModel",
    "ScoreValue",
    "SelfConsistency",
    "Verification",
    "Verifier",
    "VerifierError",
    "VerifierField",
    "VoteRun",
    "aggregate_steps",
    "default_finish_marker",
    "describe_error",
    "parse_rating",
    "parse_reward",
    "parse_step_scores",
    "parse_yes_no",
    "read_score",
    "scoring_calls",
    "verifier_from_config",
    "verifier_names",
]
