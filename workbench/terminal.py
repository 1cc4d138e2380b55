"""Compact terminal tables, built with rich, that fit 100 columns: values in ms, tok/s and MiB, one line per
variant or load level, each change against the baseline with its interval and verdict.

Used by `workbench run`, `bench`, `bench --target` and `eval` (and the sweep's headline). Verdicts and intervals
are read generically from comparison rows (`verdict`, `change_pct`, `ci_low_pct`, `ci_high_pct`, and a
`half_width_pct` where the statistics give one), so a new verdict vocabulary shows as it is.

    print(terminal.render(["Configuration", "TTFT ms"], [["baseline", "35.1"]], title="quantise on nano"))
"""

from __future__ import annotations

import io
import math
import os
import sys
from typing import Any

WIDTH = 100
# Short headers for narrow columns; units and scales come from the one metric table (`workbench.metrics`), and
# these few columns that are not metrics there carry their own.
SHORT = {
    "ttft_s": "TTFT p50",
    "ttft_s_p90": "TTFT p90",
    "tpot_s": "TPOT p50",
    "itl_s": "ITL p50",
    "e2e_s": "E2E p50",
    "decode_tps": "decode",
    "prefill_tps": "prefill",
    "throughput_tps": "throughput",
    "throughput_rps": "requests",
    "goodput_rps": "goodput",
    "peak_mem_bytes": "peak mem",
    "perplexity": "ppl",
    "task_accuracy": "exact match",
    "task_f1": "token F1",
    "kl_mean": "KL",
    "greedy_agreement": "agree",
}
OWN_UNITS = {  # name -> (short header, unit, scale)
    "weights_bytes": ("weights", "MiB", 2**-20),
    "size_on_disk_bytes": ("on disk", "MiB", 2**-20),
    "load_s": ("load", "s", 1.0),
    "error_rate": ("errors", "%", 100.0),
}
TERMINAL_UNITS = {"generated tok/s": "tok/s", "requests/s": "req/s"}  # the table's units, shortened


def _units() -> dict[str, tuple[str, str, float]]:
    from workbench import metrics

    table = {m.name: (SHORT.get(m.name, m.label), TERMINAL_UNITS.get(m.unit, m.unit), m.scale) for m in metrics.TABLE}
    return {**table, **OWN_UNITS}


UNITS = _units()
FIRST_MIN = 16  # the name column: wrapped at words, never squeezed below this
SHORT_VERDICTS = {"no significant difference": "within noise"}


def width() -> int:
    """The table width: 100 columns, or fewer when `COLUMNS` says the terminal is narrower."""
    try:
        return min(WIDTH, int(os.environ.get("COLUMNS", WIDTH)))
    except ValueError:
        return WIDTH


def header(metric: str) -> str:
    """'TTFT' over 'p50' over 'ms': a metric's short name a word a line, then its unit (narrow columns)."""
    label, unit, _ = UNITS.get(metric, (metric, "", 1.0))
    return "\n".join([*label.split(), *([unit] if unit else [])])


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def number(value: Any, digits: int = 3) -> str:
    """A number with `digits` significant digits, thousands separated, never in scientific notation."""
    if missing(value):
        return "–"
    if abs(value) >= 10 ** (digits - 1) or value == 0:
        return f"{value:,.0f}"
    magnitude = math.floor(math.log10(abs(value)))
    return f"{value:.{max(digits - 1 - magnitude, 0)}f}"


def value(metric: str, raw: Any) -> str:
    """A value in its terminal unit, without the unit (the column header carries it)."""
    if missing(raw):
        return "–"
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    return number(raw * UNITS.get(metric, (metric, "", 1.0))[2])


def pct(raw: Any, digits: int | None = None) -> str:
    if missing(raw):
        return "–"
    digits = digits if digits is not None else (1 if abs(raw) < 10 else 0)
    return f"{raw:+.{digits}f}%"


def change(row: dict[str, Any]) -> str:
    """'+31% (+13…+50%)' from a comparison row; the bare change when there is no interval."""
    point, low, high = row.get("change_pct"), row.get("ci_low_pct"), row.get("ci_high_pct")
    if point is None or missing(point):
        return "–"
    if low is None or high is None or missing(low) or missing(high):
        return f"{pct(point)} (no CI)"
    digits = 1 if max(abs(point), abs(low), abs(high)) < 10 else 0
    return f"{pct(point, digits)} ({pct(low, digits)}…{pct(high, digits)})"


def verdict(row: dict[str, Any]) -> str:
    """The comparison's verdict as the analysis names it (shortened where long); an inconclusive one carries
    its half-width, from `half_width_pct` or from the interval."""
    text = row.get("verdict")
    if not text:
        return ""
    text = SHORT_VERDICTS.get(text, text)
    if text == "inconclusive":
        half = row.get("half_width_pct")
        if missing(half) and not (missing(row.get("ci_low_pct")) or missing(row.get("ci_high_pct"))):
            half = (row["ci_high_pct"] - row["ci_low_pct"]) / 2
        if half is not None and not missing(half):
            text = f"inconclusive ±{abs(half):.0f}%"
    return text


def render(headers: list[str], rows: list[list[str]], *, title: str | None = None, caption: str | None = None) -> str:
    """A rich table as plain text no wider than `width()`: the first column left-aligned (names), the others
    right-aligned; long cells are cut with an ellipsis rather than wrapped mid-word."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for index, name in enumerate(headers):
        if index == 0:
            table.add_column(Text(name), justify="left", overflow="fold", min_width=min(FIRST_MIN, width() // 4))
        else:
            table.add_column(Text(name), justify="right", overflow="ellipsis", no_wrap=True)
    for row in rows:
        table.add_row(*[Text(str(cell)) for cell in row])  # Text: a name holding [brackets] is not markup
    out = io.StringIO()
    console = Console(file=out, width=width(), color_system=None, highlight=False, emoji=False, markup=False)
    if title:
        console.print(title, soft_wrap=False)
    console.print(table)
    if caption:
        console.print(caption)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()).strip("\n")


def key_values(shown: dict[str, Any], *, title: str) -> str:
    """A two-column table of named figures (`eval`): metrics in their units, other values as they are."""

    def cell(key: str, raw: Any) -> str:
        if isinstance(raw, float) and key in UNITS:
            return f"{value(key, raw)} {UNITS[key][1]}".strip()
        return number(raw) if isinstance(raw, float) else str(raw)

    return render(["measure", "value"], [[key, cell(key, raw)] for key, raw in shown.items()], title=title)


def step(what: str) -> None:
    """One progress line on stderr for a long step ('quantise: 4-bit weights: quantising (2/3)'); stdout stays the
    table or the JSON. `WORKBENCH_QUIET=1` silences it."""
    if not os.environ.get("WORKBENCH_QUIET"):
        print(f"… {what}", file=sys.stderr, flush=True)
