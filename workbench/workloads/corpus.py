"""English text that ships with Python: the standard library's docstrings.

It is a quality signal nobody on this project wrote, available offline on every machine.
Docstrings are read with `ast` from the stdlib sources (the same text `pydoc` shows,
without importing anything). Modules are split by a stable hash of their path, so the
held-out text never appears in training. The text differs slightly between Python
versions; `corpus_hash` goes into every row that uses it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
import sysconfig
from pathlib import Path

SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "__pycache__"}
HELDOUT_BUCKETS = 10  # one module in ten is held out


def _is_heldout(relative_path: str) -> bool:
    return int(hashlib.sha256(relative_path.encode()).hexdigest(), 16) % HELDOUT_BUCKETS == 0


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) >= 40:
                docs.append(doc)
    return docs


def _sources(root: Path) -> list[tuple[str, Path]]:
    out = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if not SKIP_DIRS.intersection(relative.split("/")[:-1]):
            out.append((relative, path))
    return out


@functools.cache
def stdlib_docstrings() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, heldout) docstrings of the running Python's standard library.

    Parsing the stdlib takes seconds, and every sweep point needs it (held-out perplexity, the
    model cache key), so the result is kept in the cache under a key of the Python version and
    every source file's name, size and modification time: a changed stdlib is parsed again."""
    import json

    from workbench.paths import atomic_write_text, cache_dir

    root = Path(sysconfig.get_paths()["stdlib"])
    sources = _sources(root)
    listing = [(relative, path.stat().st_size, path.stat().st_mtime_ns) for relative, path in sources]
    key = hashlib.sha256(json.dumps([sys.version, str(root), listing]).encode()).hexdigest()[:16]
    cached = cache_dir() / "corpus" / f"stdlib-{key}.json"
    if cached.is_file():
        train, heldout = json.loads(cached.read_text())
        return tuple(train), tuple(heldout)
    train, heldout = [], []
    for relative, path in sources:
        (heldout if _is_heldout(relative) else train).extend(_docstrings(path))
    try:
        atomic_write_text(cached, json.dumps([train, heldout]))
    except OSError:  # the cache is an optimisation; an unwritable cache folder only costs the parse next time
        pass
    return tuple(train), tuple(heldout)


def heldout_text() -> str:
    return "\n\n".join(stdlib_docstrings()[1])


def corpus_hash() -> str:
    train, heldout = stdlib_docstrings()
    digest = hashlib.sha256()
    for doc in (*train, "\0", *heldout):
        digest.update(doc.encode())
    return f"py{sys.version_info.major}.{sys.version_info.minor}-{digest.hexdigest()[:12]}"
