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

The HTTP server (`SimServer`, `serve_sim`, `run_sim_server`) and the helpers that run any ASGI
app on uvicorn (`serve_app`, `run_app_in_thread`, `serve_app_forever`, `ServerLimits`,
`RunningServer`) need the server extra: `pip install 'adaptive-ttc[server]'`.
"""

import importlib
from typing import TYPE_CHECKING, Any

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
from ._solver import STEP_DELIMITER, SimModel, SimSample, tokenize, truncate
from ._verifier import SimVerifier

if TYPE_CHECKING:
    from ._asgi import RunningServer, ServerLimits, run_app_in_thread, serve_app, serve_app_forever
    from ._server import SimServer, run_sim_server, serve_sim

# The HTTP server needs the server extra (starlette, uvicorn): it is imported on first use, so
# `import adaptive.sim` (the demo, SimEndpoint) works without it.
_SERVER_NAMES = {
    "RunningServer": "_asgi",
    "ServerLimits": "_asgi",
    "run_app_in_thread": "_asgi",
    "serve_app": "_asgi",
    "serve_app_forever": "_asgi",
    "SimServer": "_server",
    "run_sim_server": "_server",
    "serve_sim": "_server",
}


def __getattr__(name: str) -> Any:
    module = _SERVER_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


__all__ = [
    "STEP_DELIMITER",
    "Op",
    "ParsedProblem",
    "Problem",
    "RunningServer",
    "ServerLimits",
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
    "run_app_in_thread",
    "run_sim_server",
    "serve_app",
    "serve_app_forever",
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
