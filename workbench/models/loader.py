"""The one place that resolves, loads, fingerprints and quantises models.

A spec is a preset of the embedded family (`nano`, `default`, `student`, built offline and
cached), a local mlx-lm directory, or a Hugging Face repo id (handed to `mlx_lm.load`).

Every model computes in one dtype, chosen by `dtype`: `auto` is float32 on the CPU backend
(where half-precision matmuls, and quantised matmuls with half-precision scales, are 6-40x
slower, so a bits comparison would become a dtype comparison) and the checkpoint's own
dtype on Metal or CUDA. See docs/quality.md.

    from workbench.models import loader
    loaded = loader.load("default", dtype="auto")
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, cast

from workbench.errors import ModelError
from workbench.models import build

if TYPE_CHECKING:
    import mlx.nn as nn
    from mlx_lm.tokenizer_utils import TokenizerWrapper

HF_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class LoadedModel:
    """A model ready to run: mlx-lm's module and tokenizer wrapper, where it came from, and its compute dtype."""

    model: nn.Module
    tokenizer: TokenizerWrapper
    path: Path | None
    model_id: str
    model_hash: str
    load_s: float
    config: dict = field(default_factory=dict)
    dtype: str = "float32"


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
        path = build.build_model(spec) if build_missing else build.preset_dir(spec)
        return path, f"workbench/{spec}"
    path = Path(spec).expanduser()
    if path.exists():
        return _check_dir(path.resolve()), path.resolve().name
    if spec.startswith((".", "/", "~")) or not HF_REPO_ID.match(spec):
        raise ModelError(
            f"model {spec!r} not found: not a preset ({', '.join(build.PRESETS)}), "
            "a model directory or a Hugging Face repo id"
        )
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


