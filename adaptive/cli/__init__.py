"""The command line: `adaptive demo | serve-sim | calibrate | --version`.

One module per command (`_demo`, `_calibrate`) and the argument parser (`_main`). The core
(`adaptive/`) never imports this package; this is the one place that wires in the built-in
strategies (for the demo).
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
