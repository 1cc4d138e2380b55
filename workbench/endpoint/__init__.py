"""Benchmark any OpenAI-compatible server: a streaming client, load profiles, SLOs and a stub for tests.

- `client`: `Target` (URL, model, chat, timeout, EOS suppression), `EndpointClient.send` -> `RequestOutcome`
  (failures are outcomes with a reason), `check_target` (one-line errors before a run);
- `load`: `Level` (synchronous, concurrency, rate, throughput), `run_levels`, `search_saturation`;
- `slo`: `SLO` (per-request limits, attainment, error rate), `OverSaturation`, `summarise` (a level from rows);
- `bench`: `run_endpoint_bench`, behind `workbench bench --target URL`;
- `server`: `serve()` starts `mlx_lm.server` as a managed subprocess (`workbench serve`);
- `stub`: a fast local streaming stub server (tests and `benchmarks/loadgen_capacity.py` only).

Metric definitions: docs/metrics.md, "Endpoints".
"""

from workbench.endpoint.client import EndpointClient, RequestOutcome, Target, check_target
from workbench.endpoint.load import Level, LevelResult, LoadOptions, SaturationSearch, run_levels, search_saturation
from workbench.endpoint.slo import SLO, OverSaturation, summarise

__all__ = [
    "SLO",
    "EndpointClient",
    "Level",
    "LevelResult",
    "LoadOptions",
    "OverSaturation",
    "RequestOutcome",
    "SaturationSearch",
    "Target",
    "check_target",
    "run_levels",
    "search_saturation",
    "summarise",
]
