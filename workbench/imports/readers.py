"""Other tools' result files read into the workbench's rows: GuideLLM's JSON report, AIPerf's per-request
export, `vllm bench serve --save-result [--save-detailed]`.

The tools disagree on names and definitions (docs/metrics.md, "Other tools' files"), so wherever a file holds
per-request timing the metrics are recomputed from it with the workbench's one definition
(`measure.timed.request_metrics`): TTFT = first content chunk - send, TPOT = (last - first) / (N - 1),
ITL = the gaps between chunks, E2E = last chunk - send. What each file holds:

- **GuideLLM** (`benchmarks[].requests.{successful,errored,incomplete}[].info.timings`): send, first and last
  token iteration and the output token count per request; no chunk times, so `itl_s` stays empty (GuideLLM's
  own "ITL" is our TPOT). Errored and incomplete requests are rows with `ok = false`.
- **AIPerf** (`profile_export.jsonl`, one record a line): `request_start_ns`, `time_to_first_token` and the
  `inter_chunk_latency` list, so every chunk time is rebuilt; warm-up records are dropped, error records are
  rows with `ok = false`. The run's concurrency or rate and AIPerf's version come from `profile_export_aiperf.json`
  beside it; that aggregate file alone is summaries only.
- **vLLM** (`--save-detailed`): `ttfts` and `itls` per request (chunk gaps) and `errors`; failed requests,
  which vLLM leaves out of every statistic, are rows with `ok = false` here. No send times: the window is the
  file's `duration`. Without `--save-detailed` the file is summaries only.

Where a file has only summaries they are kept as that tool's own figures, under its own names (`tool_summary`),
never relabelled as ours. A file that is not what `--tool` says is one `DataError` naming the file (and line).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import DataError
from workbench.measure.timed import request_metrics

TOOLS = ("guidellm", "aiperf", "vllm")


@dataclass
class ImportedLevel:
    """One load level of an imported file: its rows (our schema) and the tool's own summary figures."""

    profile: str
    level: float
    rows: list = field(default_factory=list)
    tool_summary: dict = field(default_factory=dict)
    window_s: float | None = None


@dataclass
class Imported:
    tool: str
    version: str
    levels: list
    per_request: bool
    facts: dict = field(default_factory=dict)  # target, model, anything the file says about the run


def bad(path: Path, problem: str, line: int | None = None) -> DataError:
    return DataError(f"{path}{f':{line}' if line else ''}: {problem}")


def timing_row(index: int, t0: float, times: list[float], prompt_tokens, tokens, *, gaps: bool = True) -> dict:
    """A successful request in our schema from its send time and content-chunk times (`gaps=False`: only the
    first and last are known, so there is no ITL)."""
    metrics = request_metrics(t0, times, int(prompt_tokens or 0), generated_tokens=int(tokens or len(times)))
    if prompt_tokens is None:
        metrics.update(prompt_tokens=None, prefill_tps=math.nan)
    if not gaps:
        metrics["itl_s"] = None
    return {"request_index": index, "ok": True, "error": None, **metrics}


def failed_row(index: int, error: object) -> dict:
    return {"request_index": index, "ok": False, "error": " ".join(str(error or "failed").split())[:200]}


