"""An endpoint run's load levels from its rows: one row per variant and level, and the level Pareto front.

The served-endpoint experiment, the report's endpoint section and the dashboard all read levels through
`level_summaries` (`endpoint.slo.summarise` per level, against the run's own SLO).
"""

from __future__ import annotations

import json

import polars as pl

from workbench import stats
from workbench.endpoint.probes import summarise_probes
from workbench.endpoint.slo import summarise
from workbench.slo import SLO


def level_summaries(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per variant and load level: latency medians and tails, throughput, goodput against the run's SLO,
    error rate and whether the level was over-saturated (`endpoint.summarise`, from the rows)."""
    out = []
    speed = frame.filter(kind="speed")
    for (variant,), group in speed.group_by("variant", maintain_order=True):
        params = json.loads(group["params_json"][0] or "{}")
        slo = SLO(**params.get("slo", {}))
        summary = summarise(group.to_dicts(), slo)
        configuration = "in-process" if variant == "baseline" else "served"
        probed = frame.filter((pl.col("kind") == "probe") & (pl.col("variant") == variant)).to_dicts()
        fidelity = summarise_probes(probed) if probed else {}  # fidelity probes, counted apart (endpoint.probes)
        out.append(
            {"variant": variant, "configuration": configuration, "target": group["target"][0], **summary} | fidelity
        )
    return with_pareto(pl.DataFrame(out, strict=False))


def with_pareto(levels: pl.DataFrame) -> pl.DataFrame:
    """`pareto`: no other level (of any configuration given) has both a lower TTFT p90 and a higher throughput."""
    if levels.is_empty():
        return levels
    mask = stats.pareto_mask(levels, {"ttft_s_p90": False, "throughput_tps": True})
    return levels.with_columns(pl.Series("pareto", mask, dtype=pl.Boolean))


def failure_warning(frame: pl.DataFrame) -> str | None:
    """A one-line warning when every served request failed (error rate 1.0); `workbench run` then exits 3."""
    served = frame.filter((pl.col("kind") == "speed") & (pl.col("variant") != "baseline"))
    if served.is_empty() or served["ok"].fill_null(False).any():
        return None
    top = served["error"].drop_nulls().mode().sort().to_list()[:1]
    return (
        f"every one of the {served.height} served requests failed (error rate 1.0; commonest: "
        f"{top[0] if top else None}); pass --allow-errors to accept such a run"
    )
