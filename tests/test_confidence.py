"""Trace confidence from token logprobs (DeepConf style): the pure measures and the monitor."""

from __future__ import annotations

import math
import random

import pytest

from adaptive import ConfigError
from adaptive._models import Completion, TokenLogprob
from adaptive.confidence import (
    ConfidenceMonitor,
    TraceConfidence,
    group_confidences,
    threshold_from,
    token_confidence,
    top_share,
)


def toks(values: list[float]) -> tuple[TokenLogprob, ...]:
    return tuple(TokenLogprob(token="t", logprob=v) for v in values)


def brute_groups(values: list[float], w: int) -> list[float]:
    w = min(w, len(values))
    return [sum(values[i : i + w]) / w for i in range(len(values) - w + 1)]


@pytest.mark.parametrize("seed", range(5))
def test_group_confidences_match_the_direct_sliding_mean(seed: int) -> None:
    rng = random.Random(seed)
    values = [-rng.expovariate(2.0) for _ in range(rng.randint(1, 60))]
    for w in (1, 3, 7, 100):
        assert group_confidences(values, w) == pytest.approx(brute_groups(values, w))


def test_one_wavering_stretch_lowers_lowest_group_but_hardly_the_mean() -> None:
    steady = [-0.05] * 100
    wavering = [-0.05] * 45 + [-2.0] * 10 + [-0.05] * 45
    lowest = TraceConfidence(measure="lowest", window=10)
    mean = TraceConfidence(measure="mean")
    assert lowest.of_values(wavering) == pytest.approx(-2.0)
    assert lowest.of_values(steady) == pytest.approx(-0.05)
    # The whole-trace mean dilutes the stretch 10-fold: the group measure is what sees it.
    assert mean.of_values(wavering) == pytest.approx(-0.245)


def test_measures_on_a_known_trace() -> None:
    values = [-1.0, -1.0, -3.0, -1.0, -0.5, -0.5]
    # Windows of 2: -1, -2, -2, -0.75, -0.5.
    assert TraceConfidence(measure="lowest", window=2).of_values(values) == pytest.approx(-2.0)
    assert TraceConfidence(measure="bottom10", window=2, bottom=0.4).of_values(values) == pytest.approx(-2.0)
    assert TraceConfidence(measure="bottom10", window=2, bottom=1.0).of_values(values) == pytest.approx(
        (-1 - 2 - 2 - 0.75 - 0.5) / 5
    )
    assert TraceConfidence(measure="tail", window=2).of_values(values) == pytest.approx(-0.5)
    assert TraceConfidence(measure="mean").of_values(values) == pytest.approx(-7.0 / 6)
    # A window longer than the trace is the whole trace; a share is of the trace's length.
    assert TraceConfidence(measure="lowest", window=2048).of_values(values) == pytest.approx(-7.0 / 6)
    assert TraceConfidence(measure="lowest", window=0.34).of_values(values) == pytest.approx(
        min(brute_groups(values, 3))
    )


def test_a_completion_without_logprobs_has_no_confidence() -> None:
    tc = TraceConfidence()
    assert tc.of(Completion(text="x")) is None
    assert tc.of(Completion(text="x", logprobs=toks([-0.5, -0.5]))) == pytest.approx(-0.5)
    with pytest.raises(ConfigError, match="no token logprobs"):
        tc.of_values([])


def test_top_source_is_deepconfs_negative_mean_of_the_alternatives() -> None:
    token = TokenLogprob(token="a", logprob=-0.1, top=(("a", -0.1), ("b", -3.0), ("c", -5.9)))
    assert token_confidence(token, "top") == pytest.approx(3.0)
    assert token_confidence(token) == pytest.approx(-0.1)
    with pytest.raises(ConfigError, match="top_logprobs"):
        token_confidence(TokenLogprob(token="a", logprob=-0.1), "top")
    tc = TraceConfidence(source="top")
    assert tc.weight(3.0) == 3.0 and TraceConfidence().weight(-0.5) == pytest.approx(math.exp(-0.5))


@pytest.mark.parametrize(
    "fields",
    [{"measure": "median"}, {"window": 0}, {"window": 12.5}, {"bottom": 0}, {"bottom": 1.5}, {"source": "x"}],
)
def test_bad_settings_are_config_errors(fields: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TraceConfidence(**fields)  # type: ignore[arg-type]


def test_top_share_keeps_the_most_confident_and_never_the_unknown() -> None:
    assert top_share([-1.0, -0.1, None, -0.5], 0.5) == [False, True, False, True]
    assert top_share([-1.0, -0.1, None, -0.5], 0.01) == [False, True, False, False]  # at least one
    assert top_share([None, None], 0.5) == [False, False]
    assert top_share([-1.0, -1.0, -1.0], 0.34) == [True, True, False]  # ties: earlier first
    with pytest.raises(ConfigError):
        top_share([-1.0], 0.0)


def test_threshold_is_a_quantile_of_the_warmup() -> None:
    warm = [-0.4, -0.1, -0.3, -0.2]
    assert threshold_from(warm, 1.0) == -0.4  # keep all: the least confident warmup trace
    assert threshold_from(warm, 0.75) == -0.4
    assert threshold_from(warm, 0.5) == -0.3
    assert threshold_from(warm, 0.25) == -0.2
    with pytest.raises(ConfigError):
        threshold_from([], 0.9)
    with pytest.raises(ConfigError):
        threshold_from(warm, 1.5)


def test_the_monitor_cuts_at_the_first_full_window_below_the_threshold() -> None:
    m = ConfidenceMonitor(threshold=-1.0, window=4)
    assert not m.push(toks([-0.1] * 10))
    assert m.lowest == pytest.approx(-0.1) and m.cut_at is None
    # Window [-0.1, -0.1, -3, -3] = -1.55 < -1 at token 12.
    assert m.push(toks([-3.0, -3.0, -0.1]))
    assert m.cut_at == 12 and m.tokens == 12
    assert m.push(toks([-0.1]))  # once cut, stays cut and stops counting
    assert m.tokens == 12


def test_the_monitor_never_cuts_a_trace_shorter_than_its_window() -> None:
    m = ConfidenceMonitor(threshold=-0.1, window=50)
    assert not m.push(toks([-5.0] * 49)) and m.lowest is None
    with pytest.raises(ConfigError):
        ConfidenceMonitor(threshold=0.0, window=0)


@pytest.mark.parametrize("seed", range(3))
def test_the_monitor_agrees_with_the_offline_lowest_group(seed: int) -> None:
    rng = random.Random(seed)
    values = [-rng.expovariate(3.0) for _ in range(80)]
    lowest = TraceConfidence(measure="lowest", window=8).of_values(values)
    below = ConfidenceMonitor(threshold=lowest + 1e-9, window=8)
    assert below.push(toks(values))  # the lowest group is below a threshold just above it
    above = ConfidenceMonitor(threshold=lowest - 1e-9, window=8)
    assert not above.push(toks(values)) and above.lowest == pytest.approx(lowest)
