"""Where the workbench keeps things, and how it writes them without leaving half a file.

A reader never sees a partial result: files and directories are written under a
temporary name in the same directory, flushed, then renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def outputs_dir() -> Path:
    """`$WORKBENCH_OUTPUTS`, else `outputs/` of the checkout."""
    return Path(os.environ.get("WORKBENCH_OUTPUTS", REPO_ROOT / "outputs"))


def cache_dir() -> Path:
    """Built and converted models and tokenizers: `$WORKBENCH_CACHE`, else `outputs/cache`."""
    return Path(os.environ.get("WORKBENCH_CACHE", outputs_dir() / "cache"))


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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_yaml_mapping(path: Path, error=ValueError) -> dict:
    """A YAML file that must hold a mapping; problems raise `error` with one line `path: problem`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise error(f"{path}: expected a mapping of keys to values")
    return values
