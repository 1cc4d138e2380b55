"""The stakeholder report: `notebooks/99_report.ipynb` executed by papermill and rendered to one
self-contained HTML file (code hidden, the charts' JavaScript inlined once, no CDN).

    workbench report SWEEP [--baseline OLD_SWEEP] [--slo FILE] [--quality M] [--objective M] [-o X.html] [--json]
                           [--include-stale] [--endpoint ENDPOINT_SWEEP] [--compare-import NAME ...]

Only verified points are reported (`integrity`): corrupt points, stray entries and stale points (no longer
in the sweep file; unless `--include-stale`) are left out, each named in a warning on stderr and in the report.

Everything else the report makes goes into a folder of its own beside the HTML, `X_files/`: the executed
notebook, the charts as PNGs for slides and `summary.json` (what `--json` prints). Both are written
atomically. `-o` over a file that is not an earlier report, over a folder `X_files/` that is not an earlier
report's, or inside `notebooks/` is refused. `--json` prints one JSON object as its last line
(recommendations, noise floor, SLO checks, regressions) for CI jobs to gate on; the report's paths then go to
stderr, so stdout is exactly that one JSON document.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from workbench import console, stats
from workbench.analysis import decisions, gates, significance
from workbench.errors import OutputsError, UsageError
from workbench.paths import REPO_ROOT, atomic_dir, atomic_write_text, outputs_dir
from workbench.present import machines
from workbench.present.sweep_rows import failures, load, point_conditions, scan  # noqa: F401 (tests and the notebook)

if TYPE_CHECKING:
    from IPython.display import HTML

    from workbench.present.endpoint_section import EndpointSection
    from workbench.present.import_section import ImportSection
    from workbench.present.machines import Machines

REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "99_report.ipynb"
GENERATOR = '<meta name="generator" content="workbench-report">'
MARKER = ".workbench-report"
INCLUDE_STALE = "WORKBENCH_INCLUDE_STALE"
QUALITIES = ("task_accuracy", "perplexity", "kl_mean", "greedy_agreement")


def setup_arg_parser() -> console.Parser:
    parser = console.parser("report", "render a sweep's stakeholder report to one offline HTML file")
    parser.add_argument("sweep", help="name of a sweep under outputs/sweeps/")
    parser.add_argument("--baseline", help="an earlier sweep to check for regressions")
    parser.add_argument("--endpoint", help="an endpoint sweep to report as the served-endpoint section")
    parser.add_argument(
        "--compare-import", action="append", default=[], metavar="NAME", help="an import (`workbench import`) to show"
    )
    parser.add_argument(
        "--slo", help="YAML of SLO targets (ttft_s_p90_max, throughput_tps_min, task_accuracy_min, ...)"
    )
    parser.add_argument(
        "--quality", choices=QUALITIES, default="task_accuracy", help="quality axis of the Pareto front"
    )
    parser.add_argument("--objective", choices=significance.SAMPLE_METRICS, default="throughput_tps")
    parser.add_argument("--tolerance", type=_fraction, default=0.10, help="regression threshold (default 0.10)")
    parser.add_argument("-o", "--output", help="report .html path (default: outputs/reports/<sweep>.html)")
    parser.add_argument("--json", action="store_true", help="print the verdict as one JSON object, last line")
    parser.add_argument(
        "--include-stale", action="store_true", help="include points that are no longer in the sweep file"
    )
    return parser


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    for name in filter(None, (args.sweep, args.baseline, args.endpoint)):
        for line in scan(name, include_stale=args.include_stale).warnings():
            print(f"warning: {line}", file=sys.stderr)
    if args.slo:
        gates.load_slo(args.slo)
    if args.baseline:  # nothing comparable: one line; configurations left out: named on stderr
        from workbench.analysis.like_for_like import check

        current, previous = (load(name, include_stale=args.include_stale)[0] for name in (args.sweep, args.baseline))
        check(current, previous, args.baseline)
    output = Path(args.output) if args.output else outputs_dir() / "reports" / f"{args.sweep}.html"
    options = {"baseline_sweep": args.baseline, "slo_file": args.slo, "endpoint_sweep": args.endpoint}
    if args.compare_import:
        from workbench.results.imported import load_import

        for name in args.compare_import:
            load_import(name)  # a missing import is a one-line error before the notebook runs
        options["compare_imports"] = args.compare_import
    options |= {key: getattr(args, key) for key in ("quality", "objective", "tolerance")}
    os.environ[INCLUDE_STALE] = "1" if args.include_stale else ""  # read by `build` in the notebook's kernel
    try:
        path = render(args.sweep, output, **options)
    except Exception as exc:
        if (problem := write_problem(exc)) is None:
            raise
        raise OutputsError(f"the report {output} cannot be written ({problem})") from None
    finally:
        os.environ.pop(INCLUDE_STALE, None)
    out = sys.stderr if args.json else sys.stdout  # with --json, stdout is exactly one JSON document
    print(f"report:    {path}\nartefacts: {artefacts_dir(path)}", file=out)
    summary = json.loads((artefacts_dir(path) / "summary.json").read_text())
    console.print_json({"report": str(path), **summary}) if args.json else print(f"headline: {summary['headline']}")
    return 0


def write_problem(exc: Exception) -> str | None:
    """Why writing failed, when `exc` is the disk's doing (a full disk, no permission, read-only), raised here or
    in the report notebook's kernel; None for anything else (a bug keeps its traceback)."""
    import errno

    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.strerror or errno.errorcode.get(exc.errno, "OSError")
    if type(exc).__name__ == "PapermillExecutionError" and getattr(exc, "ename", "") in ("OSError", "PermissionError"):
        value = str(getattr(exc, "evalue", ""))
        for code in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            if os.strerror(code) in value:
                return os.strerror(code)
    return None


