"""What a load level is judged by: per-request SLOs and goodput, over-saturation, and the level's summary.

- **Goodput** is requests per second that succeeded *and* met every per-request limit (`ttft_s_max`,
  `tpot_s_max`, `e2e_s_max`), over the level's window. **SLO attainment** is the share of sent requests that
  did; a level passes when attainment >= `attainment_min` (0.9: so TTFT p90 and TPOT p90 are within their limits),
  its error rate <= `error_rate_max`, and it was not over-saturated. Level-wide targets are checked with
  `workbench.slo.checks`, the same `<metric>_max` / `<metric>_min` rule as a sweep's SLO file.
- **Over-saturation** (as GuideLLM 0.8's `stop_over_saturated` constraint): the server no longer keeps up when
  both the number of requests in flight and TTFT grow with send time, each slope positive with a relative 95%
  margin of error below `max_margin`; the earliest quarter of a level is ignored (ramp-up), nothing is judged
  before `min_seconds` and `min_requests`, and more than half the TTFTs must exceed `min_ttft_s`.
- **Send lag** is how late each request left against when it was due (`sent_s - arrival_s`: its scheduled arrival
  in an open loop, its slot freeing in a closed loop, its think time ending in a session). A level whose p99 lag
  exceeds 10 ms, or 10% of the mean gap between arrivals (open loop: between scheduled sends; closed loop and
  sessions: the mean E2E, one slot's cycle), `fell_behind`: the offered load was not what was asked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from workbench import stats
from workbench.measure.summary import speed_summary
from workbench.slo import SLO, checks, goodput

__all__ = ["SLO", "OverSaturation", "SaturationTracker", "short_output_warning", "summarise"]


LAG_LIMIT_S = 0.010
LAG_SHARE_OF_GAP = 0.10
OPEN_LOOP = ("rate", "trace")
FELL_BEHIND = "the load generator fell behind; the offered rate was not what was asked"


def send_lag(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p99 send lag (s) of the rows, the mean gap between arrivals (s), and whether the generator fell behind."""
    timed = [r for r in rows if r.get("sent_s") is not None and r.get("arrival_s") is not None]
    lags = [r["sent_s"] - r["arrival_s"] for r in timed]
    lag = stats.describe(lags)
    if rows and rows[0].get("profile") in OPEN_LOOP:
        by_trial = defaultdict(list)
        for r in rows:
            if r.get("arrival_s") is not None:
                by_trial[r.get("trial", 0)].append(r["arrival_s"])
        spans = [(max(a) - min(a), len(a) - 1) for a in by_trial.values() if len(a) > 1]
        gaps = sum(n for _, n in spans)
        gap = sum(span for span, _ in spans) / gaps if gaps else float("nan")
    else:
        gap = stats.describe(r.get("e2e_s") for r in rows if r.get("ok"))["mean"]
    p99 = lag["p99"]
    behind = p99 == p99 and (p99 > LAG_LIMIT_S or (gap == gap and gap > 0 and p99 > LAG_SHARE_OF_GAP * gap))
    return {"send_lag_s_p50": lag["p50"], "send_lag_s_p99": p99, "mean_gap_s": gap, "fell_behind": behind}


def lag_warning(summary: dict[str, Any]) -> str | None:
    """The one-line warning for a level whose generator fell behind (`send_lag`), else None."""
    if not summary.get("fell_behind"):
        return None
    level = f"{summary.get('profile')} {summary.get('level') or 0:g}"
    return (
        f"{level}: {FELL_BEHIND} (p99 send lag {1000 * summary['send_lag_s_p99']:.1f} ms; "
        f"mean gap between arrivals {1000 * summary['mean_gap_s']:.1f} ms)"
    )


class OverSaturation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_seconds: float = Field(10.0, ge=0)  # GuideLLM: 30 s; our levels are shorter
    min_requests: int = Field(10, ge=3)
    max_margin: float = Field(2.0, gt=0)  # GuideLLM's moe_threshold
    min_ttft_s: float = Field(2.5, ge=0)  # GuideLLM's minimum_ttft: more than half the TTFTs must exceed it
    correlation_s: float = Field(1.0, gt=0)  # requests this close count as one sample (GuideLLM: n <= seconds)
    check_every_s: float = Field(0.1, gt=0)


