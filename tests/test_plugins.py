"""Strategies found by name through entry points, and a distribution that shadows nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import adaptive
from adaptive import ConfigError, Registry, strategy_from_config, strategy_names

BUILT_IN = ("adaptive", "beam-search", "best-of-n", "dvts", "self-consistency", "single")


def run_python(code: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# A script that names every built-in strategy without importing the package that defines them,
# and prints what each call returned (and whether anything imported `strategies`).
NAMED_RUNS = """
    import asyncio, json, sys
    from adaptive import Client
    from adaptive.sim import SimEndpoint, demo_problems

    before = sorted(m for m in sys.modules if m.startswith("adaptive_strategies"))

    async def main():
        question = demo_problems(1)[0].question
        out = {"before": before}
        async with Client(SimEndpoint()) as client:
            for name in %s:
                result = await client.run(question, strategy=name, seed=1)
                out[name] = [result.strategy, result.answer, len(result.samples)]
        return out

    out = asyncio.run(main())
    mine = sys.modules.get("strategies")
    out["strategies_module"] = getattr(mine, "__file__", None)
    print(json.dumps(out))
"""


def test_built_in_strategies_run_by_name_in_a_fresh_interpreter(tmp_path: Path) -> None:
    proc = run_python(NAMED_RUNS % (list(BUILT_IN),), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == []  # nothing was imported up front
    for name in BUILT_IN:
        strategy, answer, samples = out[name]
        assert strategy == name and samples >= 1
        assert answer is not None, f"{name} answered nothing"
    assert out["strategies_module"] is None


def test_an_applications_own_strategies_py_shadows_nothing(tmp_path: Path) -> None:
    (tmp_path / "strategies.py").write_text("MINE = True\n")
    code = "import strategies\nassert strategies.MINE\n" + textwrap.dedent(NAMED_RUNS % (list(BUILT_IN),))
    proc = run_python(code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["strategies_module"] == str(tmp_path / "strategies.py")
    for name in BUILT_IN:
        assert out[name][0] == name and out[name][1] is not None


def test_nothing_is_installed_as_the_top_level_name_strategies(tmp_path: Path) -> None:
    proc = run_python("import strategies", cwd=tmp_path)
    assert proc.returncode != 0 and "No module named 'strategies'" in proc.stderr


def write_plugin(root: Path, dist: str, names: dict[str, str]) -> None:
    """A minimal installed distribution (a dist-info folder) declaring strategy entry points."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in names.items())
    (info / "entry_points.txt").write_text(f"[adaptive.strategies]\n{lines}")


def test_a_third_party_distribution_adds_a_strategy_by_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "echo_plugin.py").write_text(
        textwrap.dedent(
            '''
            """A third-party strategy: one sample, answered with the text itself."""
            from adaptive import SingleSample


            class Echo(SingleSample):
                """One sample, named echo."""

                @property
                def name(self) -> str:
                    return "echo"
            '''
        )
    )
    write_plugin(site, "echo-plugin", {"echo": "echo_plugin:Echo"})
    code = """
        import asyncio
        from adaptive import Client, strategy_names
        from adaptive.sim import SimEndpoint

        async def main():
            async with Client(SimEndpoint()) as client:
                result = await client.run("What is 2 + 3?", strategy="echo", seed=3)
            print(result.strategy, "echo" in strategy_names())

        asyncio.run(main())
    """
    proc = run_python(code, cwd=tmp_path, extra_path=site)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["echo", "True"]


def test_a_broken_or_ambiguous_plugin_is_a_config_error_naming_it(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    write_plugin(site, "broken-plugin", {"broken": "nowhere_at_all:Thing"})
    write_plugin(site, "twin-a", {"twin": "twin_a:Strategy"})
    write_plugin(site, "twin-b", {"twin": "twin_b:Strategy"})
    code = """
        from adaptive import ConfigError, strategy_from_config
        for name in ("broken", "twin"):
            try:
                strategy_from_config(name)
            except ConfigError as exc:
                print(exc)
    """
    proc = run_python(code, cwd=tmp_path, extra_path=site)
    assert proc.returncode == 0, proc.stderr
    broken, twin = proc.stdout.strip().splitlines()
    assert "broken-plugin" in broken and "nowhere_at_all:Thing" in broken and "cannot be loaded" in broken
    assert "more than one installed package" in twin and "twin_a:Strategy" in twin and "twin_b" in twin


def test_every_built_in_name_is_listed_and_builds() -> None:
    assert set(BUILT_IN) <= set(strategy_names())
    assert strategy_from_config({"name": "self-consistency", "n": 3}).name == "self-consistency"


@pytest.mark.parametrize(
    ("old", "new"),
    [("best_of_n", "best-of-n"), ("beam_search", "beam-search"), ("Self_Consistency", "self-consistency")],
)
def test_an_old_name_is_refused_with_the_new_one(old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=f"it is called '{new}'"):
        strategy_from_config(old)


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        strategy_from_config("best-of-everything")
    for name in BUILT_IN:
        assert name in str(info.value)


def test_a_registry_refuses_bad_names_and_double_registration() -> None:
    registry: Registry[int] = Registry("widget")
    registry.register("two-four", lambda: 24)
    registry.register("two-four", registry.get("two-four"))  # the same factory again is fine
    assert registry.build("two-four") == 24 and registry.names() == ("two-four",)
    with pytest.raises(ConfigError, match="lower-case words joined by hyphens"):
        registry.register("Two_Four", lambda: 24)
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("two-four", lambda: 42)
    with pytest.raises(ConfigError, match="needs a 'name'"):
        registry.build({"size": 3})
    with pytest.raises(ConfigError, match="not both"):
        registry.build({"name": "two-four"}, {"x": 1})
    with pytest.raises(ConfigError, match="widget 'two-four'"):
        registry.build("two-four", {"unexpected": 1})
    with pytest.raises(ConfigError, match="name or a config dict"):
        registry.build(3)  # type: ignore[arg-type]


def test_register_strategy_adds_an_applications_own_strategy() -> None:
    from adaptive._strategy import STRATEGIES

    class Mine(adaptive.SingleSample):
        """A single sample under another name."""

    adaptive.register_strategy("mine-for-this-test", Mine)
    try:
        assert isinstance(strategy_from_config("mine-for-this-test"), Mine)
    finally:
        STRATEGIES._factories.pop("mine-for-this-test")
