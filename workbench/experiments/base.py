"""What every experiment shares: a self-validating config and "measure this variant".

A config is a dataclass whose fields map 1:1 onto `params/<experiment>.yaml`; unknown
keys and impossible values raise `ConfigError` naming the field. `measure_variant` runs
the same speed workload and the same quality checks on any variant, so each experiment's
rows differ only in what the experiment changes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from workbench import bench, models


class ConfigError(ValueError):
    """An impossible or unknown config value; the message names `experiment.field`."""


def _check_type(name: str, value, annotation) -> None:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if not any(_matches(value, a) for a in typing.get_args(annotation)):
            raise ConfigError(f"{name}: expected {annotation}, got {value!r}")
    elif not _matches(value, annotation):
        raise ConfigError(f"{name}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def _matches(value, annotation) -> bool:
    if annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation) or annotation
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, origin)


@dataclass(frozen=True)
class ExperimentConfig:
    """Fields every experiment has: the model under test and the shared measurement workload."""

    model: str = "default"
    prompt_tokens: int = 128
    gen_tokens: int = 32
    requests: int = 4
    trials: int = 2
    warmup: int = 1
    perplexity_sequence_length: int = 128
    perplexity_chunks: int = 32
    task_count: int = 50
    fidelity_count: int = 8
    seed: int = 0

    name: typing.ClassVar[str] = "experiment"

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            _check_type(f"{self.name}.{field.name}", getattr(self, field.name), hints[field.name])
        for key in ("prompt_tokens", "gen_tokens", "requests", "trials", "perplexity_sequence_length"):
            self.require(getattr(self, key) >= 1, key, "must be >= 1")
        for key in ("warmup", "perplexity_chunks", "task_count", "fidelity_count"):
            self.require(getattr(self, key) >= 0, key, "must be >= 0")
        self.require(self.perplexity_sequence_length >= 2, "perplexity_sequence_length", "must be >= 2")
        self.validate()

    def validate(self) -> None:
        """Experiment-specific checks; raise through `require`."""

    def model_specs(self) -> list[str]:
        """Every model this config will load, checked before anything runs."""
        return [self.model]

    def require(self, ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise ConfigError(f"{self.name}.{key}: {problem} (got {getattr(self, key)!r})")

    @classmethod
    def from_dict(cls, values: dict, **overrides):
        values = {**(values or {}), **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{cls.name}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        converted = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        return cls(**converted)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides):
        from workbench.paths import read_yaml_mapping

        return cls.from_dict(read_yaml_mapping(Path(path), ConfigError), **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


GENERATED_SPECS = ("distilled", "quantised:")


def is_generated(spec: str) -> bool:
    """Specs that name a model derived from the model under test rather than a model on disk."""
    return spec == "distilled" or spec.startswith("quantised:")


def load_spec(spec: str, target: models.LoadedModel, model_spec: str) -> models.LoadedModel:
    """Load a model spec; `quantised:BITS` is a quantised copy of the model under test, `distilled` the KD
    student that `params/distill.yaml`'s defaults train from it (both cached after the first time)."""
    if spec.startswith("quantised:"):
        bits = spec.split(":", 1)[1]
        if not bits.isdigit():
            raise ConfigError(f"model spec {spec!r}: expected quantised:BITS")
        return models.load(str(models.quantised(model_spec, bits=int(bits))))
    if spec == "distilled":
        from workbench.experiments.distill import DistillConfig, train_student

        config = DistillConfig(model=model_spec)
        return models.load(str(train_student(target, config, alpha=config.alpha)))
    if spec == model_spec:
        return target
    return models.load(spec)


def measure_variant(
    loaded: models.LoadedModel,
    config: ExperimentConfig,
    *,
    variant: str,
    run_id: str,
    params: dict | None = None,
    baseline: models.LoadedModel | None = None,
    generate_kwargs: dict | None = None,
    batch_size: int = 1,
    speed: bool = True,
    quality: bool = True,
) -> pl.DataFrame:
    """Speed rows on the shared synthetic workload and quality rows (perplexity, task, fidelity to `baseline`)."""
    frames = []
    params = {"variant": variant, **(params or {})}
    if speed:
        frame, _ = bench.run_bench(
            loaded,
            prompt_tokens=config.prompt_tokens,
            gen_tokens=config.gen_tokens,
            batch_size=batch_size,
            trials=config.trials,
            warmup=config.warmup,
            requests=config.requests,
            seed=config.seed,
            run_id=run_id,
            variant=variant,
            experiment=config.name,
            params=params,
            generate_kwargs=generate_kwargs,
        )
        frames.append(frame)
    if quality and (config.perplexity_chunks or config.task_count or (baseline and config.fidelity_count)):
        frame, _ = bench.run_eval(
            loaded,
            text="stdlib" if config.perplexity_chunks else None,
            sequence_length=config.perplexity_sequence_length,
            max_chunks=config.perplexity_chunks or None,
            task="facts" if config.task_count else None,
            task_count=config.task_count,
            baseline=baseline if baseline is not None and config.fidelity_count else None,
            fidelity_count=config.fidelity_count,
            run_id=run_id,
            variant=variant,
            experiment=config.name,
            params=params,
        )
        frames.append(frame)
    return pl.concat(frames, how="vertical")
