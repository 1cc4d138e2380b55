"""The `workbench` Jupyter kernel: this environment's Python with the optimised BLAS preloaded.

papermill and JupyterLab start kernels from the spec, so the spec's `env` is the one
place where `LD_PRELOAD` reaches every notebook process.

    workbench install-kernel
"""

from __future__ import annotations

import sys

KERNEL_NAME = "workbench"


def kernel_env() -> dict:
    from workbench.runtime import find_optimised_blas

    library = find_optimised_blas()
    return {"LD_PRELOAD": library} if library else {}


def install_kernel() -> str:
    """Install (or refresh) the kernel spec inside this environment; returns its directory."""
    from ipykernel.kernelspec import install

    return install(kernel_name=KERNEL_NAME, display_name="Workbench (MLX)", prefix=sys.prefix, env=kernel_env())


def main(argv: list[str] | None = None) -> int:
    from workbench import console

    console.parser("install-kernel", "register the 'workbench' Jupyter kernel (BLAS preloaded)").parse_args(argv)
    print(f"installed Jupyter kernel 'workbench' at {install_kernel()}")
    return 0
