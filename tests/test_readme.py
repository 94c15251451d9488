"""Every Python block in the README runs, against the simulated model.

The blocks are written for a real provider (`OpenAIChat("gpt-4o-mini")`, `Anthropic(...)`);
here each provider class is swapped for one that builds the in-process simulated endpoint, so
the README can never show code that fails.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
from otel_helpers import reset_tracer_provider

import adaptive
import adaptive.endpoints
from adaptive.sim import SimEndpoint

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text(encoding="utf-8"))


def simulated(*args: Any, **kwargs: Any) -> SimEndpoint:
    """Stands in for any provider class: the simulated reasoner (priced like gpt-4o-mini)."""
    return SimEndpoint()


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs(index: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for provider in ("OpenAIChat", "OpenAICompletions", "Anthropic"):
        monkeypatch.setattr(adaptive, provider, simulated)
        monkeypatch.setattr(adaptive.endpoints, provider, simulated)
    monkeypatch.chdir(tmp_path)  # a block that writes a file writes it here
    reset_tracer_provider(monkeypatch)  # a block that sets a tracer provider sets it for itself only
    code = python_blocks()[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    printed = out.getvalue()
    assert printed or "print(" not in code
    # Every printed answer is a real one (a line that starts with an answer never says None).
    assert not [line for line in printed.splitlines() if line.startswith("None ")], printed
