"""Weight quantisation: a quantised copy of a model, built once and cached, by mlx-lm's own methods.

`affine` is `mlx_lm.convert` (optionally a mixed recipe such as `mixed_3_6`); `gptq` and `awq` are mlx-lm's
calibrated methods (`mlx_lm.quant`), calibrated on workbench text instead of the data set mlx-lm would download.
The quantise experiment, the tradeoff experiment, `quantised:BITS` specs and `workbench serve` all call
`quantised`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

from workbench.errors import ModelError
from workbench.models.loader import fingerprint_dir, resolve, resolve_dtype, set_compute_dtype

QUANT_METHODS = ("affine", "gptq", "awq")

QUANT_BITS = (2, 3, 4, 5, 6, 8)

QUANT_GROUP_SIZES = (32, 64, 128)


def calibration_tokens(tokenizer, *, samples: int = 32, sequence_length: int = 256, seed: int = 0):
    """Calibration chunks for GPTQ/AWQ from training-side text only (stdlib docstrings + task documents),
    never from the held-out sets, and never downloaded (mlx-lm's default calibration set is)."""
    import random

    import mlx.core as mx

    from workbench.workloads import corpus, tasks

    rng = random.Random(f"calibration-{seed}")
    docs = list(corpus.stdlib_docstrings()[0])
    rng.shuffle(docs)
    text = "\n\n".join(docs[:400] + [tasks.make_training_text(rng) for _ in range(200)])
    tokens = tokenizer.encode(text)
    usable = len(tokens) // sequence_length * sequence_length
    chunks = mx.array(tokens[:usable]).reshape(-1, sequence_length)
    return chunks[:samples]


def quantised(
    spec: str,
    *,
    bits: int = 4,
    group_size: int = 64,
    method: str = "affine",
    recipe: str | None = None,
    dtype: str = "auto",
) -> Path:
    """A quantised copy of a model, built once and cached by (source model hash, recipe, dtype).

    `method="affine"` is `mlx_lm.convert` (optionally with one of its mixed recipes,
    e.g. `mixed_3_6`); `gptq` and `awq` are mlx-lm's calibrated methods (`mlx_lm.quant`),
    calibrated on workbench text instead of the download mlx-lm would fetch. The source is
    cast to `dtype` first (`auto`: float32 on CPU, else the checkpoint's own), so scales,
    biases and the non-quantised weights come out in it.
    """
    from workbench.paths import atomic_dir, cache_dir

    if method not in QUANT_METHODS:
        raise ModelError(f"unknown quantisation method {method!r}; choose one of {', '.join(QUANT_METHODS)}")
    if bits not in QUANT_BITS:
        raise ModelError(f"bits={bits} is not supported; choose one of {QUANT_BITS}")
    if group_size not in QUANT_GROUP_SIZES:
        raise ModelError(f"group_size={group_size} is not supported; choose one of {QUANT_GROUP_SIZES}")
    source, _ = resolve(spec)
    if not isinstance(source, Path):
        raise ModelError(f"quantising needs a local model directory, got {spec!r}")
    cast = resolve_dtype(dtype, checkpoint="checkpoint")  # "checkpoint": keep the source's own dtype
    from importlib.metadata import version

    key = json.dumps(
        {
            "source": fingerprint_dir(source),
            "bits": bits,
            "group_size": group_size,
            "method": method,
            "recipe": recipe,
            "dtype": cast,
            "mlx_lm": version("mlx-lm"),
        },
        sort_keys=True,
    )
    name = f"{source.name}-{method}{bits}g{group_size}{'-' + recipe if recipe else ''}-{cast}"
    target = cache_dir() / "quantised" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (target / "config.json").exists():
        return target
    with atomic_dir(target) as tmp:
        out = tmp / "model"
        if method == "affine":
            import contextlib
            import sys

            from mlx_lm import convert

            with contextlib.redirect_stdout(sys.stderr):  # mlx_lm's "[INFO] Quantizing" lines: progress, not output
                convert(
                    str(source),
                    str(out),
                    quantize=True,
                    q_bits=bits,
                    q_group_size=group_size,
                    quant_predicate=recipe,
                    dtype=None if cast == "checkpoint" else cast,
                )
        else:
            _calibrated_quantise(source, out, method=method, bits=bits, group_size=group_size, dtype=cast)
        for item in out.iterdir():
            item.rename(tmp / item.name)
        out.rmdir()
        (tmp / "quantisation.json").write_text(key)
    return target


def _calibrated_quantise(source: Path, out: Path, *, method: str, bits: int, group_size: int, dtype: str) -> None:
    import mlx.core as mx
    from mlx_lm.utils import load as mlx_load
    from mlx_lm.utils import save

    mx.random.seed(0)
    model, tokenizer, config = cast(tuple[Any, Any, dict], mlx_load(str(source), return_config=True))
    if dtype != "checkpoint":
        set_compute_dtype(model, dtype)
    data = calibration_tokens(tokenizer)
    if method == "gptq":
        from mlx_lm.quant.gptq import gptq_quantize

        model, config["quantization"] = gptq_quantize(model, data, bits, group_size, 8, group_size)
    else:
        from mlx_lm.quant.awq import AWQ_MODEL_CONFIGS, awq_quantize, update_config

        awq_config = AWQ_MODEL_CONFIGS.get(config["model_type"])
        if awq_config is None:
            raise ModelError(f"AWQ has no recipe for model_type {config['model_type']!r} in this mlx-lm")
        awq_quantize(
            model, data, awq_config, bits=bits, group_size=group_size, embed_bits=8, embed_group_size=group_size
        )
        config = update_config(model, config)
    save(str(out), str(source), model, tokenizer, config)
