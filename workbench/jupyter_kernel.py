"""The `workbench` Jupyter kernel: this environment's Python with the optimised BLAS preloaded.

papermill and JupyterLab start kernels from the spec, so the spec's `env` is the one
place where `LD_PRELOAD` reaches every notebook process, and its `argv` the one place
that reaches every kernel's start: `launch` drops ipykernel's "Kernel is running over
TCP without encryption" warning (the kernel listens on 127.0.0.1 only and every message
is signed with the connection file's key; the warning appeared once per sweep point) and
the "KeyboardInterrupt caught in kernel" error that jupyter_client's shutdown interrupt
can cause on a point that succeeded.

    workbench install-kernel
"""

from __future__ import annotations

import logging
import sys
from typing import Any

KERNEL_NAME = "workbench"
TCP_WARNING = "Kernel is running over TCP without encryption"
# Falls back to ipykernel's own start where the importable `workbench` has no `launch` (several checkouts
# can share one environment and its kernel spec).
LAUNCH = (
    "import importlib; kernel = importlib.import_module('workbench.jupyter_kernel'); "
    "(getattr(kernel, 'launch', None) or importlib.import_module('ipykernel.kernelapp').launch_new_instance)()"
)


# jupyter_client interrupts a kernel (SIGINT to its process group) before every shutdown; when that signal lands
# while the kernel is still finishing a request, ipykernel logs this and carries on. A user's interrupt of a
# running cell is raised in the cell instead (its traceback is the cell's output), so nothing is lost.
SHUTDOWN_INTERRUPT = "KeyboardInterrupt caught in kernel"
DROPPED = ((logging.WARNING, TCP_WARNING), (logging.ERROR, SHUTDOWN_INTERRUPT))


class DropTcpWarning(logging.Filter):
    """Drops exactly ipykernel's unencrypted-TCP warning and its shutdown-interrupt error; all else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.levelno == level and str(record.msg).startswith(text) for level, text in DROPPED)


def launch() -> None:
    """Start an ipykernel as `python -m ipykernel_launcher` does, with the TCP warning filtered out."""
    from ipykernel import kernelapp

    if sys.path and sys.path[0] == "":  # as ipykernel_launcher: the kernel's folder must not shadow packages
        del sys.path[0]
    app = kernelapp.IPKernelApp.instance()
    app.log.addFilter(DropTcpWarning())
    app.launch_instance()


def strip_before_save(model: dict[str, Any], **_: Any) -> None:
    """JupyterLab's pre-save hook under `make lab`: a notebook is written without outputs, execution counts,
    widget state or `language_info`, exactly as committed, so autosave never dirties `git status` (git's
    nbstripout filter would hide the outputs from commits, but not from `git status`)."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    notebook = model["content"]
    for key in ("language_info", "widgets", "papermill"):
        notebook.get("metadata", {}).pop(key, None)
    for cell in notebook.get("cells", []):
        for key in ("execution", "ExecuteTime", "collapsed", "scrolled", "papermill"):
            cell.get("metadata", {}).pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None


def kernel_env() -> dict[str, Any]:
    """The kernel spec's `env`: the optimised BLAS preloaded, and its thread count (`runtime.blas_env`)."""
    from workbench.runtime import BLAS_THREADS, blas_env

    env = blas_env({})
    return {k: env[k] for k in ("LD_PRELOAD", BLAS_THREADS) if k in env}


def install_kernel(prefix: str | None = None) -> str:
    """Install (or refresh) the kernel spec inside this environment (or under `prefix`/share/jupyter); returns
    its directory."""
    import json
    from pathlib import Path

    from ipykernel.kernelspec import install

    directory = install(
        kernel_name=KERNEL_NAME, display_name="Workbench (MLX)", prefix=prefix or sys.prefix, env=kernel_env()
    )
    spec_file = Path(directory) / "kernel.json"
    spec = json.loads(spec_file.read_text())
    module = spec["argv"].index("-m")
    spec["argv"][module : module + 2] = ["-c", LAUNCH]
    spec_file.write_text(json.dumps(spec, indent=1))
    return directory


def main(argv: list[str] | None = None) -> int:
    from workbench import console

    console.parser("install-kernel", "register the 'workbench' Jupyter kernel (BLAS preloaded)").parse_args(argv)
    print(f"installed Jupyter kernel 'workbench' at {install_kernel()}")
    return 0
