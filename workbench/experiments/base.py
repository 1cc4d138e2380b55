"""What every experiment shares: a validated config, declared variants, and interleaved measurement.

- A config is a pydantic model whose fields map 1:1 onto `params/<experiment>.yaml`
  (`extra="forbid"`, strict types, bounds); errors name `experiment.field`.
- A `Variant` says what it is: its family, the knobs it changes, whether it is meant to
  be lossless, and which quality metrics are measured on it. Analysis reads this and never
  guesses from a name.
- `measure_speed` times the baseline and every variant in interleaved rounds (A B C, B C A,
  each arm with its own warm-up), so drift and neighbours hit all of them alike; `rounds: N`
  makes exactly N rounds, `precision: p` adds rounds until every variant's paired interval is
  +-p wide (`experiments/rounds.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

import polars as pl
from pydantic import ConfigDict, Field, ValidationError, model_validator

from workbench import names, terminal
from workbench.errors import ConfigError, short
from workbench.measure import timed
from workbench.models import loader
from workbench.paths import cache_dir
from workbench.results import store
from workbench.results.store import BASELINE
from workbench.workloads import prompt_sets
from workbench.workloads.options import WorkloadOptions

QUALITY_METRICS = ("perplexity", "task", "fidelity")
DEFAULT_ROUNDS = 2  # neither `rounds` nor `precision` given: too few to resolve much, and the report says so
QUALITY_VERSION = 2  # bump when quality.py or evaluate.py change what they compute


class ExperimentConfig(WorkloadOptions):
    """Fields every experiment has: the model under test, its dtype, and the shared workload (`WorkloadOptions`,
    inherited, so params files keep its fields as top-level keys)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    model: str = "default"
    dtype: str = Field("auto", pattern="^(auto|float32|bfloat16|float16)$")
    prompt_tokens: int = Field(128, ge=1, le=32768)
    gen_tokens: int = Field(32, ge=1, le=8192)
    requests: int = Field(4, ge=1, le=4096)
    trials: int = Field(2, ge=1, le=100)
    # how long to measure (experiments/rounds.py): an exact count of interleaved rounds, or a precision target
    rounds: int | None = Field(None, ge=2, le=1000)
    precision: float | None = Field(None, gt=0, lt=1)
    max_rounds: int = Field(40, ge=3, le=1000)
    time_budget_s: float | None = Field(None, gt=0)
    min_effect: float = Field(0.05, gt=0, lt=1)
    cpu_affinity: list[int] | None = Field(None, min_length=1)
    round_requests: int | None = Field(None, ge=1, le=4096)  # requests per arm per round (default: all of them)
    warmup: int = Field(1, ge=0, le=10)
    perplexity_sequence_length: int = Field(128, ge=2, le=32768)
    perplexity_chunks: int = Field(32, ge=0, le=100_000)
    task_count: int = Field(50, ge=0, le=500)
    eval_set: str | None = None
    fidelity_count: int = Field(8, ge=0, le=10_000)
    seed: int = Field(0, ge=0)

    name: ClassVar[str] = "experiment"
    takes_workload: ClassVar[bool] = True  # False: the experiment builds its own prompts (the options above refused)

    @model_validator(mode="after")
    def _run_checks(self):
        problem = "set an exact `rounds` count or a `precision` target, not both"
        self.require(self.rounds is None or self.precision is None, "rounds", problem)
        self.check_workload()
        self.check()
        self.check_eval_set()
        return self

    def check_workload(self) -> None:
        """The workload options fit together, and a dataset file reads (every row valid) before anything runs."""
        options = prompt_sets.chosen_options(self)
        if options and not self.takes_workload:
            self.require(False, next(iter(options)), "this experiment builds its own prompts")
        if problem := prompt_sets.option_problem(options):
            self.require(False, *problem)
        if self.dataset:
            from workbench.errors import DataError
            from workbench.workloads import datasets

            try:
                datasets.read_items(self.dataset, turns=self.dataset_turns)
            except DataError as exc:
                self.require(False, "dataset", str(exc))

    def check_eval_set(self) -> None:
        """`eval_set` (a JSONL file, read relative to the working directory) replaces the built-in facts items as
        the task quality; a file that cannot be used is one line naming `experiment.eval_set`."""
        from workbench.errors import DataError
        from workbench.measure import evalsets

        if self.eval_set is not None:
            try:
                evalsets.read_eval_set(self.eval_set)
            except DataError as exc:
                raise ConfigError(f"{self.name}.eval_set: {exc}") from None

    @property
    def round_limit(self) -> int:
        """The most rounds this config can make: `rounds`, else `max_rounds` with a precision, else 2."""
        return self.rounds or (self.max_rounds if self.precision is not None else DEFAULT_ROUNDS)

    def check(self) -> None:
        """Experiment-specific checks across fields; raise through `require`."""

    def model_specs(self) -> list[str]:
        """Every model this config will load, resolved before anything runs."""
        return [self.model]

    def check_model(self, model_config: dict) -> None:
        """Checks that need the model's config.json (head_dim, vocabulary); run before anything is measured."""

    def longest_sequence(self) -> int:
        """The most tokens one request holds (prompt and generation), checked against the model's context; a
        dataset's rendered prompts are checked when the workload is built."""
        if self.dataset:
            return self.gen_tokens
        return prompt_sets.longest_synthetic(self.prompt_tokens, self.gen_tokens, prompt_sets.chosen_options(self))

    def check_context(self, model_config: dict) -> None:
        context = model_config.get("max_position_embeddings") or model_config.get("text_config", {}).get(
            "max_position_embeddings"
        )
        if context and self.longest_sequence() > context:
            problem = f"a request would hold {self.longest_sequence()} tokens; the model's context is {context}"
            self.require(False, "prompt_tokens", problem)

    def require(self, ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise ConfigError(f"{self.name}.{key}: {problem} (got {short(repr(getattr(self, key)), 57)})")

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def validate(cls: type[ExperimentConfig], values: dict) -> ExperimentConfig:
    """Build a config; pydantic's errors become one `ConfigError` naming `experiment.field`."""
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "config"
        raise ConfigError(f"{cls.name}.{where}: {error['msg']} (got {short(repr(error.get('input')), 57)})") from None


@dataclass(frozen=True)
class Variant:
    """What a measured configuration is, declared by the experiment that makes it."""

    name: str
    family: str = "baseline"
    changes: dict = field(default_factory=dict)
    lossless: bool = False
    quality: tuple = ()

    def identity(self, **extra) -> dict:
        return {
            "variant": self.name,
            "family": self.family,
            "changes_json": json.dumps(self.changes, sort_keys=True, default=str),
            "lossless": self.lossless,
            "quality_measured": ",".join(q for q in QUALITY_METRICS if q in self.quality),
            **extra,
        }


def baseline_variant(quality: tuple[str, ...] = QUALITY_METRICS) -> Variant:
    """The reference arm of a run, named `BASELINE` in its rows: every variant is compared with it."""
    return Variant(BASELINE, quality=quality)


@dataclass
class Arm:
    """One variant as timed: the model it runs, how requests are batched, what goes to mlx-lm."""

    variant: Variant
    loaded: loader.LoadedModel
    batch_size: int = 1
    generate_kwargs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    quality_kwargs: dict = field(default_factory=dict)


def speed_workload(config: ExperimentConfig, loaded: loader.LoadedModel) -> prompt_sets.Workload:
    """`requests` synthetic prompts, or the prompts of `config.dataset` (all of them, or `dataset_limit`)."""
    workload = prompt_sets.build(
        tokenizer=loaded.tokenizer,
        vocab_size=loader.vocab_size(loaded),
        prompt_tokens=config.prompt_tokens,
        count=config.requests,
        seed=config.seed,
        context_tokens=loaded.config.get("max_position_embeddings"),
        **prompt_sets.chosen_options(config),
    )
    prompt_sets.check_context(workload, config.gen_tokens, loaded.config.get("max_position_embeddings"))
    return workload


def measure_speed(arms: list[Arm], config: ExperimentConfig, *, run_id: str) -> pl.DataFrame:
    """Every arm on the same prompts, in interleaved rounds of `config.trials` trials each (as many as the
    config's round rule asks); the order rotates from round to round (A B C, B C A, ...) so position effects
    hit every arm alike."""
    from workbench.experiments import rounds

    workload = speed_workload(config, arms[0].loaded)
    prompts = workload.token_prompts(arms[0].loaded.tokenizer)
    limits = workload.generation_limits(config.gen_tokens)
    names = [arm.variant.name for arm in arms]
    # `round_requests`: a round is a slice of the workload (at least one batch of the widest arm), rotating, so
    # the arms' measurements of one round are a second apart and drift has no time to act between them; the
    # warm-up then runs in the first round only (a warm-up per slice would double the work of short rounds)
    size = min(len(prompts), max(config.round_requests or len(prompts), *(arm.batch_size for arm in arms)))

    def measure_round(round_index: int) -> dict[str, list[dict]]:
        out = {}
        start = (round_index * size) % len(prompts)
        chosen = [(start + k) % len(prompts) for k in range(size)]
        shift = round_index % len(arms)  # rotate the order each round, so no arm is always first after a pause
        for arm in arms[shift:] + arms[:shift]:
            records = timed.measure_generation(
                arm.loaded.model,
                arm.loaded.tokenizer,
                [prompts[i] for i in chosen],
                timed.Schedule(
                    trials=config.trials,
                    warmup=config.warmup if round_index == 0 or config.round_requests is None else 0,
                    batch_size=arm.batch_size,
                    round_index=round_index,
                ),
                **arm.generate_kwargs,
                gen_tokens=[limits[i] for i in chosen],
            )
            out[arm.variant.name] = [{**r.to_row(), "request_index": chosen[r.request_index]} for r in records]
        return out

    rows, _ = rounds.run_rounds(config, measure_round, desc=f"{config.name} rounds")
    frames = []
    for arm, name in zip(arms, names):
        params = {"batch_size": arm.batch_size, **arm.params}
        identity = arm.variant.identity(run_id=run_id, experiment=config.name, params_json=params)
        load = {"kind": "speed", "load_s": arm.loaded.load_s}
        frames.append(
            store.to_frame(
                [{**r, **load, **workload.request_facts(r["request_index"])} for r in rows.get(name, [])],
                **identity,
                **store.model_identity(arm.loaded, workload),
            )
        )
    return pl.concat(frames, how="vertical")


def measure_quality(
    loaded: loader.LoadedModel,
    variant: Variant,
    config: ExperimentConfig,
    *,
    run_id: str,
    baseline: loader.LoadedModel | None = None,
    **quality_kwargs,
) -> pl.DataFrame | None:
    """Perplexity, task accuracy and fidelity to `baseline`, as the variant declares; None if nothing to do.
    `quality_kwargs` (e.g. `kv_bits`) go to `evaluate.run_eval`, so a KV-cache variant is measured with its cache.

    Quality is deterministic (fixed chunks, greedy decoding, no clock), so rows measured once for the same
    weights, dtype, settings and versions are reused from the cache (a sweep measures its baseline's quality
    once, not at every point); reused rows name the run that measured them in `params_json`."""
    from workbench.measure import evaluate

    wants = set(variant.quality)
    settings = {
        "text": "stdlib" if "perplexity" in wants and config.perplexity_chunks else None,
        "sequence_length": config.perplexity_sequence_length,
        "max_chunks": config.perplexity_chunks or None,
        "task": "facts" if "task" in wants and config.task_count and config.eval_set is None else None,
        "task_count": config.task_count,
        "eval_set": config.eval_set if "task" in wants else None,
        "fidelity_count": config.fidelity_count,
        **quality_kwargs,
    }
    fidelity = baseline if "fidelity" in wants and baseline is not None and config.fidelity_count else None
    if not (settings["text"] or settings["task"] or settings["eval_set"] or fidelity):
        return None
    key = quality_key(loaded, fidelity, settings)
    identity = variant.identity()
    declared = {k: identity[k] for k in ("family", "changes_json", "lossless")}
    cached = cache_dir() / "quality" / f"{key}.parquet"
    if cached.is_file():
        frame = pl.read_parquet(cached)
        return frame.with_columns(
            pl.lit(run_id).alias("run_id"),
            pl.lit(variant.name).alias("variant"),
            pl.lit(config.name).alias("experiment"),
            *[pl.lit(value).alias(column) for column, value in declared.items()],
        )
    frame, _ = evaluate.run_eval(
        loaded,
        evaluate.EvalSpec(
            baseline=fidelity,
            run_id=run_id,
            variant=variant.name,
            experiment=config.name,
            params={"measured_in_run": run_id},
            identity=declared,
            **settings,
        ),
    )
    store.write_parquet(frame, cached)
    return frame


def quality_key(loaded: loader.LoadedModel, baseline: loader.LoadedModel | None, settings: dict) -> str:
    """What determines a quality measurement: weights, dtype, the baseline's (fidelity), settings, versions."""
    import hashlib
    from importlib.metadata import version

    from workbench.measure import evalsets
    from workbench.workloads import corpus

    reference = (baseline.model_hash, baseline.dtype) if baseline is not None else None
    payload = {
        "model": (loaded.model_hash, loaded.dtype),
        "baseline": reference,
        "settings": settings,
        "versions": (version("mlx"), version("mlx-lm"), QUALITY_VERSION),
        "corpus": corpus.corpus_hash(),
        "eval_set": evalsets.read_eval_set(settings["eval_set"]).sha256 if settings.get("eval_set") else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def measure_arms(arms: list[Arm], config: ExperimentConfig, *, run_id: str) -> pl.DataFrame:
    """Speed of every arm in interleaved rounds, then the quality each variant declares (the first arm is the
    baseline: fidelity is measured against it)."""
    frames = [measure_speed(arms, config, run_id=run_id)]
    baseline = arms[0].loaded
    for index, arm in enumerate(arms, 1):
        if arm.variant.quality:
            name = names.configuration_name(arm.variant.changes, family=arm.variant.family, variant=arm.variant.name)
            terminal.step(f"{config.name}: quality of {name} ({index}/{len(arms)})")
        frame = measure_quality(
            arm.loaded,
            arm.variant,
            config,
            run_id=run_id,
            baseline=None if arm is arms[0] else baseline,
            **arm.quality_kwargs,
        )
        if frame is not None:
            frames.append(frame)
    return pl.concat(frames, how="diagonal_relaxed")