def _include_stale(include_stale: bool | None) -> bool:
    return bool(os.environ.get(INCLUDE_STALE)) if include_stale is None else include_stale


def artefacts_dir(output: Path) -> Path:
    output = Path(output)
    return output.with_name(f"{output.stem}_files")


def is_report(path: Path) -> bool:
    with open(path, "rb") as fh:
        return GENERATOR.encode() in fh.read(65536)


def check_output(output: Path) -> None:
    """Refuse an output that would overwrite something that is not an earlier report."""
    output = Path(output).resolve()
    if output.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {output}: a report is HTML; give a path ending in .html")
    if output.is_relative_to((REPO_ROOT / "notebooks").resolve()):
        raise UsageError(f"-o {output}: refusing to write inside notebooks/ (the report's template lives there)")
    if output.is_dir():
        raise UsageError(f"-o {output}: is a directory")
    if output.exists() and not is_report(output):
        raise UsageError(f"-o {output}: exists and is not a workbench report; refusing to overwrite it")
    files = artefacts_dir(output)
    if files.exists() and not (files / MARKER).is_file():
        raise UsageError(f"{files}: exists and is not a report's artefacts folder; refusing to replace it")


def render(sweep: str, output: Path, **options: Any) -> Path:
    """Execute the report notebook into a fresh `X_files/` (its verdict in `X_files/summary.json`) and write
    `X.html`; returns the HTML's path. `options` are `build`'s keywords (the notebook's parameters)."""
    import papermill
    from nbconvert import HTMLExporter

    from workbench.jupyter_kernel import KERNEL_NAME

    output = Path(output).resolve()
    check_output(output)
    with atomic_dir(artefacts_dir(output)) as tmp:
        (tmp / MARKER).write_text(f"artefacts of {output.name}, written by `workbench report`\n")
        executed = tmp / "report.ipynb"
        papermill.execute_notebook(
            str(REPORT_NOTEBOOK),
            str(executed),
            kernel_name=KERNEL_NAME,
            cwd=str(REPO_ROOT),
            progress_bar=False,
            parameters={"sweep": sweep, **options, "artefacts_dir": str(tmp)},
        )
        exporter = HTMLExporter(  # type: ignore[no-untyped-call]  # nbconvert leaves its __init__ unannotated
            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
        )
        page, _ = exporter.from_filename(str(executed))
        page = re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + GENERATOR, strip_remote_assets(page), count=1)
        tmp.chmod(0o755)
    atomic_write_text(output, page)
    return output


