"""A simulated verifier: a process reward model (per step) and an outcome reward model.

It knows the true answer (it parses the problem like the solver does) but sees it through
noise, so its scores are informative without being an oracle: by default a step score ranks a
correct step above a wrong one about 80% of the time (AUROC), and so does a solution score. Part of the
noise belongs to the value or answer rather than to the wording, so the verifier holds a
consistent (sometimes wrong) opinion of an answer however it is written, and on problems
with a tempting misreading it is fooled more often, as real reward models are.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from pydantic import Field

from .._exceptions import ConfigError
from .._models import ValidatedModel
from .._prices import Price
from ._problems import ParsedProblem, _unit, extract_answer, last_number, parse_problem, split_steps

__all__ = ["SimVerifier"]

_NORMAL = statistics.NormalDist()
_SEPARATION = 1.0  # the mean signal is +-this, in noise-free units
_STEP_NOISE = 1.4  # at noise=1: AUROC = Phi(sqrt(2) * 1.0 / 1.4) ~ 0.84, ~0.8 with the traps
_OUTCOME_NOISE = 1.35  # ~0.85, ~0.82 with the traps
_STEP_PRIOR = 1.0  # log-odds that a step is on track, before looking at it
_OUTCOME_PRIOR = 0.5


def _gauss(*parts: object) -> float:
    u = _unit(*parts)
    return _NORMAL.inv_cdf(min(max(u, 1e-12), 1 - 1e-12))


def _sigmoid(x: float) -> float:
    if x < -40:
        return 0.0
    return 1 / (1 + math.exp(-x))


class SimVerifier(ValidatedModel):
    """Scores (partial) solutions of sim problems with calibrated, seeded noise.

    Args:
        name: The model name shown on endpoints and responses.
        seed: Seeds the noise: the same input always gets the same score.
        noise: Scales the noise (0 is a perfect judge; 1 gives step AUROC about 0.8).
        answer_correlation: Share of the noise variance tied to the value or answer rather
            than to the exact text (0 to 1).
        price: Price per million tokens (default: a small hosted reward model, $0.10 / $0.10).
    """

    name: str = "sim-verifier"
    seed: int = 0
    noise: float = Field(default=1.0, ge=0.0, le=10.0)
    answer_correlation: float = Field(default=0.5, ge=0.0, le=1.0)
    price: Price = Field(default_factory=lambda: Price(input=0.10, output=0.10))

    def _posterior(self, on: bool, shared: float, own: float, bias: float, sd: float, prior: float) -> float:
        rho = self.answer_correlation
        sd = max(sd * self.noise, 0.05)
        mix = math.sqrt(rho) * shared + math.sqrt(1 - rho) * own
        z = (_SEPARATION if on else -_SEPARATION) + bias + sd * mix
        # Equal-variance Gaussian signal: this log-odds is the Bayes posterior given z.
        return _sigmoid(prior + 2 * _SEPARATION * z / sd**2)

    def score_steps(self, question: str | ParsedProblem, steps: Sequence[str]) -> list[float]:
        """P(each step is still on track), for the steps of a (partial) solution.

        Step `j` is on track when the running value it arrives at (its last number) is the
        correct value after operation `j`. A question with no recognisable problem gets 0.5s.
        """
        pp = question if isinstance(question, ParsedProblem) else parse_problem(question)
        if pp is None:
            return [0.5] * len(steps)
        out = []
        for j, step in enumerate(steps):
            value = last_number(step)
            truth = pp.values[j] if j < len(pp.values) else pp.answer
            on = value is not None and value == truth
            # A tempting misreading fools the judge too, once the solution has passed it.
            bias = 0.8 * _SEPARATION if (not on and pp.trap_step is not None and j >= pp.trap_step) else 0.0
            shared = _gauss("step-value", self.seed, pp.key, j, value)
            own = _gauss("step-text", self.seed, pp.key, j, step)
            out.append(self._posterior(on, shared, own, bias, _STEP_NOISE, _STEP_PRIOR))
        return out

    def score(self, question: str | ParsedProblem, solution: str) -> float:
        """P(the solution's final answer is correct).

        The answer is the number after "The answer is" (else the last number written); a
        solution with neither scores low. A question with no recognisable problem gets 0.5.
        """
        pp = question if isinstance(question, ParsedProblem) else parse_problem(question)
        if pp is None:
            return 0.5
        answer = extract_answer(solution)
        if answer is None:
            last = last_number(solution)
            answer = None if last is None else str(last)
        if answer is None:
            return 0.02
        on = answer == str(pp.answer)
        bias = 0.8 * _SEPARATION if (not on and pp.trap_step is not None) else 0.0
        shared = _gauss("answer", self.seed, pp.key, answer)
        own = _gauss("solution", self.seed, pp.key, solution)
        return self._posterior(on, shared, own, bias, _OUTCOME_NOISE, _OUTCOME_PRIOR)

    def score_solution(self, question: str | ParsedProblem, solution: str, how: str = "auto") -> float:
        """One score for a (partial) solution.

        Args:
            question: Text holding the problem, or a parsed one.
            solution: The solution text, steps separated by blank lines.
            how: "outcome" (`score`), "last" or "min" (of `score_steps`), or "auto": outcome
                for a finished solution (one that states its answer), last step otherwise.

        Raises:
            ConfigError: `how` is not one of those.
        """
        if how not in ("auto", "outcome", "last", "min"):
            raise ConfigError(f"how must be 'auto', 'outcome', 'last' or 'min', got {how!r}")
        if how == "outcome" or (how == "auto" and extract_answer(solution) is not None):
            return self.score(question, solution)
        steps = self.score_steps(question, split_steps(solution))
        if not steps:
            return 0.5
        return min(steps) if how == "min" else steps[-1]
