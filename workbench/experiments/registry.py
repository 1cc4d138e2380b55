"""The registry of experiments: a module in this package that defines `Config` (an `ExperimentConfig` with a
`name`) and `run(config) -> polars.DataFrame` is an experiment, found by listing the package."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path

from workbench.errors import ConfigError

NOT_EXPERIMENTS = {"base", "registry", "runner"}


@functools.cache
def registry() -> dict:
    """name -> module, for every experiment module in this package."""
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name in NOT_EXPERIMENTS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"workbench.experiments.{info.name}")
        if hasattr(module, "Config") and hasattr(module, "run"):  # helper modules are not experiments
            found[module.Config.name] = module
    return dict(sorted(found.items()))


def names() -> tuple[str, ...]:
    return tuple(registry())


# Names an experiment had before: rows and sweeps store the name, so an old sweep file or report still finds it.
ALIASES = {"serving": "response_cache"}


def canonical(name: str) -> str:
    """The experiment's current name (an old name from `ALIASES` maps to it)."""
    return ALIASES.get(name, name)


def get(name: str):
    name = canonical(name)
    if name not in registry():
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(registry())}")
    return registry()[name]