@dataclass
class Report:
    """A sweep analysed for the report, with where and how it was measured."""

    sweep: str
    analysis: decisions.Analysis
    env: dict[str, Any]
    points: int
    failed: int
    risks: pl.DataFrame
    slo_rows: list[Any]
    baseline_sweep: str | None = None
    tolerance: float = 0.10
    endpoint: EndpointSection | None = None  # when an endpoint sweep is reported
    imports: ImportSection | None = None  # with `--compare-import`
    machines: Machines | None = None  # which machines measured the points
    rows: pl.DataFrame | None = None  # the sweep's verified rows (the header reads model and workload off them)
    slo_sources: dict[str, Any] | None = None  # target -> "report default" or "--slo FILE"
    endpoint_slo: str | None = None  # the endpoint sweep's own SLO, in words (its points' params)
    baseline_left_out: list[Any] = field(default_factory=list)  # `--baseline` configurations not comparable, and why

    def summary(self) -> dict[str, Any]:
        from workbench.present.headline import summary_extras

        extra = {
            "sweep": self.sweep,
            **summary_extras(self),
            "points": self.points,
            "failed": self.failed,
            "baseline_sweep": self.baseline_sweep,
            "endpoint": self.endpoint.to_json() if self.endpoint is not None else None,
            "imports": self.imports.to_json() if self.imports is not None else None,
            "machines": self.machines.to_json() if self.machines is not None else None,
        }
        return {**extra, **self.analysis.to_json()}


@dataclass(frozen=True)
class ReportOptions:
    """What a report compares and judges by (the report notebook's parameters): an earlier `baseline_sweep` for
    regressions, the `slo_file`, the quality metric and objective of the front, the regression `tolerance`, whether
    stale points count (`include_stale`; None: `workbench report --include-stale`), a served-endpoint sweep, and
    imported result files to compare."""

    baseline_sweep: str | None = None
    slo_file: str | None = None
    quality: str = "task_accuracy"
    objective: str = "throughput_tps"
    tolerance: float = 0.10
    include_stale: bool | None = None
    endpoint_sweep: str | None = None
    compare_imports: list[str] | None = None


def build(sweep: str, options: ReportOptions | None = None) -> Report:
    """The analysed sweep. Points that fail verification, stray entries and (unless `include_stale`; default:
    `workbench report --include-stale`) stale points are left out with a warning."""
    o = options or ReportOptions()
    baseline_sweep, slo_file, endpoint_sweep, compare_imports = (
        o.baseline_sweep,
        o.slo_file,
        o.endpoint_sweep,
        o.compare_imports,
    )
    include_stale = _include_stale(o.include_stale)
    rows, env = load(sweep, include_stale=include_stale)
    match = None
    if baseline_sweep:
        from workbench.analysis.like_for_like import match_baseline

        match = match_baseline(rows, load(baseline_sweep, include_stale=include_stale)[0])
    previous = match.previous if match is not None else None
    failed, points = failures(sweep, include_stale=include_stale)
    criteria = decisions.Criteria(
        slo=gates.load_slo(slo_file),
        min_effect=gates.load_min_effect(slo_file),
        quality_margins=gates.load_quality_margins(slo_file),
        quality=o.quality,
        objective=o.objective,
        tolerance=o.tolerance,
    )
    conditions = point_conditions(sweep, include_stale=include_stale)
    result = decisions.analyse(rows, criteria, conditions=conditions, previous=previous)
    from workbench.analysis import verdict_risks

    memory = env.get("memory_bytes")
    measured = gates.risks(
        result.configs,
        failures=failed,
        points=points,
        memory_total_bytes=memory,
        quality_intervals=result.quality_compared is not None,
    )
    found = verdict_risks.speed_risks(result.compared) + verdict_risks.quality_risks(result.quality_compared)
    risks = pl.concat([verdict_risks.risk_frame(found), measured])
    slo_rows = gates.slo_rows(result.configs, result.recommended, result.slo)
    section, endpoint_rows = None, None
    if endpoint_sweep:
        from workbench.present import endpoint_section

        endpoint_rows = load(endpoint_sweep, include_stale=include_stale)[0]
        section = endpoint_section.from_rows(endpoint_rows, endpoint_sweep)
    imported = None
    if compare_imports:
        from workbench.present import import_section

        imported = import_section.from_rows(endpoint_rows if endpoint_sweep else rows, list(compare_imports))
    measured_on = machines.describe(sweep, include_stale=include_stale)
    result.warnings.extend(measured_on.warnings())
    from workbench.present.header import report_extras

    extras = report_extras(rows, result.slo, slo_file, endpoint_rows, match)
    report_args = (sweep, result, env, points, failed, risks, slo_rows, baseline_sweep, o.tolerance, section, imported)
    return Report(*report_args, measured_on, **extras)


