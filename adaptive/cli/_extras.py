"""Commands that need an optional extra say how to install it instead of failing on an import."""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["require_server_extra"]


def require_server_extra(command: str) -> bool:
    """Whether the `server` extra (starlette, uvicorn) is installed; if not, say how to get it.

    Prints `pip install 'adaptive-ttc[server]'` to stderr when a module is missing; the caller
    then exits with status 2.
    """
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"adaptive {command}: needs {', '.join(missing)}: pip install 'adaptive-ttc[server]'",
            file=sys.stderr,
        )
        return False
    return True
