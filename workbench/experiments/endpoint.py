"""Served endpoint: the model behind an OpenAI-compatible server, under load, against the same model in process.

What a user of the service feels: TTFT, TPOT, ITL, E2E, throughput, goodput and error rate at each load level
(`synchronous`, fixed `concurrency`, Poisson `rate`, `throughput`: everything at once), or a `saturation`
search for the highest rate or concurrency whose goodput meets the SLOs. With no `target`, `workbench serve`
starts `mlx_lm.server` for this run (so caches start cold; a sweep point restarts it with its own `server`
flags: decode/prompt concurrency, prompt-cache size, KV bits, a draft model) and stops it after.

The baseline is the same model in process (synchronous, same prompts): the served-versus-in-process gap has an
interval. Levels and baseline run in interleaved rounds on fresh prompts (the server's cache never replays one).
Cold start: `startup` rows hold launch-to-ready (`load_s`) and the first request's TTFT, server and in process.

With `probe_share`, a share of each level's requests are fidelity probes (`endpoint.probes`: greedy, against the
in-process continuation of the same weights and dtype), summarised apart from the latency figures.

    workbench run endpoint --params params/endpoint.yaml [--model M] [--json]
"""

from __future__ import annotations

import contextlib
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from workbench.endpoint import (
    SLO,
    Level,
    LoadOptions,
    OverSaturation,
    Target,
    check_target,
    run_levels,
    summarise,
)
from workbench.endpoint import target_bench as endpoint_bench
from workbench.endpoint.levels import failure_warning, level_summaries  # noqa: F401 (run.py asks for it)
from workbench.errors import ConfigError
from workbench.experiments import rounds
from workbench.experiments.base import DEFAULT_ROUNDS, ExperimentConfig
from workbench.experiments.endpoint_rows import Measured, frames
from workbench.measure import timed
from workbench.models import loader
from workbench.results import store
from workbench.workloads.sessions import SessionsOptions
from workbench.workloads.trace import TraceOptions

SUMMARY_COLUMNS = (
    "variant",
    "profile",
    "level",
    "ttft_s",
    "ttft_s_p90",
    "tpot_s",
    "throughput_tps",
    "goodput_rps",
    "error_rate",
    "slo_pass",
    "identical_share",
    "cold_ttft_s",
    "startup_s",
)


class Config(ExperimentConfig):
    name: ClassVar[str] = "endpoint"

    requests: int = Field(16, ge=1, le=100_000)
    target: str | None = None
    served_model: str | None = None
    server_model: str | None = None
    server: dict[str, int | float | str | bool] = Field(default_factory=dict)
    profile: Literal["synchronous", "concurrency", "rate", "throughput", "saturation"] = "concurrency"
    levels: list[float] = Field(default_factory=lambda: [1.0, 4.0], min_length=1, max_length=32)
    search_over: Literal["rate", "concurrency"] = "concurrency"
    slo: SLO = Field(default_factory=SLO)
    over_saturation: OverSaturation = Field(default_factory=OverSaturation)
    timeout_s: float = Field(60.0, gt=0, le=3600)
    startup_timeout_s: float = Field(300.0, gt=0, le=3600)
    in_process: bool = True
    probe_share: float = Field(0.0, ge=0, le=1, description="fidelity probes per level, as a share of `requests`")
    probe_top_logprobs: int = Field(10, ge=0, le=11, description="served top logprobs per probe token (KL)")
    trace: TraceOptions | None = None  # replay a timestamped trace instead of the levels (experiments.endpoint_traffic)
    sessions: SessionsOptions | None = None  # live multi-turn sessions at each concurrency of `levels`
    follow_redirects: bool = False
    api_key_env: str | None = Field(None, description="environment variable holding the target's bearer token")

    @property
    def access(self) -> dict:
        return {"api_key_env": self.api_key_env, "follow_redirects": self.follow_redirects}

    def model_specs(self) -> list[str]:
        served = [self.server_model] if self.server_model else []
        draft = [str(self.server["draft_model"])] if "draft_model" in self.server else []
        return [self.model, *served, *draft] if self.target is None else [self.model]

    def check(self):
        from workbench.endpoint import server

        server.server_args(**self.server)  # unknown or mistyped server options fail here
        self.require(self.target is None or not self.server, "server", "applies only when the run starts its server")
        self.require(self.target is None or not self.server_model, "server_model", "applies only without target")
        self.require(
            not self.probe_share or self.target is None, "probe_share", "needs the run to start its server (model)"
        )
        self.require(not self.probe_share or self.chat != "on", "probe_share", "probes are completions (chat: off)")
        levelled = self.profile in ("concurrency", "rate", "saturation")
        self.require(not levelled or all(v > 0 for v in self.levels), "levels", "must all be > 0")
        concurrent = self.profile == "concurrency" or (self.profile == "saturation" and self.search_over != "rate")
        self.require(not concurrent or all(v == int(v) for v in self.levels), "levels", "concurrencies are integers")
        self.require(self.trace is None or self.sessions is None, "trace", "and sessions: choose one")
        if self.sessions is not None:
            self.require(self.profile == "concurrency", "profile", "sessions run at the concurrencies of levels")
        self.check_traffic_file()

    def check_traffic_file(self, context_tokens: int | None = None) -> None:
        """A `trace:` or `sessions:` file reads, every row valid (and within the model's context once it is known)."""
        from workbench.errors import DataError
        from workbench.workloads import sessions, trace

        try:
            if self.trace is not None:
                trace.read_trace(self.trace, context_tokens=context_tokens)
            if self.sessions is not None:
                sessions.read_sessions(self.sessions.path, limit=self.sessions.limit)
        except DataError as exc:
            raise ConfigError(f"{self.name}.{'trace' if self.trace else 'sessions'}: {exc}") from None

    def check_model(self, model_config: dict) -> None:
        """A `target` must answer and serve the model before anything is written (one line otherwise)."""
        self.check_traffic_file(model_config.get("max_position_embeddings"))
        if self.target is not None:
            endpoint_bench.served_model(self.target, self.served_model, self.access)