def finish(level: ImportedLevel, sends: list[float], ends: list[float]) -> ImportedLevel:
    """Send offsets from the level's first send and the window (first send to last end) on every row."""
    start = min((s for s in sends if s is not None), default=None)
    if level.window_s is None and start is not None and ends:
        level.window_s = max(ends) - start
    for row, sent in zip(level.rows, sends):
        offset = sent - start if start is not None and sent is not None else None
        row.update(sent_s=offset, window_s=level.window_s, trial=0, round=0)
        row.update(profile=level.profile, level=level.level, kind="speed")
    return level


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise bad(path, f"cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise bad(path, f"is not JSON ({str(exc).split(':')[0]})", line) from None


GUIDELLM_PROFILES = {"synchronous": "synchronous", "concurrent": "concurrency", "throughput": "throughput"}


def guidellm_level(strategy: dict) -> tuple[str, float]:
    kind = strategy.get("type_")
    if kind in ("constant", "poisson", "async"):
        return "rate", float(strategy.get("rate") or 0.0)
    profile = GUIDELLM_PROFILES.get(str(kind), str(kind))
    return profile, float(strategy.get("streams") or (1 if profile == "synchronous" else 0))


def read_guidellm(path: Path) -> Imported:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list) or "metadata" not in doc:
        raise bad(path, "is not a GuideLLM report (no 'metadata' and 'benchmarks')")
    levels = []
    for b, bench in enumerate(doc["benchmarks"]):
        try:
            profile, value = guidellm_level(bench["config"]["strategy"])
            requests, metrics = bench["requests"], bench["metrics"]
            level = ImportedLevel(profile, value, tool_summary=guidellm_summary(metrics))
            sends, ends = [], []
            for status in ("successful", "errored", "incomplete"):
                for request in requests.get(status) or []:
                    timings = request["info"]["timings"]
                    index = len(level.rows)
                    if status == "successful":
                        tokens = request["output_metrics"]["text_tokens"]
                        first, last = timings["first_token_iteration"], timings["last_token_iteration"]
                        times = [first] if first == last or tokens == 1 else [first, last]
                        prompt = (request.get("input_metrics") or {}).get("text_tokens")
                        level.rows.append(
                            timing_row(index, timings["request_start"], times, prompt, tokens, gaps=False)
                        )
                        level.rows[-1]["cached_tokens"] = request.get("cached_tokens")
                        ends.append(last)
                    else:
                        level.rows.append(failed_row(index, request["info"].get("error") or status))
                        ends.append(timings.get("request_end") or timings.get("request_start"))
                    sends.append(timings.get("request_start") or timings.get("queued"))
            levels.append(finish(level, sends, [e for e in ends if e is not None]))
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(path, f"benchmark {b}: not GuideLLM's report shape ({exc.__class__.__name__}: {exc})") from None
    version = (doc.get("metadata") or {}).get("guidellm_version") or "unknown"
    backend = ((doc.get("config") or {}).get("spec") or {}).get("backend") or {}
    facts = {"target": backend.get("target"), "model": backend.get("model")}
    return Imported("guidellm", str(version), levels, per_request=True, facts=facts)


def guidellm_summary(metrics: dict) -> dict:
    """GuideLLM's own medians (its definitions: its TPOT includes the first token; its ITL is our TPOT)."""
    out = {}
    for name in ("time_to_first_token_ms", "inter_token_latency_ms", "time_per_output_token_ms", "request_latency"):
        successful = (metrics.get(name) or {}).get("successful") or {}
        out[f"{name}.median" + ("" if name.endswith("_ms") else " (s)")] = successful.get("median")
    for name in ("requests_per_second", "output_tokens_per_second"):
        out[f"{name}.mean"] = ((metrics.get(name) or {}).get("successful") or {}).get("mean")
    return out


def aiperf_sibling(path: Path) -> dict:
    """The aggregate `profile_export_aiperf.json` (or `.json` export) beside a per-request export, if any."""
    for candidate in (path.with_name("profile_export_aiperf.json"), path.with_suffix(".json")):
        if candidate.is_file() and candidate != path:
            doc = read_json(candidate)
            if isinstance(doc, dict) and "aiperf_version" in doc:
                return doc
    return {}


def aiperf_level(aggregate: dict) -> tuple[str, float]:
    phases = ((aggregate.get("input_config") or {}).get("phases")) or []
    profiling = [p for p in phases if p.get("kind") == "profiling"] or [{}]
    phase = profiling[0]
    if phase.get("request_rate"):
        return "rate", float(phase["request_rate"])
    if phase.get("concurrency"):
        return "concurrency", float(phase["concurrency"])
    return "unknown", 0.0


def aiperf_summary(aggregate: dict) -> dict:
    """AIPerf's own p50s and rates (its inter_token_latency is our TPOT; inter_chunk_latency our ITL)."""
    out = {}
    for name in ("time_to_first_token", "inter_token_latency", "inter_chunk_latency", "request_latency"):
        figure = aggregate.get(name) or {}
        scale = 1.0 if figure.get("unit") == "ms" else 1000.0 if figure.get("unit") in ("s", "sec") else 1.0
        out[f"{name}.p50_ms"] = figure["p50"] * scale if figure.get("p50") is not None else None
    for name in ("request_throughput", "output_token_throughput", "goodput"):
        out[f"{name}.avg"] = (aggregate.get(name) or {}).get("avg")
    return out


