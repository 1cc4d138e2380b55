"""The top of the report, as HTML with every name escaped: what was measured, the noise floor, the verdict (or
what blocked each candidate) and the warnings; then the baseline's own figures, hardware and versions.
Shown by `notebooks/99_report.ipynb` (`workbench report`); the numbers come from `analysis.decisions`.
"""

from __future__ import annotations

import html as _html

from workbench.present import header, tables
from workbench.present.charts import METRICS
from workbench.present.tables import fmt_change, fmt_value


def overview(report):
    """The top of the report: what was measured, the verdicts, the recommendations and the warnings (escaped HTML)."""
    from IPython.display import HTML

    from workbench.analysis.verdicts import summary_line

    a, esc = report.analysis, _html.escape
    runs = a.configs["run_id"].n_unique() if a.configs.height else 0
    objective = METRICS[a.objective][0].lower()
    verdicts = [
        f"<li><b>{esc(tables._label(r))}</b> <code>{esc(tables._id(r))}</code> ({esc(r['family'])}): {objective} "
        f"{esc(fmt_change(r['change_pct'], r['ci_low_pct'], r['ci_high_pct']))}, {esc(r['label'])}</li>"
        for r in a.recommended.iter_rows(named=True)
    ]
    verdict = f"<p>Recommended:</p><ul>{''.join(verdicts)}</ul>" if verdicts else header.nothing_recommended(a)
    warnings = "".join(f"<li>{esc(w)}</li>" for w in a.warnings)
    return HTML(
        f"<p>Sweep <b>{esc(report.sweep)}</b>: {report.points} points ({report.failed} failed), "
        f"{a.configs.height} configurations in {runs} runs.</p>"
        f"<p>Verdicts: {esc(summary_line(a.compared))}.</p>{verdict}"
        + (
            f'<div style="background:#fff4ce;padding:4px 12px"><b>Read with care</b><ul>{warnings}</ul></div>'
            if warnings
            else ""
        )
    )


def baseline_overview(report):
    """The baseline's measured figures (median over its runs), hardware and versions."""
    from IPython.display import HTML

    from workbench.analysis import per_variant

    base, env, esc = per_variant.baseline_summary(report.analysis.configs), report.env, _html.escape
    if not base["runs"]:
        return HTML("<p>No baseline rows in this sweep.</p>")

    def v(metric):
        return esc(fmt_value(metric, base.get(metric)))

    memory = (env.get("memory_bytes") or 0) / 2**30
    items = [
        f"<b>throughput</b> {v('throughput_tps')}, {v('throughput_rps')}",
        f"<b>TTFT</b> p50 {v('ttft_s')}, p90 {v('ttft_s_p90')}; <b>end-to-end</b> p50 {v('e2e_s')}; "
        f"<b>decode</b> {v('decode_tps')}",
        f"<b>quality</b>: perplexity {v('perplexity')}, task exact match {v('task_accuracy')}",
        f"<b>memory</b>: peak {v('peak_mem_bytes')}",
        f"<b>hardware</b>: {esc(str(env.get('cpu', '?')))}, {esc(str(env.get('cores', '?')))} cores, {memory:.0f} GiB, "
        f"backend <b>{esc(str(env.get('backend', '?')))}</b>, BLAS {esc(str(env.get('blas', '?')))}",
        f"<b>versions</b>: mlx {esc(str(env.get('mlx', '?')))}, mlx-lm {esc(str(env.get('mlx_lm', '?')))}, "
        f"Python {esc(str(env.get('python', '?')))}, git {esc(str(env.get('git_sha') or '?')[:10])}",
        f"medians over the baseline's {base['runs']} runs",
    ]
    return HTML("<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>")
