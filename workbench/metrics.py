"""The one table of metrics: each column's human label, unit, display scale, direction and kind.

Charts, tables, significance, gates, the report, the dashboard and the terminal read labels, units and
directions from here (as AIPerf keeps tag, header and unit beside each metric), so no two places disagree on
what "TTFT p90" is called, which unit it is shown in, or whether lower is better. Stored values keep their
SI units (`*_s`, `*_bytes`); `scale` converts them to the unit shown.

    >>> from workbench import metrics
    >>> metrics.title("ttft_s_p90")
    'TTFT p90 (ms)'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """Which comparisons a metric takes part in: speed (per-round samples), quality (per-item scores), memory."""

    SPEED = "speed"
    QUALITY = "quality"
    MEMORY = "memory"


@dataclass(frozen=True)
class Metric:
    name: str  # the stored column
    label: str  # what a person reads
    unit: str  # the unit shown ("" when the metric has none)
    scale: float  # stored value * scale = shown value
    higher_is_better: bool
    kind: Kind
    sampled: bool = False  # has per-trial samples, so a paired interval over rounds (speed metrics)

    @property
    def title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def shown(self, value: float) -> float:
        return value * self.scale


_S, _Q, _M = Kind.SPEED, Kind.QUALITY, Kind.MEMORY
TABLE: tuple[Metric, ...] = (
    Metric("throughput_tps", "Throughput", "generated tok/s", 1.0, True, _S, sampled=True),
    Metric("throughput_rps", "Request rate", "requests/s", 1.0, True, _S),
    Metric("goodput_rps", "Goodput", "requests/s", 1.0, True, _S),
    Metric("ttft_s", "TTFT p50", "ms", 1e3, False, _S, sampled=True),
    Metric("ttft_s_p90", "TTFT p90", "ms", 1e3, False, _S),
    Metric("e2e_s", "End-to-end latency p50", "ms", 1e3, False, _S, sampled=True),
    Metric("decode_tps", "Decode speed", "tok/s", 1.0, True, _S, sampled=True),
    Metric("prefill_tps", "Prefill speed", "tok/s", 1.0, True, _S),
    Metric("tpot_s", "Time per output token p50", "ms", 1e3, False, _S),
    Metric("itl_s", "Inter-token latency p50", "ms", 1e3, False, _S),
    Metric("peak_mem_bytes", "Peak MLX memory", "MiB", 2**-20, False, _M),
    Metric("perplexity", "Held-out perplexity", "", 1.0, False, _Q),
    Metric("task_accuracy", "Task exact match", "%", 100.0, True, _Q),
    Metric("task_f1", "Task token F1", "%", 100.0, True, _Q),
    Metric("kl_mean", "KL divergence vs baseline", "nats", 1.0, False, _Q),
    Metric("greedy_agreement", "Greedy agreement with baseline", "%", 100.0, True, _Q),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in TABLE}
SAMPLED: tuple[str, ...] = tuple(m.name for m in TABLE if m.sampled)
QUALITY: tuple[str, ...] = tuple(m.name for m in TABLE if m.kind is Kind.QUALITY)


def get(name: str) -> Metric | None:
    return BY_NAME.get(name)


def title(name: str) -> str:
    """'TTFT p90 (ms)': the human label of a column with its unit; the column name when it is not a metric."""
    metric = BY_NAME.get(name)
    return metric.title if metric else name.replace("_", " ")


def higher_is_better(name: str) -> bool:
    """The direction of a metric; a column that is not in the table is an error, not a guess."""
    return BY_NAME[name].higher_is_better
