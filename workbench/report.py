"""The stakeholder report: `notebooks/99_report.ipynb` executed by papermill and rendered to one
self-contained HTML file (code hidden, the charts' JavaScript inlined once, no CDN), with the
charts also exported as PNGs next to it for slides.

    workbench report SWEEP [--baseline SWEEP] [--slo FILE] -o report.html
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import polars as pl

from workbench.paths import REPO_ROOT, atomic_write_text, outputs_dir

REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "99_report.ipynb"
RENDERER = "workbench_offline"


def _offline_renderer(spec: dict, **_) -> dict:
    """A chart as a div + a vegaEmbed call; the library itself is inlined once by `setup_offline_charts`."""
    div = f"vis-{uuid.uuid4().hex[:10]}"
    html = (
        f'<div id="{div}" class="workbench-chart"></div><script type="text/javascript">'
        f'vegaEmbed("#{div}", {json.dumps(spec)}, {{"renderer": "svg", "actions": false}})'
        ".catch(console.error);</script>"
    )
    return {"text/html": html}


def setup_offline_charts():
    """Register the offline renderer and return the HTML that inlines Vega, Vega-Lite and Vega-Embed."""
    import altair as alt
    import vl_convert as vlc
    from IPython.display import HTML

    alt.renderers.register(RENDERER, _offline_renderer)
    alt.renderers.enable(RENDERER)
    return HTML(f'<script type="text/javascript">{vlc.javascript_bundle()}</script>')


def load(sweep: str) -> tuple[pl.DataFrame, dict]:
    """Rows of a sweep's finished points and the environment of its first point."""
    from workbench.sweep import load_sweep_results

    rows = load_sweep_results(sweep).collect()
    env_files = sorted((outputs_dir() / "sweeps" / sweep).glob("*/env.json"))
    env = json.loads(env_files[0].read_text()) if env_files else {}
    return rows, env


def executive_summary(configs: pl.DataFrame, env: dict) -> str:
    """Markdown: the baseline's measured figures, hardware and versions."""
    base = configs.filter(pl.col("variant") == "baseline")
    if base.is_empty():
        return "No baseline rows in this sweep."

    def fmt(col, scale=1.0, unit="", digits=3):
        values = base[col].drop_nulls() if col in base.columns else pl.Series([])
        return f"{values.median() * scale:.{digits}g}{unit}" if len(values) else "n/a"

    lines = [
        f"- **throughput**: {fmt('throughput_tps', digits=4)} generated tok/s, "
        f"{fmt('throughput_rps', digits=3)} requests/s",
        f"- **TTFT**: p50 {fmt('ttft_s', 1e3, ' ms')}, p90 {fmt('ttft_s_p90', 1e3, ' ms')}; "
        f"**E2E** p50 {fmt('e2e_s', 1e3, ' ms')}; **decode** {fmt('decode_tps', digits=4)} tok/s",
        f"- **quality**: perplexity {fmt('perplexity')}, task exact match {fmt('task_accuracy', 100, ' %')}",
        f"- **memory**: peak {fmt('peak_mem_bytes', 2**-20, ' MiB')}",
        f"- **hardware**: {env.get('cpu', '?')}, {env.get('cores', '?')} cores, "
        f"{(env.get('memory_bytes') or 0) / 2**30:.0f} GiB, backend **{env.get('backend', '?')}**, "
        f"BLAS {env.get('blas', '?')}",
        f"- **versions**: mlx {env.get('mlx', '?')}, mlx-lm {env.get('mlx_lm', '?')}, Python {env.get('python', '?')}, "
        f"git {str(env.get('git_sha') or '?')[:10]}",
        f"- baselines measured in {base.height} runs; figures are medians across them.",
    ]
    return "\n".join(lines)


def failures(sweep: str) -> tuple[int, int]:
    root = outputs_dir() / "sweeps" / sweep
    points = [p for p in root.iterdir() if p.is_dir()] if root.exists() else []
    return sum((p / "error.json").exists() and not (p / "results.parquet").exists() for p in points), len(points)


def export_pngs(charts: dict, directory: str | Path) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chart in charts.items():
        path = directory / f"{name}.png"
        chart.save(str(path), scale_factor=2)
        paths.append(path)
    return paths


def render(
    sweep: str,
    output: Path,
    *,
    baseline_sweep: str | None = None,
    slo_file: str | None = None,
    quality: str = "task_accuracy",
) -> Path:
    """Execute the report notebook for a sweep and write a self-contained HTML file (+ PNGs beside it)."""
    import papermill
    from nbconvert import HTMLExporter

    from workbench.jupyter_kernel import KERNEL_NAME

    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    executed = output.with_suffix(".ipynb")
    papermill.execute_notebook(
        str(REPORT_NOTEBOOK),
        str(executed),
        kernel_name=KERNEL_NAME,
        cwd=str(REPO_ROOT),
        progress_bar=False,
        parameters={
            "sweep": sweep,
            "baseline_sweep": baseline_sweep,
            "slo_file": slo_file,
            "quality": quality,
            "assets_dir": str(output.parent / f"{output.stem}_charts"),
        },
    )
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_filename(str(executed))
    html = strip_remote_assets(html)
    atomic_write_text(output, html)
    return output


def strip_remote_assets(html: str) -> str:
    """Drop nbconvert's CDN script tags (require.js, MathJax: the report uses neither) and refuse any other
    remote asset, so the file opens offline."""
    import re

    html = re.sub(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>', "", html)
    html = re.sub(r'<script type="text/x-mathjax-config">.*?</script>', "", html, flags=re.S)
    remote = re.search(r'<(?:script|link|img)[^>]*(?:src|href)="(https?://[^"]+)"', html)
    if remote:
        raise RuntimeError(f"report would load {remote.group(1)} from the network")
    return html
