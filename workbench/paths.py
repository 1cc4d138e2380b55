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

from workbench.errors import OutputsError

REPO_ROOT = Path(__file__).resolve().parent.parent


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


MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 200_000  # after alias expansion: a params or sweep file is a few hundred


def short(value, limit: int = 80) -> str:
    """At most `limit` characters of a value for an error message (never the whole of a hostile input)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _expanded_size(node, sizes: dict) -> int:
    """Nodes in the document once every alias is expanded; each shared node is counted once per use."""
    import yaml

    if id(node) not in sizes:
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _check_yaml_shape(text: str) -> str | None:
    """A problem with the document's nesting or alias expansion, found without expanding it; None if fine."""
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events: iterative, no recursion
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return f"nested deeper than {MAX_YAML_DEPTH} levels"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    root = yaml.compose(text, Loader=yaml.SafeLoader)  # aliases stay shared nodes here
    if root is not None and _expanded_size(root, {}) > MAX_YAML_NODES:
        return f"aliases expand to more than {MAX_YAML_NODES} values; write the values out or use fewer aliases"
    return None


def read_yaml_mapping(path: Path, error=ValueError) -> dict:
    """A YAML file that must hold a mapping; problems raise `error` with one line `path: problem`.

    Inputs are bounded before they are expanded: the file's size, its nesting depth and what its
    aliases expand to (a 700-byte alias bomb would otherwise take gigabytes)."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a directory, not a YAML file")
    if not path.is_file():
        raise error(f"{path}: no such file")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise error(f"{path}: larger than {MAX_YAML_BYTES // 1024} KiB; not a params file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    try:
        problem = _check_yaml_shape(text)
        if problem:
            raise error(f"{path}: {problem}")
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({short(str(exc).splitlines()[0], 120)})") from None
    if not isinstance(values, dict):
        raise error(f"{path}: expected a mapping of keys to values")
    return values


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