def load(spec: str, *, dtype: str = "auto", **load_kwargs) -> LoadedModel:
    """Load a model with `mlx_lm.load` and cast its floating arrays to one compute dtype
    (quantised weights stay integers; their scales and biases follow); errors become one-line `ModelError`s."""
    from mlx_lm import load as mlx_load

    check_dtype(dtype)
    target, model_id = resolve(spec)
    start = time.perf_counter()
    try:
        model, tokenizer, config = cast(tuple[Any, Any, dict], mlx_load(str(target), return_config=True, **load_kwargs))
    except Exception as exc:  # mlx_lm raises many types; name the model and the cause
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model {spec!r} from {target}: {reason}") from exc
    compute_dtype = resolve_dtype(dtype, checkpoint=floating_dtype(model))
    set_compute_dtype(model, compute_dtype)
    load_s = time.perf_counter() - start
    model_hash = fingerprint_dir(target) if isinstance(target, Path) else f"hf:{spec}"
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        path=target if isinstance(target, Path) else None,
        model_id=model_id,
        model_hash=model_hash,
        load_s=load_s,
        config=config,
        dtype=compute_dtype,
    )


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ModelError(f"dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    return dtype


def floating_dtype(model) -> str:
    """The dtype most of a model's floating-point parameters (by element count) are stored in."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    sizes: dict[str, int] = {}
    for _, value in cast(list[tuple[str, Any]], tree_flatten(model.parameters())):
        if mx.issubdtype(value.dtype, mx.floating):
            name = str(value.dtype).removeprefix("mlx.core.")
            sizes[name] = sizes.get(name, 0) + value.size
    return max(sizes, key=lambda name: sizes[name]) if sizes else "float32"


def resolve_dtype(dtype: str, *, checkpoint: str) -> str:
    """`auto` is float32 on the CPU backend and the checkpoint's own dtype on Metal or CUDA."""
    from workbench import runtime

    check_dtype(dtype)
    if dtype != "auto":
        return dtype
    return "float32" if runtime.backend() == "cpu" else checkpoint


def set_compute_dtype(model, dtype: str) -> None:
    """Cast floating parameters only (packed quantised weights are integers and stay so), except
    those the architecture keeps in its own precision (`cast_predicate`, as `mlx_lm.convert`)."""
    import mlx.core as mx

    cast_predicate = getattr(model, "cast_predicate", None)
    if cast_predicate is None:
        model.set_dtype(getattr(mx, dtype))
    else:
        _cast_where(model, getattr(mx, dtype), cast_predicate)
    mx.eval(model.parameters())


def _cast_where(model, dtype, predicate) -> None:
    import mlx.core as mx
    from mlx.utils import tree_map_with_path

    def cast(path, value):
        return value.astype(dtype) if predicate(path) and mx.issubdtype(value.dtype, mx.floating) else value

    model.update(tree_map_with_path(cast, model.parameters()))


def tokenizer_fingerprint(tokenizer) -> str:
    """`v<vocab size>-<hash>` of the sorted vocabulary and the special tokens: two models can be
    compared token by token only when these are equal."""
    vocab = tokenizer.get_vocab()
    special = {
        "map": dict(sorted(getattr(tokenizer, "special_tokens_map", {}).items())),
        "eos_ids": sorted(getattr(tokenizer, "eos_token_ids", None) or []),
    }
    payload = json.dumps({"vocab": sorted(vocab.items()), "special": special}, sort_keys=True, default=str)
    return f"v{len(vocab)}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


class Tokenized(Protocol):
    """What `check_same_tokenizer` reads: a `LoadedModel`, or a `TokenizerOnly` before any weights load."""

    @property
    def tokenizer(self) -> TokenizerWrapper: ...
    @property
    def model_id(self) -> str: ...


class TokenizerOnly(NamedTuple):
    tokenizer: TokenizerWrapper
    model_id: str


def check_same_tokenizer(model: Tokenized, other: Tokenized, *, role: str = "baseline") -> None:
    """Refuse to compare or combine two models token by token when their tokenizers differ; `role` names the
    other model's part ("baseline" for fidelity, "draft" for speculative decoding)."""
    ours, theirs = tokenizer_fingerprint(model.tokenizer), tokenizer_fingerprint(other.tokenizer)
    if ours != theirs:
        why = {"draft": "its proposed tokens would mean other words to the target"}
        raise ModelError(
            f"{role} {other.model_id!r} has another tokenizer than {model.model_id!r} "
            f"({theirs} vs {ours}): {why.get(role, 'their token-level fidelity would mean nothing')}"
        )


def load_tokenizer(path: Path):
    """The tokenizer of a local model directory alone (as `mlx_lm.load` makes it, its EOS ids from config.json),
    for checks that must run before any weights are loaded."""
    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    config = json.loads((Path(path) / "config.json").read_text())
    return mlx_load_tokenizer(Path(path), eos_token_ids=config.get("eos_token_id"))


def parameter_count(model) -> int:
    from mlx.utils import tree_flatten

    return sum(v.size for _, v in cast(list[tuple[str, Any]], tree_flatten(model.parameters())))


def vocab_size(loaded: LoadedModel) -> int:
    """The vocabulary size from the model's config (top level, or `text_config` for multimodal checkpoints)."""
    config = loaded.config
    return config.get("vocab_size") or config.get("text_config", {}).get("vocab_size") or loaded.tokenizer.vocab_size


def weights_bytes(model) -> int:
    """Bytes the model's arrays occupy in memory (quantised weights, scales and biases included)."""
    from mlx.utils import tree_flatten

    return sum(v.nbytes for _, v in cast(list[tuple[str, Any]], tree_flatten(model.parameters())))


def size_on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def describe(spec: str) -> dict:
    """What a report's header says about a model, without loading it: the spec resolved as everywhere else
    (`resolve`, presets not built), its parameter count and storage dtype from the safetensors headers, size on
    disk, and the quantisation its config declares. A repo id or a missing directory gives the name alone."""
    facts: dict[str, Any] = {"spec": str(spec), "name": str(spec), "path": None, "parameters": None, "dtype": None}
    facts |= {"size_bytes": None, "quantisation": None}
    try:
        target, model_id = resolve(spec, build_missing=False)
    except ModelError:
        return facts
    facts["name"] = model_id
    if not isinstance(target, Path) or not (target / "config.json").is_file():
        return facts
    counts: dict[str, int] = {}
    for file in sorted(target.glob("*.safetensors")):
        try:
            with file.open("rb") as fh:
                header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        except (OSError, ValueError):
            return facts
        for key, tensor in header.items():
            if key != "__metadata__":
                size = 1
                for dim in tensor.get("shape", []):
                    size *= dim
                counts[tensor.get("dtype", "?")] = counts.get(tensor.get("dtype", "?"), 0) + size
    names = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "U32": "uint32"}
    config = json.loads((target / "config.json").read_text())
    floating = {k: v for k, v in counts.items() if k in ("F32", "BF16", "F16")}
    facts |= {"path": str(target), "parameters": sum(counts.values()) or None, "size_bytes": size_on_disk(target)}
    facts["dtype"] = names.get(max(floating, key=floating.__getitem__)) if floating else None
    quant = config.get("quantization") or config.get("quantization_config")
    if isinstance(quant, dict) and quant.get("bits"):
        facts["quantisation"] = f"{quant['bits']}-bit, group {quant.get('group_size')}"
    return facts
