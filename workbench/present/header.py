"""What a report measured, said first: the model (name, parameters, dtype, size), the backend and machine, the
workload (prompt and output lengths or the dataset, with its hash), and rounds, trials and precision where the
sweep recorded them; and, when nothing is recommended, what blocked each candidate.

The model is resolved as `serve` and `bench` resolve it (`models.loader.describe`); everything else is read off
the sweep's rows and its first point's env.json. Shown by `notebooks/99_report.ipynb` (`workbench report`).
"""

from __future__ import annotations

import html
import json
from typing import cast

import polars as pl

from workbench import names, terminal
from workbench.analysis.significance import BASELINE


def _first(rows: pl.DataFrame, column: str):
    if column not in rows.columns:
        return None
    values = rows[column].drop_nulls()
    return values[0] if values.len() else None


def _distinct(rows: pl.DataFrame, column: str) -> list:
    return sorted(rows[column].drop_nulls().unique().to_list(), key=str) if column in rows.columns else []


def model_facts(rows: pl.DataFrame) -> dict:
    """The model under test: the sweep's `model` parameter resolved here, and the compute dtype its rows record."""
    from workbench.models import loader

    spec = _first(rows, "param_model") or _first(rows.filter(pl.col("variant") == BASELINE), "model_id")
    facts = loader.describe(spec) if spec else {"name": "unknown"}
    facts["compute_dtype"] = _distinct(rows.filter(pl.col("variant") == BASELINE), "dtype")
    return facts


def workload_facts(rows: pl.DataFrame) -> dict:
    """The speed workload: name(s) and hash(es), prompt/output lengths or dataset, requests, trials, rounds,
    precision (when the sweep set one)."""
    speed = rows.filter(pl.col("kind") == "speed") if "kind" in rows.columns else rows
    rounds = None
    if "round" in speed.columns and speed["round"].drop_nulls().len():
        rounds = int(cast(int, speed.group_by("run_id").agg(pl.col("round").n_unique())["round"].max()))
    return {
        "workloads": _distinct(speed, "workload"),
        "hashes": [str(h)[:12] for h in _distinct(speed, "workload_hash")],
        "dataset": _distinct(rows, "param_dataset"),
        "prompt_tokens": _distinct(rows, "param_prompt_tokens"),
        "gen_tokens": _distinct(rows, "param_gen_tokens"),
        "prompt_tokens_measured": speed["prompt_tokens"].mean() if "prompt_tokens" in speed.columns else None,
        "requests": _distinct(rows, "param_requests"),
        "trials": _distinct(rows, "param_trials"),
        "rounds": rounds,
        "precision": _distinct(rows, "param_precision") or _distinct(rows, "param_precision_pct"),
    }


def _joined(values: list, unit: str = "") -> str:
    return " / ".join(f"{v}{unit}" for v in values) if values else "?"


def header_lines(rows: pl.DataFrame, env: dict) -> list[tuple[str, str]]:
    """(label, text) lines of the header, plain text (escaped where shown as HTML)."""
    model, work = model_facts(rows), workload_facts(rows)
    parts = [model.get("name") or "unknown"]
    if model.get("parameters"):
        parts.append(f"{model['parameters'] / 1e6:.2f} M parameters")
    stored = model.get("quantisation") or model.get("dtype")
    computed = _joined(model.get("compute_dtype") or [])
    parts.append(f"stored {stored}, computed in {computed}" if stored else f"computed in {computed}")
    if model.get("size_bytes"):
        parts.append(f"{terminal.value('size_on_disk_bytes', model['size_bytes'])} MiB on disk")
    memory = (env.get("memory_bytes") or 0) / 2**30
    machine = [f"backend {env.get('backend', '?')}", f"BLAS {env.get('blas', '?')}"]
    machine += [f"{env.get('cpu', '?')}, {env.get('cores', '?')} cores, {memory:.0f} GiB"]
    found = env.get("machine")  # the fingerprint (a mapping; `present.machines`), or an older run's id
    ident = (found.get("machine_id") or found.get("host_hash")) if isinstance(found, dict) else found
    if ident or env.get("machine_id"):
        machine.append(f"machine {ident or env.get('machine_id')}")
    if work["dataset"]:
        shape = f"dataset {_joined(work['dataset'])}, outputs up to {_joined(work['gen_tokens'])} tokens"
    else:
        shape = f"{_joined(work['prompt_tokens'])} prompt + {_joined(work['gen_tokens'])} output tokens"
    shape += f" ({_joined(work['workloads'])}, hash {_joined(work['hashes'])})"
    timing = f"{_joined(work['requests'])} requests × {_joined(work['trials'])} trials per round"
    if work["rounds"]:
        timing += f", up to {work['rounds']} interleaved rounds"
    timing += f", precision target {_joined(work['precision'])}" if work["precision"] else ", no precision target"
    return [("Model", ", ".join(parts)), ("Machine", "; ".join(machine)), ("Workload", shape), ("Timing", timing)]


