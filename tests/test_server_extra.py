"""Without the server extra (starlette, uvicorn): serve-sim says how to install it; demo still runs.

Each case runs a fresh interpreter whose imports of starlette and uvicorn fail, as on an install
without `adaptive-ttc[server]`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from adaptive.cli._extras import SERVER_INSTALL, MissingExtraError, require_server_extra

BLOCK = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("starlette", "uvicorn"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocked())
from adaptive.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.partition(".")[0] in ("starlette", "uvicorn"))
assert not leaked, leaked
sys.exit(code)
"""


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK, *argv], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize(
    "argv",
    [("serve-sim", "--port", "0"), ("serve", "--upstream", "http://127.0.0.1:9/v1", "--port", "0")],
    ids=["serve-sim", "serve"],
)
def test_the_servers_without_the_extra_print_the_install_command_and_exit_2(argv: tuple[str, ...]) -> None:
    done = run(*argv)
    assert done.returncode == 2, done.stderr
    assert SERVER_INSTALL in done.stderr
    assert f"{argv[0]} needs starlette and uvicorn" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_without_the_extra_still_runs() -> None:
    done = run("demo", "--questions", "2", "--workers", "1", "--json", "--no-plot")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["questions"] == 2


def test_require_server_extra_passes_when_installed() -> None:
    require_server_extra("serve-sim")  # the dev install has the extra


def test_missing_extra_error_is_a_config_error_naming_what_to_install() -> None:
    from adaptive import ConfigError

    error = MissingExtraError("serve", ("uvicorn",), SERVER_INSTALL)
    assert isinstance(error, ConfigError)
    assert error.missing == ("uvicorn",) and error.command == "serve"
    with pytest.raises(ConfigError, match=r"serve needs uvicorn .* pip install 'adaptive-ttc\[server\]'"):
        raise error
