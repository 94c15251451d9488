"""Optional extras a command needs, checked in one place so each command says the same thing.

Example:
    >>> require_server_extra("serve-sim")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util

from .._exceptions import ConfigError

__all__ = ["SERVER_INSTALL", "MissingExtraError", "require_server_extra"]

SERVER_INSTALL = "pip install 'adaptive-ttc[server]'"
_SERVER_MODULES = ("starlette", "uvicorn")


class MissingExtraError(ConfigError):
    """A command needs packages of an optional extra that are not installed.

    Attributes:
        command: The command that needs them.
        missing: The importable names that are missing.
        install: The command that installs them.
    """

    def __init__(self, command: str, missing: tuple[str, ...], install: str) -> None:
        super().__init__(f"{command} needs {' and '.join(missing)} (not installed): run {install}")
        self.command = command
        self.missing = missing
        self.install = install


def _importable(module: str) -> bool:
    try:
        # find_spec is cheap (no import); a blocked or broken package is caught on import below.
        if importlib.util.find_spec(module) is None:
            return False
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require_server_extra(command: str) -> None:
    """Check that the HTTP server stack (starlette, uvicorn) is installed.

    Args:
        command: The command being run, for the message (e.g. "serve-sim").

    Raises:
        MissingExtraError: One of them is missing; the message gives the install command.
            It is a `ConfigError`, which the CLI prints and exits 2 on.
    """
    missing = tuple(m for m in _SERVER_MODULES if not _importable(m))
    if missing:
        raise MissingExtraError(command, missing, SERVER_INSTALL)