class SaturationTracker:
    """Collects (send offset, requests in flight) at each send and (send offset, TTFT) at each first chunk."""

    def __init__(self, config: OverSaturation | None):
        self.config = config or OverSaturation(enabled=False)
        self.started: list[tuple[float, float]] = []
        self.ttfts: list[tuple[float, float]] = []
        self.last_check = 0.0
        if self.config.enabled:
            import scipy.stats  # noqa: F401  (imported now: a first import mid-level would stall the event loop)

    def due(self, elapsed_s: float) -> bool:
        if not self.config.enabled or elapsed_s - self.last_check < self.config.check_every_s:
            return False
        self.last_check = elapsed_s
        return elapsed_s >= self.config.min_seconds and len(self.ttfts) >= self.config.min_requests

    def growing(self, points: list[tuple[float, float]]) -> bool:
        """A positive least-squares slope whose relative margin of error is small, with the sample size discounted
        as GuideLLM does: requests within `correlation_s` of each other are not independent evidence."""
        recent = points[len(points) // 4 :]
        if len(recent) < 3:
            return False
        span = recent[-1][0] - recent[0][0]
        effective = min(len(recent), span / self.config.correlation_s)
        if effective < 3:
            return False
        x, y = [p[0] for p in recent], [p[1] for p in recent]
        slope, half_width = stats.slope_interval(x, y, effective_n=effective)
        return slope > 0 and half_width / slope < self.config.max_margin

    def saturated(self) -> bool:
        slow = sum(ttft > self.config.min_ttft_s for _, ttft in self.ttfts)
        if 2 * slow <= len(self.ttfts):
            return False
        return self.growing(self.started) and self.growing(self.ttfts)


SPEED_KEYS = (
    *("ttft_s", "ttft_s_p90", "ttft_s_p99", "tpot_s", "tpot_s_p90", "tpot_s_p99", "e2e_s", "e2e_s_p90", "e2e_s_p99"),
    *("itl_s_p50", "itl_s_p90", "throughput_tps", "throughput_rps"),
)
SPEED_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "ttft_s": pl.Float64,
    "tpot_s": pl.Float64,
    "e2e_s": pl.Float64,
    "itl_s": pl.List(pl.Float64),
}
SPEED_COLUMNS |= {"generated_tokens": pl.Int64, "ok": pl.Boolean, "trial": pl.Int64, "window_s": pl.Float64}


def _speed(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The one speed summary (`measure.summary.speed_summary`) of a level's rows, over its trial windows."""
    if not rows:
        return {}
    frame = pl.DataFrame(
        [{c: r.get(c) for c in SPEED_COLUMNS} for r in rows], schema=SPEED_COLUMNS, strict=False
    ).with_columns(pl.col("trial").fill_null(0), pl.col("window_s").fill_null(0.0))
    out = speed_summary(frame, by=[]).row(0, named=True)
    out["window_total_s"] = frame.group_by("trial").agg(pl.col("window_s").first())["window_s"].sum()
    return {k: (float("nan") if v is None and k != "window_total_s" else v) for k, v in out.items()}


def summarise(rows: list[dict[str, Any]], slo: SLO | None = None, *, gen_tokens: int | None = None) -> dict[str, Any]:
    """One level (or run) from its rows: medians and tails, throughput and goodput over the trial windows,
    error rate and the commonest error, output lengths against `gen_tokens`, and the SLO verdict."""
    slo = slo or SLO()
    good = [r for r in rows if r.get("ok")]
    speed = _speed(rows)
    summary = {"profile": rows[0].get("profile") if rows else None, "level": rows[0].get("level") if rows else None}
    summary.update({k: speed.get(k, float("nan")) for k in SPEED_KEYS})
    window = speed.get("window_total_s", 0.0)
    generated = [r["generated_tokens"] for r in good if r.get("generated_tokens") is not None]
    met = sum(slo.met(r) for r in rows)
    errors = Counter(r.get("error") for r in rows if not r.get("ok"))
    summary.update(
        requests=len(rows),
        ok=len(good),
        error_rate=(len(rows) - len(good)) / len(rows) if rows else float("nan"),
        top_error=errors.most_common(1)[0][0] if errors else None,
        goodput_rps=goodput(met, window),
        slo_attainment=met / len(rows) if rows else float("nan"),
        generated_tokens_mean=stats.describe(generated)["mean"],
        generated_tokens_min=min(generated, default=None),
        prompt_tokens_mean=stats.describe(r.get("prompt_tokens") for r in good)["mean"],
        short_outputs=sum(n < gen_tokens for n in generated) if gen_tokens else 0,
        window_s=window,
        **send_lag(rows),
    )
    summary["saturated"] = any(r.get("saturated") for r in rows)
    level_checks = checks(summary, slo.level_targets())
    summary["slo_pass"] = all(c["pass"] for c in level_checks) and not summary["saturated"]
    return summary


def short_output_warning(summary: dict[str, Any], gen_tokens: int) -> str | None:
    """A one-line warning when some requests generated fewer tokens than asked (the server stopped early)."""
    short = summary.get("short_outputs") or 0
    if not short:
        return None
    return (
        f"{short} of {summary['ok']} requests generated fewer than {gen_tokens} tokens (shortest "
        f"{summary['generated_tokens_min']}): the server stopped early; it may not honour logit_bias on the "
        "end-of-sequence token (pass the tokenizer) or stops on a stop string"
    )
