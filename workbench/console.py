"""What every command-line tool shares: a parser whose errors are one line, integer bounds, tables, JSON.

Each tool module (`bench`, `evaluate`, `sweep`, `report`, ...) owns `setup_arg_parser()`
and `main(argv) -> int`, as mlx-lm's tools do; `workbench.cli` only dispatches. A
`WorkbenchError` raised anywhere becomes `workbench: error: <one line>` and exit 2
(`entry`); anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys

from workbench.errors import UsageError, WorkbenchError

EXIT_USAGE = 2


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows every option's default, also for options without a help text; not None or False."""

    def _get_help_string(self, action):
        text = action.help or ""
        if not _shows_default(action) or "%(default)" in text or "default:" in text or "default " in text:
            return text
        return super()._get_help_string(action)

    def _format_action(self, action):
        if not action.help and action.option_strings and _shows_default(action):
            action = copy.copy(action)
            action.help = "default: %(default)s"  # argparse prints nothing, not even the default, without a help
        return super()._format_action(action)


def _shows_default(action) -> bool:
    return not (action.default is None or action.default is False or action.default is argparse.SUPPRESS)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message}")


def int_at_least(minimum: int, maximum: int | None = None):
    """An argparse type: an integer in [minimum, maximum], with a message that names the bounds."""
    words = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if maximum is not None:
        words = f"an integer in [{minimum}, {maximum}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {words}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def list_of(item, words: str):
    """An argparse type: one value or a comma-separated list of them ('1,2,4'), each parsed by `item`."""

    def parse(text: str) -> list:
        parts = [part.strip() for part in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"expected {words}, one or comma-separated, got {text!r}")
        return [item(part) for part in parts]

    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parser(command: str, description: str) -> Parser:
    return Parser(prog=f"workbench {command}", description=description)


def fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def print_table(summary: dict) -> None:
    width = max(map(len, summary), default=0)
    for key, value in summary.items():
        print(f"{key:<{width}}  {fmt(value)}")


def print_json(summary) -> None:
    """One JSON object on one line; NaN and infinities become null (they are not JSON)."""
    from workbench.stats import json_safe

    print(json.dumps(json_safe(summary), default=str, allow_nan=False))


def entry(main, argv: list[str] | None = None) -> int:
    """Run a tool's `main`; a `WorkbenchError` becomes one line on stderr and exit code 2."""
    try:
        return main(argv)
    except WorkbenchError as exc:
        from workbench.redact import redact_text

        message = redact_text(" ".join(str(exc).split())) or type(exc).__name__
        print(f"workbench: error: {message}", file=sys.stderr)
        return EXIT_USAGE
