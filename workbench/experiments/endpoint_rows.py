"""The rows of an endpoint run in the shared schema (`experiments.endpoint` and `experiments.endpoint_traffic`):
the in-process baseline under its model's identity, the served levels under the served model's (`remote` backend
for a configured target), each variant's cold start with it."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from workbench import runtime
from workbench.experiments.base import Variant
from workbench.results import store


@dataclass
class Measured:
    """What an endpoint run measured: rows per variant name, the cold-start rows, the server's facts, its URL."""

    rows: dict[str, list]
    startup: list
    facts: dict
    url: str


def frames(config, run_id: str, measured: Measured, *, loaded, workload) -> pl.DataFrame:
    """The measured rows in the shared schema: the in-process baseline under its model's identity, the served
    levels under the served model's, each variant's cold start with it."""
    rows, startup, facts, url = measured.rows, measured.startup, measured.facts, measured.url
    served_identity = {
        "model_id": facts.get("model_spec") or config.served_model or config.model,
        "model_hash": None,
        "backend": runtime.backend() if config.target is None else "remote",
        "blas": runtime.active_blas() if config.target is None else None,
        "dtype": facts.get("dtype"),
        "workload": workload.name,
        "workload_hash": workload.hash,
    }
    base_identity = store.model_identity(loaded, workload) if loaded is not None else served_identity
    server = {"server": config.server, "server_model": config.server_model, "target": config.target}
    out = []
    for name, variant_rows in rows.items():
        baseline = name == "baseline"
        variant = Variant(
            name,
            family="baseline" if baseline else "endpoint",
            changes={} if baseline else {"served": True, **server},
        )
        level = variant_rows[0].get("level") if variant_rows else None
        params = {"profile": variant_rows[0].get("profile") if variant_rows else None, "level": level}
        params |= {"slo": config.slo.model_dump(), **({} if baseline else {**server, "server_info": facts})}
        identity = variant.identity(run_id=run_id, experiment=config.name, params_json=params)
        identity["target"] = None if baseline else url
        facts_rows = [
            {**{k: v for k, v in r.items() if k != "item"}, "kind": "speed", **workload.request_facts(r["item"])}
            if r.get("kind") != "probe"
            else r
            for r in variant_rows
        ]
        out.append(store.to_frame(facts_rows, **identity, **(base_identity if baseline else served_identity)))
        mine = [{k: v for k, v in r.items() if k != "variant"} for r in startup if r["variant"] == name]
        out.append(store.to_frame(mine, **identity, **(base_identity if baseline else served_identity)))
    return pl.concat(out, how="diagonal_relaxed")
