"""The one SLO shape and the one goodput: what a request, a load level or a configuration is judged by.

- Per request: `ttft_s_max`, `tpot_s_max`, `e2e_s_max` (None: no limit). A request *meets* the SLO when it
  succeeded and every limit it has a value for holds.
- **Goodput** = requests that met the SLO / the measured window (requests per second); **attainment** = the
  share of sent requests that met it. The endpoint's levels and continuous batching both use `goodput`.
- Targets on summarised values are `<metric>_max` / `<metric>_min` numbers (`ttft_s_p90_max: 0.25`), checked by
  `checks`: a sweep's SLO file, the report's gates and a level's `attainment_min`/`error_rate_max` are all
  targets of this one form.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

PER_REQUEST = ("ttft_s", "tpot_s", "e2e_s")


class SLO(BaseModel):
    """Per-request limits (None: no limit) and the level-wide targets."""

    model_config = ConfigDict(extra="forbid")

    ttft_s_max: float | None = Field(None, gt=0)
    tpot_s_max: float | None = Field(None, gt=0)
    e2e_s_max: float | None = Field(None, gt=0)
    attainment_min: float = Field(0.9, ge=0, le=1)
    error_rate_max: float = Field(0.01, ge=0, le=1)

    def met(self, row: dict[str, Any]) -> bool:
        """A request meets the SLO: it succeeded and every limit it has a value for holds."""
        if not row.get("ok", True):
            return False
        for metric in PER_REQUEST:
            limit, value = getattr(self, f"{metric}_max"), row.get(metric)
            if limit is not None and value is not None and not math.isnan(value) and value > limit:
                return False
        return True

    def met_expr(self) -> pl.Expr:
        """`met` as a polars expression over request rows (columns that are absent count as no limit)."""
        expr = pl.lit(True)
        for metric in PER_REQUEST:
            limit = getattr(self, f"{metric}_max")
            if limit is not None:
                expr = expr & (pl.col(metric).is_null() | pl.col(metric).is_nan() | (pl.col(metric) <= limit))
        return expr

    def level_targets(self) -> dict[str, float]:
        return {"slo_attainment_min": self.attainment_min, "error_rate_max": self.error_rate_max}


def goodput(met_count: int, window_s: float) -> float:
    """Requests per second that met the SLO over the measured window (NaN without a window)."""
    return met_count / window_s if window_s else float("nan")


def checks(values: dict[str, Any], targets: dict[str, float]) -> list[dict[str, Any]]:
    """One check per `<metric>_max` / `<metric>_min` target: its threshold, the value (None: not measured), `pass`."""
    out = []
    for key, target in targets.items():
        metric, bound = key.rsplit("_", 1)
        value = values.get(metric)
        if isinstance(value, float) and math.isnan(value):
            value = None
        ok = value is not None and (value <= target if bound == "max" else value >= target)
        out.append({"target": key, "metric": metric, "bound": bound, "threshold": target, "value": value, "pass": ok})
    return out
