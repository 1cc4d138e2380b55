"""The log of a managed `mlx_lm.server`: only ever appended to, and only when it is one of these logs.

`workbench serve --log FILE` may name any path. A file that exists and does not begin with `LOG_HEADER` (a
README, a notebook) is refused with one line, never truncated; a log of an earlier `serve` is appended to, each
launch starting with a header line, and readiness is read from this launch's part only (`start`).

    log, start = open_log(Path("outputs/servers/s.log"))
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO

from workbench.errors import OutputsError

READY_MARKER = "workbench-endpoint: model loaded"
LOG_HEADER = "# workbench serve log"  # the first line of every server log: only such a file is appended to


def is_own_log(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(LOG_HEADER)) == LOG_HEADER.encode()
    except OSError:
        return False


def open_log(log_path: Path) -> tuple[BinaryIO, int]:
    """The server log opened for appending, and where this run's part starts. An existing file that is not one of
    these logs (`LOG_HEADER` first) is refused: `--log README.md` never destroys or pollutes a file."""
    try:
        if log_path.exists() and (not log_path.is_file() or (log_path.stat().st_size and not is_own_log(log_path))):
            raise OutputsError(
                f"{log_path}: exists and is not a workbench server log; name a new file (a log is only ever appended)"
            )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
        start = log.tell()
        log.write(f"{LOG_HEADER} {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        log.flush()
    except OSError as exc:
        raise OutputsError(f"{log_path}: the server log cannot be written ({exc.strerror or exc})") from None
    return log, start


def read_log(log_path: Path, start: int = 0) -> str:
    try:
        with log_path.open("rb") as handle:
            handle.seek(start)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def log_tail(log_path: Path, lines: int = 3, start: int = 0) -> str:
    """The last non-empty lines of a server log (from `start`), joined on one line."""
    text = read_log(log_path, start)
    kept = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith((READY_MARKER, LOG_HEADER))
    ]
    return " | ".join(kept[-lines:]) or "(empty)"
