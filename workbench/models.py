"""The one place that resolves, loads and fingerprints models.

A spec is a preset of the embedded family (`nano`, `default`, `student`, built offline and
cached), a local mlx-lm directory, or a Hugging Face repo id (handed to `mlx_lm.load`).

    from workbench import models
    loaded = models.load("default")
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench import build

HF_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelError(ValueError):
    """A model spec that cannot be resolved or loaded; the message is one line."""


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    path: Path | None
    model_id: str
    model_hash: str
    load_s: float
    config: dict = field(default_factory=dict)


def _check_dir(path: Path) -> Path:
    if not path.is_dir():
        raise ModelError(f"model path {path} is not a directory")
    if not (path / "config.json").is_file():
        raise ModelError(f"model directory {path} has no config.json")
    try:
        json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"model directory {path} has an unreadable config.json ({exc})") from None
    if not list(path.glob("*.safetensors")):
        raise ModelError(f"model directory {path} has no *.safetensors weights")
    return path


def resolve(spec: str, *, build_missing: bool = True) -> tuple[Path | str, str]:
    """(path or repo id, model id) for a spec; presets are built when missing."""
    spec = str(spec)
    if spec in build.PRESETS:
        path = build.build_model(spec) if build_missing else build.model_path(spec)
        return path, f"workbench/{spec}"
    path = Path(spec).expanduser()
    if path.exists():
        return _check_dir(path.resolve()), path.resolve().name
    if spec.startswith((".", "/", "~")) or not HF_REPO_ID.match(spec):
        raise ModelError(f"model {spec!r} not found: not a preset ({', '.join(build.PRESETS)}), "
                         "a model directory or a Hugging Face repo id")
    return spec, spec


def fingerprint_dir(path: Path) -> str:
    """A hash of config and weights: full content for small files, size + head + tail for large ones."""
    digest = hashlib.sha256()
    for file in sorted(path.glob("*")):
        if file.suffix not in {".json", ".safetensors"} or file.name == "build.json":
            continue
        digest.update(file.name.encode())
        size = file.stat().st_size
        digest.update(str(size).encode())
        with file.open("rb") as fh:
            if size <= 64 << 20:
                digest.update(fh.read())
            else:
                digest.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), 2)
                digest.update(fh.read())
    return digest.hexdigest()[:16]


def load(spec: str, **load_kwargs) -> LoadedModel:
    """Load a model with `mlx_lm.load`; errors become one-line `ModelError`s."""
    from mlx_lm import load as mlx_load

    target, model_id = resolve(spec)
    start = time.perf_counter()
    try:
        model, tokenizer, config = mlx_load(str(target), return_config=True, **load_kwargs)
    except Exception as exc:  # mlx_lm raises many types; name the model and the cause
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model {spec!r} from {target}: {reason}") from exc
    load_s = time.perf_counter() - start
    model_hash = fingerprint_dir(target) if isinstance(target, Path) else f"hf:{spec}"
    return LoadedModel(model=model, tokenizer=tokenizer, path=target if isinstance(target, Path) else None,
                       model_id=model_id, model_hash=model_hash, load_s=load_s, config=config)


def parameter_count(model) -> int:
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in tree_flatten(model.parameters()))
