"""Registries: build strategies, verifiers, extractors and stop rules from a name and a dict.

One mechanism for every kind of thing a config, the command line or a request body names.
A `Registry` holds the factories registered in code and, lazily, those that installed
distributions declare under an entry-point group (the plugin convention pytest and many others
use), so `client.run(q, strategy="best-of-n")` works without importing anything first, and a
third-party package adds a strategy by declaring, in its `pyproject.toml`::

    [project.entry-points."adaptive.strategies"]
    my-strategy = "my_package.module:MyStrategy"

Names are lower-case words joined by hyphens (`best-of-n`, `ac-beta`, `answer-is`). A name in
another style that matches a known one (`best_of_n`) is refused with a `ConfigError` naming the
right one; an unknown name is refused with the list of known names. Nothing is guessed.
"""

from __future__ import annotations

import importlib.metadata
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from ._exceptions import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")
Factory = Callable[..., T]

_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _canonical(name: str) -> str:
    """The hyphenated lower-case form of `name`, to recognise a near miss such as `best_of_n`."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


class Registry(Generic[T]):
    """Named factories of one kind of thing, from code and from installed distributions.

    Args:
        kind: What the registry holds, as error messages say it ("strategy", "stop rule").
        group: The entry-point group installed distributions declare factories under
            (e.g. "adaptive.strategies"); None for a registry filled in code only.

    Example:
        >>> colours: Registry[str] = Registry("colour")
        >>> colours.register("dark-red", lambda: "#8b0000")
        >>> colours.build("dark-red")
        '#8b0000'
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._factories: dict[str, Factory[T]] = {}
        self._declared: dict[str, list[importlib.metadata.EntryPoint]] | None = None
        self._lock = threading.Lock()

    def register(self, name: str, factory: Factory[T]) -> None:
        """Make `factory` buildable as `name` in this process.

        Raises:
            ConfigError: `name` is not lower-case words joined by hyphens, or another factory
                already has it.
        """
        if not _NAME.match(name):
            raise ConfigError(
                f"{self.kind} name {name!r} must be lower-case words joined by hyphens "
                f"(e.g. {_canonical(name)!r})"
            )
        known = self._factories.get(name)
        if known is not None and known is not factory:
            raise ConfigError(f"{self.kind} {name!r} is already registered ({_describe(known)})")
        self._factories[name] = factory

    def _entry_points(self) -> dict[str, list[importlib.metadata.EntryPoint]]:
        # Read once, on first use: scanning installed distributions costs milliseconds.
        if self._declared is None:
            with self._lock:
                if self._declared is None:
                    declared: dict[str, list[importlib.metadata.EntryPoint]] = {}
                    if self.group is not None:
                        # Per distribution, not entry_points(group=...): that keeps one entry
                        # per name, so two packages declaring one name would go unnoticed.
                        for dist in importlib.metadata.distributions():
                            for ep in dist.entry_points:
                                if ep.group == self.group:
                                    declared.setdefault(ep.name, []).append(ep)
                    self._declared = declared
        return self._declared

    def names(self) -> tuple[str, ...]:
        """Every name this registry can build, sorted (registered in code or declared)."""
        return tuple(sorted({*self._factories, *self._entry_points()}))

    def get(self, name: str) -> Factory[T]:
        """The factory registered or declared as `name`.

        Raises:
            ConfigError: Unknown name (the message lists the known ones, and names the right
                spelling of a near miss), a name two distributions declare, or a declared
                entry point that cannot be loaded.
        """
        if not isinstance(name, str):
            raise ConfigError(f"a {self.kind} name must be a string, got {type(name).__name__}")
        factory = self._factories.get(name)
        if factory is not None:
            return factory
        declared = self._entry_points().get(name)
        if declared:
            return self._load(name, declared)
        canonical = _canonical(name)
        if canonical != name and canonical in self.names():
            raise ConfigError(f"unknown {self.kind} {name!r}: it is called {canonical!r}")
        raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}")

    def _load(self, name: str, declared: list[importlib.metadata.EntryPoint]) -> Factory[T]:
        if len({ep.value for ep in declared}) > 1:
            raise ConfigError(
                f"{self.kind} {name!r} is declared by more than one installed package "
                f"({', '.join(sorted(ep.value for ep in declared))}); uninstall one, or pass an "
                "instance instead of the name"
            )
        ep = declared[0]
        try:
            factory = ep.load()
        except Exception as exc:  # a broken plugin must say which one, not crash the caller
            dist = ep.dist.name if ep.dist is not None else "an installed package"
            raise ConfigError(
                f"{self.kind} {name!r} is declared by {dist} as {ep.value!r}, which cannot be "
                f"loaded: {type(exc).__name__}: {exc}"
            ) from None
        if not callable(factory):
            raise ConfigError(f"{self.kind} {name!r} ({ep.value}) is not callable")
        with self._lock:
            self._factories.setdefault(name, factory)
        return self._factories[name]

    def build(self, config: str | Mapping[str, Any], params: Mapping[str, Any] | None = None) -> T:
        """Build from a name and parameters, or from `{"name": ..., **parameters}`.

        Raises:
            ConfigError: Unknown name, or parameters the factory rejects.
        """
        if isinstance(config, str):
            name, data = config, dict(params or {})
        elif isinstance(config, Mapping):
            if params:
                raise ConfigError(
                    f"give a {self.kind}'s parameters in its config dict or in params, not both"
                )
            data = dict(config)
            name = data.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError(
                    f"the {self.kind} config {dict(config)!r} needs a 'name' key "
                    f"(one of: {', '.join(self.names())})"
                )
        else:
            raise ConfigError(
                f"a {self.kind} is given by a name or a config dict, not {type(config).__name__}"
            )
        factory = self.get(name)
        try:
            return factory(**data)
        except ConfigError:
            raise
        except TypeError as exc:  # e.g. an unexpected keyword on a plain function factory
            raise ConfigError(f"{self.kind} {name!r}: {exc}") from None


def _describe(factory: Callable[..., Any]) -> str:
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None) or repr(factory)
    return f"{module}.{qualname}" if module else qualname