def levels(config: Config) -> list[Level]:
    if config.profile in ("synchronous", "throughput"):
        return [Level(config.profile)]
    if config.profile == "saturation":
        return [Level(config.search_over, v) for v in sorted(config.levels)]
    return [Level(config.profile, v) for v in config.levels]


def label(level: Level) -> str:
    value = f"{level.value:g}"
    return {"synchronous": "sync", "throughput": "max", "concurrency": f"c{value}", "rate": f"r{value}"}[level.profile]


@contextlib.contextmanager
def endpoint(config: Config, log_path):
    """(URL, served name, server facts): a server started for this run, or the configured target."""
    if config.target is not None:
        name = endpoint_bench.served_model(config.target, config.served_model, config.access)
        yield config.target, name, {"target": config.target}
        return
    from workbench.endpoint import server

    spec = server.resolve_model(config.server_model, base=config.model) if config.server_model else config.model
    args = server.server_args(**config.server)
    with server.serve(spec, server_args=args, log_path=log_path, startup_timeout_s=config.startup_timeout_s) as s:
        check_target(s.url, s.model)
        yield s.url, s.model, s.info()


def run(config: Config) -> pl.DataFrame:
    from workbench.paths import outputs_dir

    run_id = store.new_run_id("endpoint")
    if config.trace is not None or config.sessions is not None:
        from workbench.experiments.endpoint_traffic import run_traffic

        return run_traffic(config, run_id, endpoint=endpoint)
    loaded = loader.load(config.model, dtype=config.dtype) if config.in_process else None
    tokenizer = loaded.tokenizer if loaded else endpoint_bench.load_tokenizer(config.model)
    plan = levels(config)
    slices = config.round_limit * len(plan) if config.profile != "saturation" else len(plan)
    prompts, limits, workload, _ = endpoint_bench.endpoint_workload(
        tokenizer,
        prompt_tokens=config.prompt_tokens,
        gen_tokens=config.gen_tokens,
        count=config.requests * (slices + 1),
        seed=config.seed,
        options=_workload_options(config),
    )
    log_path = outputs_dir() / "servers" / f"{run_id}.log"
    rows: dict[str, list] = {}
    try:
        url, facts, startup = measure(config, rows, loaded, tokenizer, (prompts, limits), log_path)
    except BaseException as exc:  # a fault (ours, or Ctrl-C): the rows measured so far are kept first
        partial = {**rows, "served (unfinished level)": getattr(exc, "rows_so_far", [])}
        store.rescue_partial(partial, run_id=run_id, experiment=config.name, params=config.to_dict())
        raise
    return frames(config, run_id, Measured(rows, startup, facts, url), loaded=loaded, workload=workload)


