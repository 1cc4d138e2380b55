"""Model specs derived from the model under test: `quantised:BITS` and `distilled`.

They let a params file name "a 4-bit copy of whatever model is under test" or "its KD
student" as a speculative draft or a serving tier. Both are built once and cached.

    draft: quantised:4      # or: distilled, nano, /path/to/mlx-model
"""

from __future__ import annotations

from typing import Any

from workbench.errors import ConfigError
from workbench.models import loader
from workbench.optimise import quantise


def is_derived(spec: str) -> bool:
    """Specs that name a model derived from the model under test rather than a model on disk."""
    return spec == "distilled" or str(spec).startswith("quantised:")


def check(spec: str) -> None:
    """Raise ConfigError for a malformed derived spec (before anything is loaded)."""
    if str(spec).startswith("quantised:"):
        bits = spec.split(":", 1)[1]
        if not bits.isdigit() or int(bits) not in quantise.QUANT_BITS:
            raise ConfigError(f"model spec {spec!r}: expected quantised:BITS with BITS in {quantise.QUANT_BITS}")


def load_spec(spec: str, target: loader.LoadedModel, model_spec: str, **load_kwargs: Any) -> loader.LoadedModel:
    """Load a spec; `quantised:BITS` quantises the model under test, `distilled` trains (or reuses) its student."""
    check(spec)
    if spec.startswith("quantised:"):
        path = quantise.quantised(model_spec, bits=int(spec.split(":", 1)[1]), dtype=load_kwargs.get("dtype", "auto"))
        return loader.load(str(path), **load_kwargs)
    if spec == "distilled":
        from workbench.training.distill import KDSettings, train_student

        if target.path is None:
            raise ConfigError("the 'distilled' spec needs a local model directory (for its tokenizer)")
        return loader.load(str(train_student(target, KDSettings())), **load_kwargs)
    if spec == model_spec:
        return target
    return loader.load(spec, **load_kwargs)
