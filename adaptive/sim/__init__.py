"""A simulated reasoning model, its verifier and its problems, for offline demos and tests.

No GPU and no network: `SimModel` writes step-by-step solutions to generated arithmetic word
problems, slipping the way real models do (recurring wrong answers, errors that propagate,
hard problems with a wrong majority answer), with token usage and logprobs. `SimVerifier`
scores steps and solutions with calibrated noise. `SimEndpoint` and `SimRewardEndpoint` put
them behind the adaptive endpoint contract.

Example:
    >>> from adaptive.sim import SimModel, demo_problems
    >>> problem = demo_problems(1)[0]
    >>> sample = SimModel().sample(problem.question, seed=1)
    >>> sample.answer is not None
    True
"""

from ._endpoint import (
    SimEndpoint,
    SimRewardEndpoint,
    count_prompt_tokens,
    simulate_response,
    simulate_reward_response,
    simulate_samples,
    simulated_timing,
)
from ._problems import (
    Op,
    ParsedProblem,
    Problem,
    demo_problems,
    extract_answer,
    make_problems,
    parse_problem,
    split_prompt,
    split_steps,
)
from ._server import SimServer, run_sim_server, serve_sim
from ._solver import STEP_DELIMITER, SimModel, SimSample, tokenize, truncate
from ._verifier import SimVerifier

__all__ = [
    "STEP_DELIMITER",
    "Op",
    "ParsedProblem",
    "Problem",
    "SimEndpoint",
    "SimModel",
    "SimRewardEndpoint",
    "SimSample",
    "SimServer",
    "SimVerifier",
    "count_prompt_tokens",
    "demo_problems",
    "extract_answer",
    "make_problems",
    "parse_problem",
    "run_sim_server",
    "serve_sim",
    "simulate_response",
    "simulate_reward_response",
    "simulate_samples",
    "simulated_timing",
    "split_prompt",
    "split_steps",
    "tokenize",
    "truncate",
]
