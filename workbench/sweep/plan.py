"""Plan before spending: how many rounds, and how many minutes, each point of a sweep needs for its precision.

    workbench sweep params/default.yaml --plan [--pilot-rounds 6] [--json]

The noise comes from an earlier run of the same sweep when it has finished points (each point's own per-round
log-ratio SD and round time), else from a short pilot: the first point's baseline against an A/A copy of itself,
`pilot_rounds` interleaved rounds on the point's workload. Rounds for a precision p are the smallest n with
t(0.975, n-1) * SD / sqrt(n) <= log(1 + p) (`stats.rounds_for`), clamped to [3, max_rounds]; a point with an
exact `rounds` count gets that count and the half-width it should reach. Minutes count the timed rounds only
(loading and quality come on top), estimated from the pilot's time per arm and the point's number of arms.
A pilot measures the baseline: a variant much noisier than its baseline takes longer than planned.
"""

from __future__ import annotations

import math
from typing import Any, cast

import polars as pl

from workbench import stats
from workbench.experiments.rounds import MIN_ROUNDS
from workbench.results import rounds as round_stats
from workbench.sweep.spec import Sweep

PILOT_ROUNDS = 6


def pilot(sweep: Sweep, *, rounds: int = PILOT_ROUNDS) -> dict[str, Any]:
    """The baseline of the sweep's first point against an A/A copy: per-round log-ratio SD (the largest over the
    headline metrics) and seconds per arm per round."""
    from workbench import experiments
    from workbench.experiments import base
    from workbench.models import loader

    config = experiments.build_config(sweep.experiment, None, sweep.points[0].params)
    config = config.model_copy(update={"rounds": rounds, "precision": None})
    loaded = loader.load(config.model, dtype=config.dtype)
    copy = base.Variant("pilot-aa", family="baseline", lossless=True)
    frame = base.measure_speed(
        [base.Arm(base.baseline_variant(), loaded), base.Arm(copy, loaded)], config, run_id="pilot"
    )
    return noise_of(frame, arms=2) | {"basis": f"pilot ({rounds} A/A rounds of the first point's baseline)"}


def noise_of(rows: pl.DataFrame, *, arms: int) -> dict[str, Any]:
    """The largest per-round log-ratio SD over the headline metrics, and seconds per arm per round."""
    samples = round_stats.round_samples(rows)
    sds = [c.sd_log for m in round_stats.HEADLINE for c in round_stats.paired(samples, m).values()]
    sds = [s for s in sds if s is not None and math.isfinite(s)]
    walls = samples["round_wall_s"].drop_nulls() if "round_wall_s" in samples.columns else pl.Series([])
    return {
        "sd_log": max(sds) if sds else math.nan,
        "arm_s": float(cast(float, walls.median()))
        / arms,  # polars types median() as any literal if len(walls) else math.nan,
    }


def earlier(sweep: Sweep) -> dict[str, dict[str, Any]]:
    """point_id -> its own noise, from finished points of an earlier run of this sweep (empty when none)."""
    from workbench.results import integrity

    if not sweep.root.is_dir():
        return {}
    out = {}
    for directory in integrity.scan_sweep(sweep.root).finished:
        rows = pl.read_parquet(directory / "results.parquet")
        arms = rows.filter(pl.col("kind") == "speed")["variant"].n_unique()
        meta = integrity.read_point_meta(directory) or {}
        out[str(meta.get("point_id", directory.name))] = noise_of(rows, arms=max(arms, 1)) | {
            "basis": "earlier run of this point",
            "arms": arms,
        }
    return out


def plan(sweep: Sweep, *, pilot_rounds: int = PILOT_ROUNDS) -> list[dict[str, Any]]:
    """Per point: precision (or exact rounds), the rounds it will take, the half-width expected and minutes."""
    from workbench import experiments

    known = earlier(sweep)
    fallback = None
    out = []
    for point in sweep.points:
        config = experiments.build_config(sweep.experiment, None, point.params)
        noise = known.get(point.point_id)
        if noise is None or not math.isfinite(noise["sd_log"]):
            fallback = fallback or pilot(sweep, rounds=pilot_rounds)
            noise = fallback
        arms = noise.get("arms", 2)
        if config.precision is None:
            rounds = config.round_limit
        else:
            rounds = min(max(stats.rounds_for(noise["sd_log"], config.precision), MIN_ROUNDS), config.max_rounds)
        expected = _half_width(noise["sd_log"], rounds)
        minutes = rounds * arms * noise["arm_s"] / 60
        if config.time_budget_s is not None and minutes * 60 > config.time_budget_s:
            minutes, rounds = config.time_budget_s / 60, max(2, int(config.time_budget_s / (arms * noise["arm_s"])))
            expected = _half_width(noise["sd_log"], rounds)
        out.append(
            {
                "point_id": point.point_id,
                "changes": {k: v for k, v in point.params.items() if k not in sweep.fixed},
                "precision_pct": None if config.precision is None else config.precision * 100,
                "rounds": rounds,
                "expected_half_width_pct": expected,
                "minutes": minutes,
                "sd_log": noise["sd_log"],
                "basis": noise["basis"],
            }
        )
    return out


def _half_width(sd_log: float, rounds: int) -> float:
    from scipy import special

    if rounds < 2 or not math.isfinite(sd_log):
        return math.nan
    return math.expm1(float(special.stdtrit(rounds - 1, 0.975)) * sd_log / math.sqrt(rounds)) * 100


def short(row: dict[str, Any]) -> bool:
    """The precision will not be reached within max_rounds or the time budget."""
    target, expected = row["precision_pct"], row["expected_half_width_pct"]
    return target is not None and math.isfinite(expected) and expected > target


def print_plan(rows: list[dict[str, Any]]) -> None:
    total = sum(r["minutes"] for r in rows if math.isfinite(r["minutes"]))
    print(f"{'point':<14}{'target':>8}{'rounds':>8}{'± reached':>11}{'minutes':>9}  changes")
    for r in rows:
        target = "exact" if r["precision_pct"] is None else f"±{r['precision_pct']:g}%"
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "(fixed only)"
        print(
            f"{r['point_id']:<14}{target:>8}{r['rounds']:>8}{r['expected_half_width_pct']:>10.1f}%"
            f"{r['minutes']:>9.1f}  {changes}"
            + ("  (precision out of reach: max_rounds or budget)" if short(r) else "")
        )
    bases = sorted({r["basis"] for r in rows})
    print(f"total {total:.1f} minutes of timed rounds (loading and quality on top); noise from: {'; '.join(bases)}")