def header(report):
    """The report's header as HTML (every value escaped)."""
    from IPython.display import HTML

    lines = header_lines(report.rows, report.env)
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in lines)
    return HTML(f'<ul class="workbench-header">{items}</ul>')


def display_name(row: dict) -> str:
    """A configuration row's human name (its point's `label:` first)."""
    return names.configuration_name(
        row.get("changes"), family=row.get("family"), variant=row.get("variant"), label=row.get("point_label")
    )


def short_id(point_id) -> str:
    return str(point_id or "")[:8]


def blocked(analysis) -> list[dict]:
    """Why each candidate (a configuration that is neither the baseline nor an A/A copy of it) was not
    recommended: not on the Pareto front, misses an SLO, a change within noise, or worse; with its measured change
    in the objective."""
    configs = analysis.configs
    if configs.is_empty():
        return []
    keys = ["run_id", "variant"]
    statuses = {(r["run_id"], r["variant"]): r["status"] for r in analysis.candidates.iter_rows(named=True)}
    change = analysis.compared.filter(pl.col("metric") == analysis.objective)
    changes = {(r["run_id"], r["variant"]): r for r in change.iter_rows(named=True)}
    out = []
    for row in configs.filter(~pl.col("is_reference")).iter_rows(named=True):
        key = tuple(row[k] for k in keys)
        if row.get("family") == BASELINE:
            continue  # an A/A copy of the baseline checks the method; it is never a candidate
        if key in statuses:
            reason = statuses[key]
        else:
            reason = "not on the Pareto front: another configuration is as good on TTFT p90, throughput and quality"
        if reason == "recommended":
            continue
        measured = changes.get(key, {})
        verdict = terminal.verdict(measured)
        out.append(
            {
                "name": display_name(row),
                "id": short_id(row.get("point_id")),
                "reason": reason,
                "change": terminal.change(measured) + (f", {verdict}" if verdict else ""),
            }
        )
    return out


def nothing_recommended(analysis) -> str:
    """The 'nothing recommended' paragraph as HTML: one line per candidate naming what blocked it."""
    objective = terminal.UNITS.get(analysis.objective, (analysis.objective.replace("_", " "),))[0]
    items = "".join(
        f"<li><b>{html.escape(b['name'])}</b> <code>{html.escape(b['id'])}</code>: {html.escape(b['reason'])} "
        f"({html.escape(objective)} {html.escape(b['change'])})</li>"
        for b in blocked(analysis)
    )
    return f"<p><b>No configuration is recommended.</b> What blocked each one:</p><ul>{items}</ul>"


def slo_sources(slo: dict, slo_file: str | None, defaults: dict) -> dict[str, str]:
    """Each SLO target's source: the `--slo` file, or the report's default."""
    from_file = set()
    if slo_file:
        from workbench.yamlfile import read_yaml_mapping

        from_file = set(read_yaml_mapping(slo_file, ValueError))
    return {k: (f"--slo {slo_file}" if k in from_file else "report default") for k in slo}


def endpoint_slo(rows: pl.DataFrame) -> str | None:
    """The endpoint sweep's own SLO (from its points' params), in words; None when not recorded."""
    found = set()
    for text in _distinct(rows, "params_json"):
        slo = json.loads(text).get("slo")
        if slo:
            found.add(", ".join(f"{k} {v:g}" for k, v in sorted(slo.items()) if isinstance(v, (int, float))))
    return "; ".join(sorted(found)) or None


def report_extras(rows, slo: dict, slo_file: str | None, endpoint_rows, match) -> dict:
    """The `Report` fields this module fills: rows (for the header), SLO sources, the endpoint sweep's SLO, and
    the `--baseline` configurations left out (`analysis.like_for_like`)."""
    from workbench.analysis.gates import DEFAULT_SLO

    return {
        "rows": rows,
        "slo_sources": slo_sources(slo, slo_file, DEFAULT_SLO),
        "endpoint_slo": endpoint_slo(endpoint_rows) if endpoint_rows is not None else None,
        "baseline_left_out": match.left_out if match is not None else [],
    }