def read_aiperf(path: Path) -> Imported:
    if path.suffix == ".json":  # the aggregate alone: AIPerf's summaries, under AIPerf's names
        doc = read_json(path)
        if not isinstance(doc, dict) or "aiperf_version" not in doc:
            raise bad(path, "is not an AIPerf export (no 'aiperf_version'; give profile_export.jsonl)")
        profile, value = aiperf_level(doc)
        level = ImportedLevel(profile, value, tool_summary=aiperf_summary(doc))
        return Imported("aiperf", str(doc["aiperf_version"]), [level], per_request=False)
    aggregate = aiperf_sibling(path)
    profile, value = aiperf_level(aggregate)
    level = ImportedLevel(profile, value, tool_summary=aiperf_summary(aggregate) if aggregate else {})
    sends, ends = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(path, f"cannot be read ({getattr(exc, 'strerror', None) or exc.__class__.__name__})") from None
    base_ns = None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            meta, metrics = record["metadata"], record.get("metrics") or {}
            if meta.get("benchmark_phase", "profiling") != "profiling":
                continue
            base_ns = meta["request_start_ns"] if base_ns is None else base_ns
            t0 = (meta["request_start_ns"] - base_ns) / 1e9  # integer ns first: epoch seconds lose 0.2 us in a float
            index = len(level.rows)
            if record.get("error") or "time_to_first_token" not in metrics:
                error = record.get("error") or {"message": "no time_to_first_token"}
                level.rows.append(failed_row(index, error.get("message") if isinstance(error, dict) else error))
                ends.append((meta.get("request_end_ns", meta["request_start_ns"]) - base_ns) / 1e9)
            else:
                times = [t0 + metrics["time_to_first_token"]["value"] / 1000]
                for gap_ms in (metrics.get("inter_chunk_latency") or {}).get("value") or []:
                    times.append(times[-1] + gap_ms / 1000)
                tokens = (metrics.get("output_token_count") or metrics.get("output_sequence_length") or {})["value"]
                prompt = (metrics.get("input_sequence_length") or {}).get("value")
                level.rows.append(timing_row(index, t0, times, prompt, tokens))
                level.rows[-1]["cached_tokens"] = (metrics.get("usage_prompt_cache_read_tokens") or {}).get("value")
                ends.append(times[-1])
            sends.append(t0)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise bad(path, f"not an AIPerf per-request record ({exc.__class__.__name__}: {exc})", number) from None
    if not level.rows:
        raise bad(path, "holds no profiling records (AIPerf per-request export expected)")
    version = str(aggregate.get("aiperf_version") or "unknown (no profile_export_aiperf.json beside the file)")
    facts = {"model": ",".join(m.get("name", "") for m in ((aggregate.get("input_config") or {}).get("models") or {})
                               .get("items", []))} if aggregate else {}  # fmt: skip
    return Imported("aiperf", version, [finish(level, sends, ends)], per_request=True, facts=facts)


VLLM_SUMMARY = ("median_ttft_ms", "median_tpot_ms", "median_itl_ms", "median_e2el_ms", "request_throughput",
                "output_throughput", "request_goodput")  # fmt: skip


def read_vllm(path: Path) -> Imported:
    doc = read_json(path)
    if not isinstance(doc, dict) or "completed" not in doc or "duration" not in doc:
        raise bad(path, "is not a `vllm bench serve --save-result` file (no 'completed' and 'duration')")
    rate, concurrency = doc.get("request_rate"), doc.get("max_concurrency")
    finite_rate = rate is not None and rate != "inf" and math.isfinite(float(rate))
    profile, value = ("rate", float(rate or 0)) if finite_rate else ("concurrency", float(concurrency or 0))
    profile = profile if finite_rate or concurrency else "throughput"
    summary = {name: doc.get(name if name in doc else f"{name}:") for name in VLLM_SUMMARY}
    level = ImportedLevel(profile, value, tool_summary=summary, window_s=float(doc["duration"]))
    detailed = all(isinstance(doc.get(key), list) for key in ("ttfts", "itls", "output_lens"))
    if detailed:
        try:
            errors = doc.get("errors") or [""] * len(doc["ttfts"])
            inputs = doc.get("input_lens") or [None] * len(doc["ttfts"])
            for i, (ttft, itl, tokens, error) in enumerate(zip(doc["ttfts"], doc["itls"], doc["output_lens"], errors)):
                if error or not tokens:
                    level.rows.append(failed_row(i, error or "no output"))
                    continue
                times = [float(ttft)]
                for gap in itl:
                    times.append(times[-1] + float(gap))
                level.rows.append(timing_row(i, 0.0, times, inputs[i], tokens))
        except (TypeError, ValueError) as exc:
            raise bad(path, f"per-request lists are not vLLM's shape ({exc})") from None
        for row in level.rows:
            row.update(window_s=level.window_s, trial=0, round=0, profile=profile, level=value, kind="speed")
    version = str(doc.get("vllm_version") or doc.get("version") or "unknown (the file does not record it)")
    facts = {"model": doc.get("model_id"), "backend": doc.get("backend"), "date": doc.get("date")}
    return Imported("vllm", version, [level], per_request=detailed, facts=facts)


READERS = {"guidellm": read_guidellm, "aiperf": read_aiperf, "vllm": read_vllm}


def read(path: Path, tool: str) -> Imported:
    if tool not in READERS:
        raise DataError(f"--tool {tool!r} is unknown; choose one of {', '.join(TOOLS)}")
    path = Path(path)
    if not path.is_file():
        raise bad(path, "no such file")
    return READERS[tool](path)