def measure(config: Config, rows: dict, loaded, tokenizer, sent: tuple, log_path):
    """Every arm in interleaved rounds, its rows added to `rows` (variant -> rows) as they are measured.
    `sent`: (prompts, each one's max_tokens). Returns (URL, server facts, startup rows)."""
    (prompts, limits), plan = sent, levels(config)
    slices = config.round_limit * len(plan) if config.profile != "saturation" else len(plan)
    with endpoint(config, log_path) as (url, name, facts):
        eos = sorted(tokenizer.eos_token_ids or []) if tokenizer is not None else []
        facts_of = {"chat": config.chat == "on", "timeout_s": config.timeout_s, "eos_token_ids": eos, **config.access}
        target = Target(url=url, model=name, context_tokens=endpoint_bench.model_context(config.model), **facts_of)
        startup = cold_start(config, target, loaded, prompts, limits, facts, served_name=f"served-{label(plan[0])}")
        probing = probe_plan(config, loaded, facts, slices + 1) if config.probe_share else None
        if config.profile == "saturation":
            saturation_rows(config, target, plan, prompts, limits, probing, out=rows)
            for round_index in range(config.rounds or DEFAULT_ROUNDS):  # no paired comparison in a search
                if loaded is not None:
                    rows.setdefault("baseline", []).extend(in_process(config, loaded, prompts, limits, 0, round_index))
        else:
            arms = ([None] if loaded is not None else []) + plan

            def measure_round(round_index: int) -> dict[str, list[dict]]:
                out, shift = {}, round_index % len(arms)
                for arm in arms[shift:] + arms[:shift]:
                    piece = (1 + round_index * len(plan) + (plan.index(arm) if arm else 0)) % (slices + 1)
                    if arm is None:
                        out["baseline"] = in_process(config, loaded, prompts, limits, piece, round_index)
                    else:
                        out[f"served-{label(arm)}"] = served_level(config, target, arm, prompts, limits, piece, probing)
                return out

            rows.update(rounds.run_rounds(config, measure_round, desc="endpoint rounds")[0])
    return url, facts, startup


def _workload_options(config: Config) -> dict:
    from workbench.workloads import prompt_sets

    options = prompt_sets.chosen_options(config)
    return options if config.dataset else {k: v for k, v in options.items() if k != "chat"}


def indices(config: Config, piece: int, total: int) -> list[int]:
    """The workload items of one (round, level) piece: fresh ones each piece, wrapping round a short dataset."""
    return [(piece * config.requests + k) % total for k in range(config.requests)]


def piece_of(items: list, config: Config, piece: int) -> list:
    return [items[i] for i in indices(config, piece, len(items))]


def with_items(rows: list[dict], config: Config, piece: int, total: int) -> list[dict]:
    """Each row keeps the workload index of its prompt (`item`, dropped before the rows are stored)."""
    chosen = indices(config, piece, total)
    return [{**r, "item": chosen[r["request_index"]]} for r in rows]


def cold_start(config: Config, target: Target, loaded, prompts, limits, facts: dict, *, served_name: str) -> list:
    """The first request to the just-started server and, in process, the first after loading: before any warm-up.
    The served one is filed under the first served level's variant (the same server)."""
    out = []
    first = run_levels(target, prompts[-1:], [Level("synchronous")], LoadOptions(max_tokens=limits[-1:]))[0].rows[0]
    out.append({**first, "variant": served_name, "load_s": facts.get("startup_s")})
    if loaded is not None:
        token_prompt = loaded.tokenizer.encode(_text(prompts[-2]))
        timeline = timed.stream_timed(loaded.model, loaded.tokenizer, token_prompt, limits[-2])
        out.append({**timeline.metrics(), "ok": True, "variant": "baseline", "load_s": loaded.load_s})
    return [{**r, "kind": "startup", "request_index": 0, "round": 0, "trial": 0} for r in out]


def _text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    raise ValueError("the in-process baseline takes text prompts; set in_process: false for chat messages")


def in_process(config: Config, loaded, prompts, limits, piece: int, round_index: int) -> list[dict]:
    from workbench.workloads import chat

    texts = piece_of(prompts, config, piece)
    rendered = [
        chat.render(loaded.tokenizer, messages=p, chat="auto")[0] if not isinstance(p, str) else None for p in texts
    ]
    tokens = [t if t is not None else loaded.tokenizer.encode(p) for t, p in zip(rendered, texts)]
    records = timed.measure_generation(
        loaded.model,
        loaded.tokenizer,
        tokens,
        timed.Schedule(trials=config.trials, warmup=config.warmup, round_index=round_index),
        gen_tokens=piece_of(limits, config, piece),
    )
    rows = [{**r.to_row(), "ok": True, "profile": "synchronous", "level": 1.0} for r in records]
    return with_items(rows, config, piece, len(prompts))


