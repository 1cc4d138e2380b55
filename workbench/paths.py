"""Where the workbench keeps things, how it writes them without leaving half a file, and how it reads a user's
file without reading more than a limit.

A reader never sees a partial result: files and directories are written under a
temporary name in the same directory, flushed, then renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from workbench.errors import DataError, OutputsError

REPO_ROOT = Path(__file__).resolve().parent.parent


def read_capped(path: Path, max_bytes: int, what: str = "") -> bytes:
    """At most `max_bytes` of a file in one read (a file that grows after a size check is still bounded); an
    unreadable file or a larger one is a one-line `DataError` that names it (`what`: e.g. "lm-eval task ")."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise DataError(f"{what}{path}: cannot read ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise DataError(f"{what}{path}: over the {max_bytes >> 20} MiB limit")
    return data


def outputs_dir() -> Path:
    """`$WORKBENCH_OUTPUTS`, else `outputs/` of the checkout."""
    return Path(os.environ.get("WORKBENCH_OUTPUTS", REPO_ROOT / "outputs"))


def cache_dir() -> Path:
    """Built and converted models and tokenizers: `$WORKBENCH_CACHE`, else `outputs/cache`."""
    return Path(os.environ.get("WORKBENCH_CACHE", outputs_dir() / "cache"))


def from_repo_root(path: str | Path) -> Path:
    """A relative path that does not exist from the working directory but does from the repository root, read
    from the root (where sweeps run); any other path unchanged. JupyterLab starts kernels in `notebooks/`, so
    `params/endpoint.yaml` typed in a notebook means the repository's file."""
    path = Path(path)
    if path.is_absolute() or path.exists() or not (REPO_ROOT / path).exists():
        return path
    return REPO_ROOT / path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


@contextlib.contextmanager
def atomic_dir(target: Path):
    """Yield a temporary sibling directory; rename it to `target` when the block succeeds."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:  # a cache or model folder that cannot be written is the user's to fix: one line
        raise OutputsError(f"{target.parent}: cannot be written ({exc.strerror or exc})") from None
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_writable(directory: Path, *, need_bytes: int = 0) -> Path:
    """Create `directory` and prove it takes a file (a real write, so it holds for root too) and has about
    `need_bytes` free; call before measuring. A problem is one line, `OutputsError`."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputsError(f"{directory}: outputs cannot be written here ({exc.strerror or exc})") from None
    free = shutil.disk_usage(directory).free
    if free < need_bytes:
        raise OutputsError(f"{directory}: {free >> 20} MiB free, about {need_bytes >> 20} MiB needed")
    return directory