def figures(report: Report) -> dict[str, Any]:
    from workbench.present import charts, endpoint_section, import_section

    a = report.analysis
    measured = [q for q in (a.quality, "perplexity", "task_accuracy") if a.configs[q].drop_nulls().len()]
    return {
        "tradeoff": charts.tradeoff_scatter(
            a.configs,
            quality=a.quality,
            slo_ttft_s=a.slo.get("ttft_s_p90_max"),
            slo_throughput_tps=a.slo.get("throughput_tps_min"),
        ),
        "latency_cdf": charts.latency_cdf(a.latency),
        "quality_vs_speed": charts.quality_vs_speed(a.configs, quality=(measured or ["perplexity"])[0]),
        "memory": charts.memory_by_variant(a.configs),
        **endpoint_section.figures(report.endpoint),
        **import_section.figures(report.imports),
    }


def save_artefacts(report: Report, charts: dict[str, Any], directory: str | Path | None) -> HTML:
    """The charts as PNGs under `directory/charts/` and the verdict as `directory/summary.json`."""
    from IPython.display import HTML

    if not directory:
        return HTML("")  # type: ignore[no-untyped-call]  # IPython leaves HTML.__init__ unannotated
    directory = Path(directory)
    (directory / "charts").mkdir(parents=True, exist_ok=True)
    for name, chart in charts.items():
        chart.save(str(directory / "charts" / f"{name}.png"), scale_factor=2)
    summary = json.dumps(stats.json_safe(report.summary()), indent=1, default=str, allow_nan=False)
    atomic_write_text(directory / "summary.json", summary)
    names = ", ".join(f"<code>{html.escape(name)}.png</code>" for name in charts)
    return HTML(  # type: ignore[no-untyped-call]
        f"<p>Chart images for slides, in the report's <code>_files/charts</code> folder: {names}.</p>"
    )


def setup_offline_charts() -> HTML:
    """The report's offline chart renderer; returns the HTML that inlines Vega, Vega-Lite and Vega-Embed once."""
    from workbench.present import offline

    return offline.enable_for_report()


def strip_remote_assets(page: str) -> str:
    """Drop nbconvert's CDN script tags (require.js, MathJax: the report uses neither) and refuse any other
    remote asset, so the file opens offline."""
    page = re.sub(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>', "", page)
    page = re.sub(r'<script type="text/x-mathjax-config">.*?</script>', "", page, flags=re.S)
    remote = re.search(r'<(?:script|link|img)[^>]*(?:src|href)="(https?://[^"]+)"', page)
    if remote:
        raise RuntimeError(f"report would load {remote.group(1)} from the network")
    return page