def served_level(config: Config, target: Target, level: Level, prompts, limits, piece: int, probing=None) -> list:
    """The level's measured rows and, with `probing`, its fidelity probes' rows (`kind="probe"`): the probes are
    sent among the measured requests (`probes.mix`) and never counted in the level's figures."""
    from workbench.endpoint import probes

    measured, measured_limits = piece_of(prompts, config, piece), piece_of(limits, config, piece)
    sent, where = probes.mix(measured, probing.for_piece(piece) if probing else [])
    result = run_levels(
        target,
        sent,
        [level],
        LoadOptions(
            max_tokens=[measured_limits[i] if i >= 0 else 1 for i in where],
            trials=config.trials,
            warmup=config.warmup,
            warmup_prompts=measured,
            seed=config.seed + piece,
            oversat=config.over_saturation if level.profile == "rate" else None,
        ),
    )
    rows = [{**row, "request_index": where[row["request_index"]]} for r in result for row in r.rows]
    out = with_items(rows, config, piece, len(prompts))
    if probing is None:
        return out
    facts = {"profile": level.profile, "level": result[0].rows[0]["level"] if result[0].rows else level.value}
    outcomes = [o for r in result for o in r.outcomes]
    probe_list = [p for p in sent if isinstance(p, probes.Probe)]
    return out + [{**row, **facts} for row in probes.probe_rows(probe_list, outcomes, where, probing.model)]


def probe_plan(config: Config, loaded, facts: dict, pieces: int):
    """References for every piece's probes, computed before any is sent, in process with the model and dtype the
    server computes in (the run's baseline when it is that model in that dtype; else loaded for this)."""
    import math
    from pathlib import Path

    from workbench.endpoint import probes
    from workbench.errors import ConfigError

    spec, dtype = facts.get("model"), facts.get("dtype")  # the directory mlx_lm.server loaded
    if not spec or not Path(spec).is_dir() or dtype is None:
        raise ConfigError("probe_share: the served model's weights and dtype must be known (a local model directory)")
    served_hash = loader.fingerprint_dir(Path(spec))
    same = loaded is not None and loaded.model_hash == served_hash and loaded.dtype == dtype
    model = loaded if same else loader.load(spec, dtype=dtype)
    per_level = max(1, math.ceil(config.probe_share * config.requests))
    texts = endpoint_bench.synthetic_texts(
        model.tokenizer, prompt_tokens=config.prompt_tokens, count=per_level * pieces, seed=config.seed, start=10**6
    )  # indices far past the measured prompts: a probe never meets a cached measured prompt
    references = probes.build_references(model, texts, max_tokens=config.gen_tokens)
    probes.check_references(references, model_hash=served_hash, dtype=dtype)
    return probes.ProbePlan(model.model, references, per_level, config.probe_top_logprobs)


def saturation_rows(config: Config, target: Target, plan: list[Level], prompts, limits, probing=None, *, out=None):
    """The search runs once, levels in increasing order on fresh prompts each, stopping at the first failure;
    each level's rows go into `out` (returned) as it finishes."""
    out = {} if out is None else out
    for index, level in enumerate(plan):
        piece = index + 1
        level_rows = served_level(config, target, level, prompts, limits, piece, probing)
        out[f"served-{label(level)}"] = [{**r, "round": 0} for r in level_rows]
        if not summarise([r for r in level_rows if r.get("kind") != "probe"], config.slo)["slo_pass"]:
            break
    return out


def summary_extras(frame: pl.DataFrame) -> dict:
    """Per variant: goodput, SLO attainment and verdict, error rate, saturation, and the cold start."""
    keys = ["goodput_rps", "slo_attainment", "slo_pass", "error_rate", "top_error", "saturated", "throughput_rps"]
    keys += ["identical_share", "first_divergence_p50", "probe_kl_mean"]  # fidelity probes, where the run had them
    out = {row["variant"]: {k: row[k] for k in keys if k in row} for row in level_summaries(frame).to_dicts()}
    for row in frame.filter(kind="startup").to_dicts():
        out.setdefault(row["variant"], {}).update(cold_ttft_s=row["ttft_s"], startup_s=row["load_s"])
    return out
