"""Committed model weights: used when their recipe hash matches the current recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol


class Recipe(Protocol):  # a `build.Recipe` (build imports this module: no import back)
    @property
    def preset(self) -> str: ...

    def hash(self, *, portable: bool = False) -> str: ...


ASSETS_DIR = Path(__file__).resolve().parent / "weights"


def find_committed(recipe: Recipe) -> Path | None:
    """The committed directory built from exactly this recipe, if there is one."""
    candidate = ASSETS_DIR / recipe.preset
    info = candidate / "build.json"
    if not info.exists():
        return None
    if json.loads(info.read_text()).get("portable_hash") != recipe.hash(portable=True):
        return None
    return candidate
